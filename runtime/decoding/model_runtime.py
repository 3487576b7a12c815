"""Per-model runtime state shared by every row that decodes on that model.

A :class:`ModelRuntime` wraps one backend with what decoding needs besides the model: the
tokenizer's :class:`TokenIndex` (built once, cached on disk), the chat format, the text of
every token, and compiled guides memoised per constraint — so a batch shares one index and
one guide per constraint while each row keeps its own cursor (STYLE.md principle 6).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from lmq import regular
from lmq.runtime.decoding.chat import ChatFormat
from lmq.runtime.automata.guide import DfaGuide
from lmq.runtime.automata.tokens import TokenIndex

_GUIDE_CACHE_SIZE = 256


class ModelRuntime:
    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.index = TokenIndex.from_tokenizer(backend.tokenizer, backend.vocab_size,
                                               backend.eos_token_ids)
        self.chat = ChatFormat.from_tokenizer(backend.tokenizer)
        self.eos_ids = np.array(sorted(backend.eos_token_ids), dtype=np.int64)
        self.text_bytes = self._text_bytes()
        self.start_token = self._start_token()
        self.context_length = int(getattr(backend, "context_length", 0) or 8192)
        self._guides: OrderedDict[regular.Regular, DfaGuide] = OrderedDict()
        self._lock = threading.Lock()

    def guide(self, tree: regular.Regular | None) -> DfaGuide | None:
        """The guide of a regular constraint, compiled once per model and constraint."""
        if tree is None:
            return None
        with self._lock:
            guide = self._guides.get(tree)
            if guide is None:
                guide = DfaGuide.from_regular(tree, self.index)
                self._guides[tree] = guide
                if len(self._guides) > _GUIDE_CACHE_SIZE:
                    self._guides.popitem(last=False)
            else:
                self._guides.move_to_end(tree)
            return guide

    def _text_bytes(self) -> list[bytes]:
        """Bytes of each token as text; special tokens spell their name (they only ever
        appear in unconstrained holes, whose masks do not exclude them)."""
        table = list(self.index.token_bytes)
        tokenizer = self.backend.tokenizer
        for token_id in np.flatnonzero(self.index.special):
            if token_id < len(tokenizer):
                name = tokenizer.convert_ids_to_tokens(int(token_id))
                table[token_id] = (name or "").encode()
        return table

    def _start_token(self) -> int:
        tokenizer = self.backend.tokenizer
        if tokenizer.bos_token_id is not None:
            return int(tokenizer.bos_token_id)
        return int(self.eos_ids[0])


class Runtimes:
    """The model runtimes of one process, keyed by backend."""

    def __init__(self) -> None:
        self._runtimes: dict[int, ModelRuntime] = {}
        self._lock = threading.Lock()

    def get(self, backend: Any) -> ModelRuntime:
        with self._lock:
            runtime = self._runtimes.get(id(backend))
            if runtime is None:
                runtime = self._runtimes[id(backend)] = ModelRuntime(backend)
            return runtime


RUNTIMES = Runtimes()
