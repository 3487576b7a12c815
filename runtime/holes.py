"""Generating one hole's value token by token under its :class:`HoleSpec`.

A :class:`HoleRun` is the per-row cursor of one hole: the guide state of its regular
constraint, the tokens and bytes so far, and the rules for ending — the end-of-sequence
token only where the constraints accept, a stop phrase at its first occurrence where they
accept, the token budget (LANGUAGE.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lmq.constraints import HoleSpec
from lmq.errors import LmqConstraintError, Span

if TYPE_CHECKING:
    from lmq.runtime.guide import Guide


@dataclass
class Ending:
    """How a finished hole ends: ``value`` is its text as bytes; the first ``keep`` of its
    tokens stay in the context and ``tail`` bytes after them must be re-encoded."""

    value: bytes
    keep: int
    tail: bytes


@dataclass
class HoleRun:
    spec: HoleSpec
    guide: Guide | None  # None when unconstrained
    token_bytes: list[bytes]
    eos_ids: np.ndarray  # int64 ids of the end-of-sequence tokens
    budget: int  # most tokens this hole may take
    span: Span | None = None  # for errors
    state: Any = 0  # the guide's state: an int, or a lazy automaton's key
    tokens: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    boundaries: list[tuple[int, int]] = field(default_factory=list)  # (bytes, state) per token
    logprobs: list[float] = field(default_factory=list)
    ending: Ending | None = None

    def __post_init__(self) -> None:
        if self.guide is not None:
            self.state = self.guide.initial_state
        self.boundaries.append((0, self.state))
        self.phrases = [(p.encode(), False) for p in self.spec.stops_at] + \
                       [(p.encode(), True) for p in self.spec.stops_before]
        if self.budget <= 0 and not self.can_end():
            self.fail("the token budget is exhausted before the hole starts")

    # ------------------------------------------------------------ masks

    def can_end(self) -> bool:
        """May the value end here (end-of-sequence allowed)?"""
        accepting = self.guide is None or self.guide.is_accepting(self.state)
        return accepting and self.spec.count_allows_end(len(self.tokens))

    def mask(self, vocab_size: int) -> np.ndarray | None:
        """Allowed next tokens as a bool row, or None when every token is allowed."""
        end = self.can_end()
        if self.guide is None:
            if end:
                return None
            row = np.ones(vocab_size, dtype=bool)
        else:
            row = self.guide.mask(self.state).copy()
            self._mask_over_budget(self.guide, row)
        row[self.eos_ids] = end
        return row

    def _mask_over_budget(self, guide: Guide, row: np.ndarray) -> None:
        """Budget-aware masking: never enter a state whose shortest completion cannot fit
        in the tokens left. Completions count bytes, an upper bound on tokens because
        every single byte is a token of a byte-level vocabulary."""
        left = self.budget - len(self.tokens) - 1  # after the token chosen now
        bound = guide.max_completion
        if bound is not None and left >= bound:
            return
        allowed = guide.allowed(self.state)
        if len(allowed):
            row[allowed[guide.next_distances(self.state) > left]] = False

    def forced_bytes(self, limit: int = 64) -> tuple[bytes, bool]:
        """The bytes the constraint leaves no choice about from here (each state on the way
        has one live byte and is not accepting), and whether the value is complete after
        them (no byte can follow). Holes with stop phrases are never forced: a phrase could
        end inside the forced text."""
        if self.guide is None or self.phrases:
            return b"", False
        guide, state, out = self.guide, self.state, bytearray()
        while len(out) < limit and not guide.is_accepting(state):
            live = guide.live_bytes(state)
            if len(live) != 1:
                break
            out.append(int(live[0]))
            state = guide.walk_bytes(state, bytes(out[-1:]))
        return bytes(out), not len(guide.live_bytes(state))

    def exhausted(self) -> bool:
        """No content token can follow (the guide has no continuation)."""
        return self.guide is not None and len(self.guide.allowed(self.state)) == 0

    # ------------------------------------------------------------ steps

    def end_of_sequence(self) -> None:
        """The model chose end-of-sequence (only offered where :meth:`can_end`)."""
        self.ending = Ending(bytes(self.data), len(self.tokens), b"")

    def push(self, token: int, logprob: float) -> None:
        """Append a generated token; sets :attr:`ending` when the value is complete."""
        before = len(self.data)
        if self.guide is not None:
            self.state = self.guide.advance(self.state, token)
        self.tokens.append(token)
        self.logprobs.append(logprob)
        self.data += self.token_bytes[token]
        self.boundaries.append((len(self.data), self.state))
        if self.phrases and self._stop(before):
            return
        if len(self.tokens) >= self.budget:
            if not self.can_end():
                self.fail(f"the token budget of {self.budget} ran out before the value "
                          "satisfied its constraints")
            self.ending = Ending(bytes(self.data), len(self.tokens), b"")
        elif self.exhausted():
            if not self.can_end():
                self.fail("no token can continue the value")
            self.ending = Ending(bytes(self.data), len(self.tokens), b"")

    def _stop(self, before: int) -> bool:
        """End at the first stop-phrase occurrence completed by the last token at which the
        other constraints hold."""
        candidates = []
        for phrase, cut_phrase in self.phrases:
            start = self.data.find(phrase, max(0, before - len(phrase) + 1))
            while start != -1:
                end = start + len(phrase)
                if end > before:
                    candidates.append((end, start, cut_phrase))
                start = self.data.find(phrase, start + 1)
        for end, start, cut_phrase in sorted(candidates):
            value_end = start if cut_phrase else end
            if self._accepts_prefix(value_end):
                self.ending = self._ending_at(value_end)
                return True
        return False

    def _accepts_prefix(self, n_bytes: int) -> bool:
        if not self.spec.count_allows_end(len(self.tokens)):
            return False
        if self.guide is None:
            return True
        index = max(i for i, (size, _) in enumerate(self.boundaries) if size <= n_bytes)
        size, state = self.boundaries[index]
        state = self.guide.walk_bytes(state, bytes(self.data[size:n_bytes]))
        return state is not None and self.guide.is_accepting(state)

    def _ending_at(self, n_bytes: int) -> Ending:
        """Keep the tokens that lie wholly inside the first ``n_bytes`` (backing off to a
        character boundary) and re-encode the rest."""
        keep = max(i for i, (size, _) in enumerate(self.boundaries) if size <= n_bytes)
        while keep > 0 and not _is_char_boundary(self.data, self.boundaries[keep][0]):
            keep -= 1
        size = self.boundaries[keep][0]
        return Ending(bytes(self.data[:n_bytes]), keep, bytes(self.data[size:n_bytes]))

    def fail(self, reason: str) -> None:
        described = self.spec.description or "its constraints"
        raise LmqConstraintError(f"hole '{self.spec.hole}' cannot satisfy {described}: "
                                 f"{reason}", self.span)


def _is_char_boundary(data: bytearray, index: int) -> bool:
    return index >= len(data) or not 0x80 <= data[index] < 0xC0
