"""Per-model runtime state shared by every row that decodes on that model.

A :class:`ModelRuntime` wraps one backend with what decoding needs besides the model: the
:class:`TokenIndex` of its vocabulary (built once, cached on disk), the chat format, the
text of every token, the compiled guides memoised per constraint and the bank of their
masks on the logits' device — so a batch shares one index and one guide per constraint
while each row keeps its own cursor (STYLE.md principle 6). Specialists' views of one
backend share its runtime. :class:`ModelRuntimes` holds an engine's runtimes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import cached_property

import numpy as np
import torch

from lmq import grammars, regular
from lmq.runtime.automata.fsm import AutomatonLimitError
from lmq.runtime.automata.grammar import GrammarGuide
from lmq.runtime.automata.guide import DfaGuide, Guide
from lmq.runtime.automata.tokens import TokenIndex
from lmq.runtime.backends.base import Backend
from lmq.runtime.decoding.chat import ChatFormat
from lmq.runtime.decoding.choosing import MaskBank

_GUIDE_CACHE_SIZE = 256


class ModelRuntime:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.vocabulary = vocabulary = backend.vocabulary
        self.index = TokenIndex.from_vocabulary(vocabulary)
        self.chat = ChatFormat.from_vocabulary(vocabulary)
        self.eos_ids = np.array(sorted(vocabulary.eos_ids), dtype=np.int64)
        self.text_bytes = self._text_bytes()
        self.start_token = vocabulary.bos_id if vocabulary.bos_id is not None else \
            int(self.eos_ids[0])
        self.context_length = backend.context_length
        self._guides: OrderedDict[regular.Regular, Guide] = OrderedDict()
        self._banks: dict[str, MaskBank] = {}
        self._lock = threading.Lock()

    def guide(self, tree: regular.Regular | None) -> Guide | None:
        """The guide of a constraint, compiled once per model and constraint: a grammar
        guide for a grammar (and for a JSON schema too large for an automaton), else the
        guide of its byte automaton."""
        if tree is None:
            return None
        with self._lock:
            guide = self._guides.get(tree)
            if guide is None:
                guide = _compiled(tree, self.index)
                self._guides[tree] = guide
                if len(self._guides) > _GUIDE_CACHE_SIZE:
                    self._guides.popitem(last=False)
            else:
                self._guides.move_to_end(tree)
            return guide

    def bank(self, device: torch.device) -> MaskBank:
        """The mask bank of this model's logits on ``device`` (a run holds its engine's
        lock, so one decoding loop uses it at a time)."""
        key = str(device)
        if key not in self._banks:
            self._banks[key] = MaskBank(device, self.index.vocab_size)
        return self._banks[key]

    @cached_property
    def merging_whitespace(self) -> frozenset[bytes]:
        """The whitespace runs that some content token continues with a non-whitespace
        character (SmolLM2: only b" "; a newline is never merged there): where token
        healing applies (:mod:`lmq.runtime.decoding.healing`)."""
        runs = set()
        for token_id, data in enumerate(self.index.token_bytes):
            stripped = data.lstrip()  # ASCII whitespace
            if stripped and len(stripped) < len(data) and not self.index.special[token_id]:
                runs.add(data[:len(data) - len(stripped)])
        return frozenset(runs)

    def _text_bytes(self) -> list[bytes]:
        """Bytes of each token as text; special tokens spell their name (they only ever
        appear in unconstrained holes, whose masks do not exclude them)."""
        table = list(self.index.token_bytes)
        for token_id in np.flatnonzero(self.index.special).tolist():
            table[token_id] = self.vocabulary.special_text(token_id).encode()
        return table


def _compiled(tree: regular.Regular, index: TokenIndex) -> Guide:
    tree = grammars.finite_form(tree)
    parts = grammars.grammar_parts(tree)
    if parts is not None and isinstance(parts[1], regular.Grammar):
        return GrammarGuide.from_tree(tree, index)
    try:
        return DfaGuide.from_regular(tree, index)
    except AutomatonLimitError:
        if parts is None:  # JSON(X, schema) past the automaton: llguidance's JSON
            raise
        return GrammarGuide.from_tree(tree, index)


class ModelRuntimes:
    """The model runtimes of an engine, one per backend, built on first use."""

    def __init__(self) -> None:
        self._runtimes: dict[Backend, ModelRuntime] = {}
        self._lock = threading.Lock()

    def get(self, backend: Backend) -> ModelRuntime:
        with self._lock:
            runtime = self._runtimes.get(backend)
            if runtime is None:
                runtime = self._runtimes[backend] = ModelRuntime(backend)
            return runtime
