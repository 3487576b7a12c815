"""Thompson NFAs over bytes and the UTF-8 helpers behind them (used by :mod:`.fsm`).

interegular parses a regex (``lmq.regular.normalize_regex`` makes sure it can) and
:meth:`Nfa.regex` turns the parse tree into an NFA over bytes, each character class
expanded into UTF-8 byte-range sequences (:func:`utf8_sequences`). Building stops with an
:class:`AutomatonLimitError` as soon as the NFA outgrows its :class:`CompileBudget`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from interegular import patterns as ip

from lmq.errors import LmqCompileError, LmqLimitError

MAX_CODE_POINT = 0x10FFFF
ALL_CHARS = ((0, MAX_CODE_POINT),)
NOT_NEWLINE = ((0, 9), (11, MAX_CODE_POINT))


@dataclass(frozen=True)
class CompileBudget:
    """Limits per constraint, counted in work done, never in time, so a constraint compiles
    the same way on any machine however busy. Complete DFAs are built while they stay
    within ``max_states`` and the whole tree's expansions within ``eager_work`` (units of
    :meth:`LazyAutomaton._cost <lmq.runtime.automata.fsm_lazy.LazyAutomaton._cost>`, about
    a microsecond each on the build machine); past that the lazy automaton of
    :mod:`lmq.runtime.automata.fsm_lazy` serves instead, memoising at most
    ``memo_states`` states (by default as many as the largest complete DFA, so the fallback
    never holds more memory than it). Only NFAs past ``max_nfa_states``, or a language in
    which no search within ``max_search_states`` finds a value, make a constraint an error.
    ``seconds`` is a last-resort guard of eager building alone: past it (a machine far
    slower than any the budgets were measured on) the lazy automaton serves as well; it is
    never an error.
    """

    max_states: int = 50_000  # DFA states built up front (a 1 KiB table row each)
    max_nfa_states: int = 200_000
    eager_work: int = 1_000_000
    seconds: float = 60.0
    memo_states: int = 50_000  # ~1.2 KiB each
    max_search_states: int = 20_000  # states one shortest-completion search may expand
    # LABELS: its trie has a node per label byte, each holding a bit per label below it
    max_labels: int = 2_000
    max_label_bytes: int = 200_000


class AutomatonLimitError(LmqLimitError, LmqCompileError):
    """A constraint too large even for the lazy fallback: a compile error where it is found
    before the run (``lmq check``), a limit error where it is found during it."""


DEFAULT_BUDGET = CompileBudget()


def utf8_sequences(low: int, high: int) -> list[tuple[tuple[int, int], ...]]:
    """The code points ``low..high`` (surrogates excluded) as UTF-8 byte-range sequences.

    Each sequence is a tuple of inclusive ``(first, last)`` byte ranges, one per byte; the
    byte strings they match are exactly the encodings of those code points (the split of
    regex-automata's ``Utf8Sequences``). Sequences come out in increasing order.
    """
    out: list[tuple[tuple[int, int], ...]] = []
    stack = [(low, min(high, MAX_CODE_POINT))]
    while stack:
        lo, hi = stack.pop()
        if lo > hi:
            continue
        if lo <= 0xDFFF and hi >= 0xD800:  # surrogates have no UTF-8 encoding
            stack += [(0xE000, hi), (lo, 0xD7FF)]
            continue
        split = next((b for b in (0x7F, 0x7FF, 0xFFFF) if lo <= b < hi), None)
        if split is not None:  # different encoded lengths
            stack += [(split + 1, hi), (lo, split)]
            continue
        for i in (1, 2, 3):  # make every non-leading byte range full (0x80..0xBF)
            mask = (1 << (6 * i)) - 1
            if lo & ~mask != hi & ~mask:
                if lo & mask:
                    stack += [((lo | mask) + 1, hi), (lo, lo | mask)]
                    break
                if hi & mask != mask:
                    stack += [(hi & ~mask, hi), (lo, (hi & ~mask) - 1)]
                    break
        else:
            out.append(tuple(zip(chr(lo).encode(), chr(hi).encode())))
    return out


class Nfa:
    """A Thompson NFA over bytes: ``edges[s]`` holds ``(first, last, target)`` byte ranges,
    ``eps[s]`` epsilon targets. Fragments are ``(start, end)`` pairs."""

    def __init__(self, budget: CompileBudget) -> None:
        self.edges: list[list[tuple[int, int, int]]] = []
        self.eps: list[list[int]] = []
        self.budget = budget

    def state(self) -> int:
        if len(self.edges) >= self.budget.max_nfa_states:
            raise too_large(f"more than {self.budget.max_nfa_states} NFA states")
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def chars(self, ranges) -> tuple[int, int]:
        """One character whose code point lies in one of the inclusive ``ranges``.

        Continuation states are shared by their remaining byte ranges (``after[...]``), so
        e.g. all three-byte leads go to one "two continuation bytes left" state and the
        DFA gets one state per distinct UTF-8 suffix, not one per sequence."""
        start, end = self.state(), self.state()
        after: dict[tuple[tuple[int, int], ...], int] = {(): end}

        def node(suffix: tuple[tuple[int, int], ...]) -> int:
            if suffix not in after:
                after[suffix] = self.state()
                self.edges[after[suffix]].append((*suffix[0], node(suffix[1:])))
            return after[suffix]

        for seq in _class_sequences(tuple(ranges)):
            self.edges[start].append((*seq[0], node(seq[1:])))
        return start, end

    def literal(self, text: str) -> tuple[int, int]:
        start = here = self.state()
        for byte in text.encode():
            there = self.state()
            self.edges[here].append((byte, byte, there))
            here = there
        return start, here

    def concat(self, parts) -> tuple[int, int]:
        start = end = self.state()
        for part_start, part_end in parts:
            self.eps[end].append(part_start)
            end = part_end
        return start, end

    def alternation(self, options) -> tuple[int, int]:
        start, end = self.state(), self.state()
        for option_start, option_end in options:
            self.eps[start].append(option_start)
            self.eps[option_end].append(end)
        return start, end

    def repeat(self, make, low: int, high: int | None) -> tuple[int, int]:
        """``make()`` builds a fresh copy of the repeated fragment each time it is called.

        ``x{0,n}`` is nested as ``(x(x(...)?)?)?``: after k copies only the next copy's start
        is in the epsilon closure, where a flat ``x?x?...x?`` would put all n - k there and
        make determinizing quadratic in n."""
        parts = [make() for _ in range(low)]
        if high is None:
            inner = make()
            self.eps[inner[0]].append(inner[1])  # optional ...
            self.eps[inner[1]].append(inner[0])  # ... and repeatable
            parts.append(inner)
        else:
            tail = None
            for _ in range(high - low):
                inner = make() if tail is None else self.concat([make(), tail])
                self.eps[inner[0]].append(inner[1])
                tail = inner
            if tail is not None:
                parts.append(tail)
        return self.concat(parts)

    def regex(self, node, flags) -> tuple[int, int]:
        """A fragment for an interegular parse tree (``re.ASCII`` semantics)."""
        if isinstance(node, ip.Pattern):
            flags = (flags | node.added_flags) & ~node.removed_flags
            return self.alternation([self.regex(option, flags) for option in node.options])
        if isinstance(node, ip._Concatenation):
            return self.concat([self.regex(part, flags) for part in node.parts])
        if isinstance(node, ip._Repeated):
            return self.repeat(lambda: self.regex(node.base, flags), node.min, node.max)
        if isinstance(node, ip._CharGroup):
            folded = bool(flags & ip.REFlags.CASE_INSENSITIVE)
            return self.chars(_group_ranges(frozenset(node.chars), node.negated, folded))
        if node is ip._DOT:
            return self.chars(ALL_CHARS if flags & ip.REFlags.SINGLE_LINE else NOT_NEWLINE)
        if node is ip._EMPTY:
            return self.concat([])
        raise LmqCompileError(f"unsupported regular expression construct {type(node).__name__}")


@functools.lru_cache(maxsize=1024)
def _class_sequences(ranges: tuple[tuple[int, int], ...]) -> list[tuple[tuple[int, int], ...]]:
    """:func:`utf8_sequences` of a character class (memoised: a bounded repetition builds
    the same class once per copy)."""
    return [seq for low, high in ranges for seq in utf8_sequences(low, high)]


@functools.lru_cache(maxsize=1024)
def _group_ranges(chars: frozenset[str], negated: bool, folded: bool) -> tuple:
    """The code-point ranges of a character class (memoised like :func:`_class_sequences`);
    ``folded``: ASCII-only case folding, as ``re.ASCII``."""
    if folded:
        chars = chars | {c.swapcase() for c in chars if c.isascii() and c.isalpha()}
    ranges = _ranges(ord(c) for c in chars)
    return tuple(_complement(ranges) if negated else ranges)


def _ranges(code_points) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for cp in sorted(code_points):
        if out and out[-1][1] + 1 == cp:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return [(lo, hi) for lo, hi in out]


def _complement(ranges) -> list[tuple[int, int]]:
    out, next_low = [], 0
    for lo, hi in ranges:
        if lo > next_low:
            out.append((next_low, lo - 1))
        next_low = hi + 1
    if next_low <= MAX_CODE_POINT:
        out.append((next_low, MAX_CODE_POINT))
    return out


def too_large(detail: str, hint: str = "simplify the constraint or lower its repetition "
              "bounds") -> AutomatonLimitError:
    return AutomatonLimitError(f"constraint automaton too large: {detail}", hint=hint)
