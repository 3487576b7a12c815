"""What one backend has seen of one program instance: the bridge from segments to tokens.

The interpreter's context is a list of :class:`Segment` s; a backend row holds the tokens of
a prefix of it in its KV cache. :meth:`RowContext.sync` extends the row with the segments it
has not seen (prompt text encoded once, generated tokens reused as they are) and rolls back
what the program took away (a nested query's text after ``return``). Nothing already in the
cache is ever encoded again; the one exception, a stop phrase that ends inside a token, is
counted in ``tokens_reencoded``.

A healed hole (:mod:`lmq.runtime.decoding.healing`) took the last token of the prompt text
before it: its tokens spell that token's text and then the hole's value. Its entry is marked
``healed``; a rollback that removes it also removes the text before it, and a row that
meets such a segment for the first time leaves the healed text out of the prompt text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lmq.errors import LmqLimitError
from lmq.runtime.backends.base import Backend, ModelView
from lmq.runtime.decoding.chat import ChatFormat
from lmq.runtime.decoding.instance import Segment
from lmq.runtime.decoding.model_runtime import ModelRuntime


@dataclass
class Counters:
    """Per-instance token counts (LANGUAGE.md section 10, ``stats``)."""

    forward_passes: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    forced_tokens: int = 0
    tokens_reencoded: int = 0
    healed_tokens: int = 0  # prompt tokens taken over by the hole after them (token healing)
    # prompt tokens a serving engine evaluated and took from its prefix cache, as it says
    # (None: no request went to one)
    server_computed_tokens: int | None = None
    server_cached_tokens: int | None = None

    def as_dict(self) -> dict[str, int]:
        data = {key: value for key, value in vars(self).items() if value is not None}
        data["billable_tokens"] = self.prompt_tokens + self.generated_tokens
        return data

    def add_server_tokens(self, computed: int | None, cached: int | None) -> None:
        """Count a serving engine's report on one request."""
        if computed is not None:
            self.server_computed_tokens = (self.server_computed_tokens or 0) + computed
        if cached is not None:
            self.server_cached_tokens = (self.server_cached_tokens or 0) + cached

    def copy(self) -> Counters:
        return Counters(**vars(self))


@dataclass
class _Fed:
    serial: int
    n_tokens: int
    role_after: str | None
    healed: bool = False  # its tokens also spell the end of the text entry before it


@dataclass
class RowContext:
    """One backend row holding one program instance's context on one model view.

    ``fed[0]`` is a base entry for tokens that belong to no segment (a chat header opened
    right before a hole, a start token); later entries follow the interpreter's segments.
    ``chat`` is the model's chat format with the view's system prompt.
    """

    view: ModelView
    runtime: ModelRuntime
    handle: int
    max_len: int
    counters: Counters
    fed: list[_Fed] = field(default_factory=lambda: [_Fed(-1, 0, None)])
    pending: list[int] = field(default_factory=list)  # queued for the next forward
    hole_tokens: list[int] = field(default_factory=list)  # queued for the open hole
    length: int = 0  # tokens in the row, pending included
    last_logits: Any = None
    text_tail: bool = False  # the last pending token is prompt text (it could be healed)
    healing: bool = False  # the open hole took the prompt's last token

    def __post_init__(self) -> None:
        self.chat: ChatFormat = self.runtime.chat
        if self.view.system:  # a specialist's (lmq.runtime.specialists)
            self.chat = self.chat.with_system(self.view.system)

    @property
    def backend(self) -> Backend:
        return self.view.backend

    @property
    def role(self) -> str | None:
        return self.fed[-1].role_after

    def sync(self, segments: list[Segment], role: str | None = None) -> None:
        """Bring the row up to date with ``segments`` and, when a hole is about to start,
        open its chat ``role`` (queueing the tokens, not running the model)."""
        keep = 1
        while keep <= len(segments) and keep < len(self.fed) and \
                self.fed[keep].serial == segments[keep - 1].serial:
            keep += 1
        # Consecutive text segments are encoded together and their tokens attributed to
        # the last of them (n_tokens == 0 marks the others): cut only at group starts.
        # A healed hole holds the last token of the entry before it: cut before that too.
        while 1 < keep < len(self.fed) and (self.fed[keep - 1].n_tokens == 0 or
                                            self.fed[keep].healed):
            keep -= 1
        seen = {entry.serial for entry in self.fed[keep:]}
        if keep < len(self.fed):
            self.drop(sum(entry.n_tokens for entry in self.fed[keep:]))
            del self.fed[keep:]
        text, again = "", False
        for segment in segments[keep - 1:]:
            text += self.chat.transition(self.role, segment.role, self._opened(text))
            again = again or segment.serial in seen
            healed = self._healed(segment, text)
            if healed is not None:
                self._queue_text(text[:len(text) - len(healed)], again=again)
                text, again = "", False
                self._extend(list(segment.tokens))
                self.fed.append(_Fed(segment.serial, len(segment.tokens), segment.role,
                                     bool(healed)))
            else:
                text += segment.text
                self.fed.append(_Fed(segment.serial, 0, segment.role))
        if role is not None or not self._opened(text):  # (a specialist's system prompt)
            text += self.chat.transition(self.role, role, self._opened(text))
        self._queue_text(text, role if role is not None else self.role, again)

    def _healed(self, segment: Segment, text: str) -> str | None:
        """For a segment whose generated tokens stand in this row as they are, the end of
        ``text`` (the text before it) that they spell too: "" unless the hole was healed.
        None where the segment is encoded as text: another model's, or a healed one whose
        healed text this row has already fed."""
        if segment.tokens is None or segment.model is not self.view:
            return None
        table = self.runtime.text_bytes
        spelled, own = b"".join(table[t] for t in segment.tokens), segment.text.encode()
        healed = spelled[:len(spelled) - len(own)]
        if not healed or not spelled.endswith(own) or not healed.isspace():
            return ""  # (a value with invalid UTF-8 spells more than its text says)
        return healed.decode() if text.encode().endswith(healed) else None

    def _opened(self, text: str) -> bool:
        return bool(text) or self.length > 0 or len(self.fed) > 1

    def _queue_text(self, text: str, role_after: str | None = None, again: bool = False,
                    ) -> None:
        """Encode ``text`` and attribute its tokens to the last entry; ``again`` marks text
        the row had seen before a rollback (counted as re-encoded)."""
        if not text:
            return
        ids = self.runtime.vocabulary.encode(text)
        self._extend(ids)
        self.text_tail = bool(ids)
        self.counters.prompt_tokens += len(ids)
        if again:
            self.counters.tokens_reencoded += len(ids)
        self.fed[-1].n_tokens += len(ids)
        if role_after is not None:
            self.fed[-1].role_after = role_after

    def adopt(self, segment: Segment | None, n_tokens: int) -> None:
        """Record that the closed hole's ``n_tokens`` tokens (already queued) belong to
        ``segment``. Without a segment (an empty value) they can only spell a healed prompt
        token's text, which goes back to the entry it came from."""
        if segment is None:
            self.fed[-1].n_tokens += n_tokens
        else:
            self.fed.append(_Fed(segment.serial, n_tokens, segment.role, self.healing))
        self.healing = False

    def last_text_token(self) -> int | None:
        """The row's last token if it is prompt text not yet fed to the model and no hole
        is open (what token healing may take), else None."""
        if self.text_tail and self.pending and not self.hole_tokens and not self.healing:
            return self.pending[-1]
        return None

    def take_text_token(self) -> None:
        """Take :meth:`last_text_token` out of the row for the hole about to open, whose
        tokens will spell its text (token healing)."""
        assert self.last_text_token() is not None
        self.pending.pop()
        self.length -= 1
        self.fed[-1].n_tokens -= 1
        self.counters.prompt_tokens -= 1
        self.counters.healed_tokens += 1
        self.text_tail, self.healing = False, True

    def start_token(self, token: int) -> None:
        """An empty context gets one start token so the model has something to condition on."""
        self._extend([token])
        self.counters.prompt_tokens += 1
        self.fed[0].n_tokens += 1

    def _extend(self, ids: list[int]) -> None:
        if self.length + len(ids) > self.max_len:
            raise LmqLimitError(f"the context would grow past max_len={self.max_len} tokens")
        self.pending.extend(ids)
        self.length += len(ids)
        self.text_tail = False

    def push_generated(self, token: int) -> None:
        """Queue a token the model generated for the open hole."""
        self._extend([token])
        self.hole_tokens.append(token)

    def drop(self, n: int) -> None:
        """Forget the last ``n`` tokens of the row, pending ones first."""
        if n <= 0:
            return
        from_pending = min(n, len(self.pending))
        del self.pending[len(self.pending) - from_pending:]
        if n > from_pending:
            self.backend.rollback(self.handle, n - from_pending)
        self.length -= n
        self.last_logits = None

    def close_hole(self, keep: int, extra: list[int]) -> list[int]:
        """End the open hole keeping its first ``keep`` tokens plus re-encoded ``extra``;
        returns the hole's tokens as they stand in the context."""
        self.drop(len(self.hole_tokens) - keep)
        tokens = self.hole_tokens[:keep] + extra
        self._extend(extra)
        self.counters.tokens_reencoded += len(extra)
        self.hole_tokens = []
        return tokens

    def take_feed(self) -> list[int]:
        feed, self.pending = self.pending, []
        return feed

    def fork(self, handle: int, counters: Counters) -> RowContext:
        return RowContext(self.view, self.runtime, handle, self.max_len, counters,
                          [_Fed(f.serial, f.n_tokens, f.role_after, f.healed)
                           for f in self.fed],
                          list(self.pending), list(self.hole_tokens), self.length,
                          self.last_logits, self.text_tail, self.healing)


def forward_logits(backend: Backend, feeds: Mapping[int, Sequence[int]]) -> torch.Tensor:
    """``backend.forward(feeds)`` as a torch tensor (a numpy array is wrapped, not copied)."""
    logits = backend.forward(feeds)
    return torch.from_numpy(logits) if isinstance(logits, np.ndarray) else logits
