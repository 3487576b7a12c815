"""Compile :mod:`lmq.regular` trees into byte-level automata.

A :class:`ByteDfa` reads the UTF-8 bytes of a value. Its dense table ``transitions[state,
byte]`` has a dead sink :data:`DEAD` (state 0, its row all ``DEAD``); every other state is
reachable from ``initial`` and *live* (an accepting state is reachable from it), because
compilation trims the rest into ``DEAD``. So "still completable" is ``state != DEAD``.

How: a regex becomes a Thompson NFA over bytes (:mod:`lmq.runtime.automata.nfa`) and a budgeted
subset construction turns it into the DFA. The other leaves (literals, choices,
prefix/suffix/contains, character lengths, ANY) are built as NFAs directly, ``LABELS`` as a
subset construction of its own and ``SPAN`` as a suffix automaton (lazily, over a suffix
array, past the budget: :mod:`lmq.runtime.automata.fsm_builders`), a JSON schema as a regular tree
first (:mod:`lmq.runtime.automata.fsm_json`); ``And``/``Or``/``Not``
are product constructions, ``Not`` relative to valid UTF-8; ``Concat`` and ``StopsBefore``
are concatenations (:mod:`lmq.runtime.automata.fsm_concat`; a literal prefix, a healed prompt text,
is shifted into the table instead). The subset, product and concatenation constructions are
:class:`~lmq.runtime.automata.fsm_lazy.LazyAutomaton` objects, expanded breadth first into a ByteDfa
while that fits the :class:`CompileBudget` (states, work). Past it the lazy automaton
itself is the result -- the same language, its states built as decoding meets them --
instead of an error or a hang (``(a|b)*a(a|b){20}``: 2^21 DFA states, an NFA of 175).
interegular's own ``to_fsm`` is not used: its crawl looks states up in a list (quadratic;
``(a|b)*a(a|b){12}`` takes 5 s there) and cannot be stopped. Determinizing a byte NFA also
shares the UTF-8 continuation states of a character class (``[^\\n]{0,64}``: 514 states),
which a char-level DFA expanded per transition would not.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from functools import cached_property
from typing import Union

import interegular
import numpy as np
from interegular import patterns as ip

from lmq import regular as rg
from lmq.runtime.automata.fsm_builders import (
    LabelsAutomaton,
    SubstringAutomaton,
    substring_automaton,
)
from lmq.runtime.automata.fsm_concat import ConcatAutomaton, StopAutomaton, stop_tail
from lmq.runtime.automata.fsm_json import schema_regular
from lmq.runtime.automata.fsm_lazy import (
    DEAD,
    UNKNOWN,
    LazyAutomaton,
    ProductAutomaton,
    SubsetAutomaton,
)
from lmq.runtime.automata.nfa import (  # noqa: F401  (utf8_sequences: re-exported)
    ALL_CHARS,
    DEFAULT_BUDGET,
    AutomatonLimitError,
    CompileBudget,
    Nfa,
    too_large,
    utf8_sequences,
)

JSON_HINT = ("give strings a smaller 'maxLength' and arrays a smaller 'maxItems' in the schema "
             "(unbounded strings get 256 characters, arrays 16 items, and each bounded "
             "character costs about 16 automaton states)")
Automaton = Union["ByteDfa", LazyAutomaton]


@dataclass(frozen=True, eq=False)
class ByteDfa:
    """A complete DFA over bytes; see the module docstring for its invariants.

    ``transitions``: int32 ``[S, 256]``; ``accepting``, ``live``: bool ``[S]`` (``live`` is
    False only at :data:`DEAD`); ``initial`` is :data:`DEAD` iff the language is empty.
    It also speaks :class:`LazyAutomaton`'s interface (its states are both keys and ids),
    so guides and products take either.
    """

    transitions: np.ndarray
    accepting: np.ndarray
    live: np.ndarray
    initial: int
    lazy = False

    @property
    def num_states(self) -> int:
        return len(self.accepting)

    @property
    def nbytes(self) -> int:
        return self.transitions.nbytes

    @cached_property
    def flat(self) -> np.ndarray:
        return self.transitions.ravel()

    @cached_property
    def completion(self) -> np.ndarray:
        """int32 ``[S]``: fewest bytes from each state to acceptance (-1 at :data:`DEAD`)."""
        completion = _reverse_distances(self.transitions, self.accepting)
        completion.flags.writeable = False
        return completion

    @cached_property
    def max_distance(self) -> int:
        return int(self.completion.max(initial=0))

    def walk(self, state: int, data: bytes) -> int:
        """The state after reading ``data`` from ``state`` (:data:`DEAD` once it dies)."""
        table = self.transitions
        for byte in data:
            state = int(table[state, byte])
            if state == DEAD:
                break
        return state

    def accepts(self, state: int) -> bool:
        return bool(self.accepting[state])

    def distance(self, state: int) -> int:
        return int(self.completion[state])

    def live_bytes(self, state: int) -> np.ndarray:
        return np.flatnonzero(self.transitions[state]).astype(np.int32)  # DEAD == 0

    # The id-level half of the LazyAutomaton interface: ids are the states themselves.
    def checkpoint(self) -> None:
        pass

    def intern(self, state: int) -> int:
        return state

    def key_of(self, state: int) -> int:
        return state

    def row(self, state: int) -> np.ndarray:
        return self.transitions[state]

    def accepts_id(self, state: int) -> bool:
        return bool(self.accepting[state])


def _reverse_distances(table: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Fewest bytes from each state to a state in the bool mask ``sources`` (-1: never)."""
    n = len(table)
    ordered = np.sort(table, axis=1)  # distinct successors of each state, without a Python loop
    distinct = np.ones_like(ordered, dtype=bool)
    distinct[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    src, col = np.nonzero(distinct)
    dst = ordered[src, col]
    order = np.argsort(dst, kind="stable")
    preds, starts = src[order].tolist(), np.searchsorted(dst[order], np.arange(n + 1)).tolist()
    dist = np.full(n, -1, dtype=np.int32)
    dist[sources] = 0
    queue = deque(np.nonzero(sources)[0].tolist())
    while queue:
        s = queue.popleft()
        for p in preds[starts[s]:starts[s + 1]]:
            if dist[p] < 0:
                dist[p] = dist[s] + 1
                queue.append(p)
    return dist


def _trimmed(table: np.ndarray, accepting: np.ndarray, initial: int) -> ByteDfa:
    """Merge every state that cannot reach acceptance into DEAD and renumber the rest.
    Callers pass tables whose states are all reachable from ``initial``."""
    live = _reverse_distances(table, accepting) >= 0
    live[DEAD] = False
    keep = np.nonzero(live)[0]
    renumber = np.zeros(len(table), dtype=np.int32)
    renumber[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    new_table = np.zeros((len(keep) + 1, 256), dtype=np.int32)
    new_table[1:] = renumber[table[keep]]
    new_accepting = np.zeros(len(keep) + 1, dtype=bool)
    new_accepting[1:] = accepting[keep]
    new_live = np.ones(len(keep) + 1, dtype=bool)
    new_live[DEAD] = False
    for array in (new_table, new_accepting, new_live):
        array.flags.writeable = False
    return ByteDfa(new_table, new_accepting, new_live, int(renumber[initial]))


def _empty() -> ByteDfa:
    return _trimmed(np.zeros((1, 256), np.int32), np.zeros(1, bool), DEAD)


def _prefixed(data: bytes, dfa: ByteDfa) -> ByteDfa:
    """``data`` followed by a value of ``dfa``: its table behind a chain of ``len(data)``
    states (numpy work, where a concatenation automaton would expand every state)."""
    n = len(data)
    table = np.zeros((n + dfa.num_states, 256), dtype=np.int32)
    table[n + 1:] = np.where(dfa.transitions[1:] != DEAD, dfa.transitions[1:] + n, DEAD)
    for i, byte in enumerate(data):
        table[i + 1, byte] = i + 2 if i + 1 < n else dfa.initial + n
    accepting = np.zeros(len(table), dtype=bool)
    accepting[n + 1:] = dfa.accepting[1:]
    if dfa.initial == DEAD:
        return _empty()
    return _trimmed(table, accepting, 1 if n else dfa.initial)


class _TooLarge(Exception):
    """The complete DFA would exceed the state or time budget."""


def _materialize(auto: LazyAutomaton, budget: CompileBudget, work: int,
                 deadline: float) -> ByteDfa:
    """Every state of a freshly made lazy automaton, breadth first, as a trimmed ByteDfa,
    while it stays within ``budget.max_states`` and costs at most ``work``
    (:meth:`LazyAutomaton._cost` units); ``deadline`` is the last-resort wall-clock guard.

    On a fresh automaton ids come out in discovery order, so expanding ids 1, 2, ... until
    none is left visits exactly the reachable states, and the memo's table is the DFA."""
    if auto.initial == DEAD:
        return _empty()
    start = i = auto.intern(auto.initial)
    limit = auto.work + work
    while i < auto.num_states:
        auto.row(i)
        if auto.num_states > budget.max_states + 1 or auto.work > limit or (
                i & 255 == 1 and time.perf_counter() > deadline):
            raise _TooLarge
        i += 1
    accepting = np.array([auto.accepts_id(j) for j in range(i)], dtype=bool)
    return _trimmed(auto.table[:i].copy(), accepting, start)


def _leaf(nfa: Nfa, tree: rg.Regular) -> tuple[int, int]:
    def any_string():
        return nfa.repeat(lambda: nfa.chars(ALL_CHARS), 0, None)

    match tree:
        case rg.Regex(pattern):
            node = interegular.parse_pattern(rg.normalize_regex(pattern))
            return nfa.regex(node, ip.REFlags(0))
        case rg.Literal(text):
            return nfa.literal(text)
        case rg.OneOf(texts):
            return nfa.alternation([nfa.literal(t) for t in texts])
        case rg.Contains(text):
            return nfa.concat([any_string(), nfa.literal(text), any_string()])
        case rg.Prefix(text):
            return nfa.concat([nfa.literal(text), any_string()])
        case rg.Suffix(text):
            return nfa.concat([any_string(), nfa.literal(text)])
        case rg.CharLength(low, high):
            low = max(low, 0)
            if high is not None and high < low:
                return nfa.chars(())  # an empty range accepts nothing
            return nfa.repeat(lambda: nfa.chars(ALL_CHARS), low, high)
        case rg.AnyString():
            return any_string()
    raise TypeError(f"not a regular constraint: {tree!r}")


class _Compiler:
    """Compiles one tree: complete DFAs while they fit ``max_states`` and the tree's share
    of ``eager_work`` (the work of every automaton built eagerly so far is spent), lazy
    automata past that."""

    def __init__(self, budget: CompileBudget) -> None:
        self.budget, self.work_left = budget, budget.eager_work
        self.deadline = time.perf_counter() + budget.seconds  # the last-resort guard

    def compile(self, tree: rg.Regular) -> Automaton:
        budget = self.budget
        match tree:
            case rg.And(parts) | rg.Or(parts) if parts:
                op = "and" if isinstance(tree, rg.And) else "or"
                result = self.compile(parts[0])
                for part in parts[1:]:
                    result = self.settle(ProductAutomaton(result, self.compile(part), op, budget))
                return result
            case rg.And(()):
                return self.compile(rg.ANY)
            case rg.Or(()):
                return self.compile(rg.OneOf(()))
            case rg.Not(part):
                return self.settle(ProductAutomaton(self.compile(rg.ANY), self.compile(part),
                                                    "diff", budget))
            case rg.Concat((rg.Literal(text), *rest)) if rest:  # a healed prompt text
                after = self.compile(rest[0] if len(rest) == 1 else rg.Concat(tuple(rest)))
                if after.lazy:
                    return ConcatAutomaton(self.compile(rg.Literal(text)), after, budget)
                return _prefixed(text.encode(), after)
            case rg.Concat(parts) if parts:
                result = self.compile(parts[0])
                for part in parts[1:]:
                    result = self.settle(ConcatAutomaton(result, self.compile(part), budget))
                return result
            case rg.Concat(()):
                return self.compile(rg.Literal(""))
            case rg.StopsBefore(part, phrases) if phrases:
                # kept lazy: the hole reads its keys (StopAutomaton.resume)
                return StopAutomaton(self.compile(part), _trimmed(*stop_tail(phrases)),
                                     phrases, budget)
            case rg.StopsBefore(part, ()):
                return self.compile(part)
            case rg.Labels():
                return self.settle(LabelsAutomaton(tree, budget))
            case rg.Substring(text):
                # the suffix automaton while it fits (at least n + 1 states, often ~2n),
                # else the same language lazily over a suffix array
                if len(text) <= budget.max_states // 2:
                    try:
                        return _trimmed(*substring_automaton(text, budget))
                    except AutomatonLimitError:
                        pass  # too many states
                return SubstringAutomaton(text, budget)
            case rg.Json(schema):
                try:
                    return self.compile(schema_regular(schema))
                except AutomatonLimitError as error:
                    raise AutomatonLimitError(f"JSON schema: {error.message}",
                                              hint=JSON_HINT) from None
        nfa = Nfa(budget)
        start, end = _leaf(nfa, tree)
        return self.settle(SubsetAutomaton(nfa, start, end, budget))

    def settle(self, auto: LazyAutomaton) -> Automaton:
        """``auto`` as a ByteDfa if it fits the budget, else ``auto`` itself."""
        before = auto.work
        try:
            return _materialize(auto, self.budget, max(self.work_left, 0), self.deadline)
        except _TooLarge:
            auto.clear()  # the states nearest the start are the cheapest to build again
            return auto
        finally:
            self.work_left -= auto.work - before


def _compile(tree: rg.Regular, budget: CompileBudget) -> Automaton:
    """The automaton of ``tree``: a ByteDfa, or a lazy automaton whose initial state is live
    (an empty lazy language becomes the empty ByteDfa)."""
    try:
        auto = _Compiler(budget).compile(tree)
        if not auto.lazy:
            return auto
        distance = auto.distance(auto.initial)
        if distance == UNKNOWN:
            raise too_large(f"no value found within {budget.max_search_states:,} states",
                            hint="simplify the constraint")
    except AutomatonLimitError as error:
        name = repr(tree) if len(repr(tree)) <= 80 else repr(tree)[:77] + "..."
        raise AutomatonLimitError(f"{error.message} (constraint {name})", hint=error.hint) \
            from None
    return auto if distance >= 0 else _empty()


_CACHE: OrderedDict[tuple[rg.Regular, CompileBudget], Automaton] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_MAX_ENTRIES, _CACHE_MAX_BYTES = 128, 256 << 20


def compile_regular(tree: rg.Regular, budget: CompileBudget = DEFAULT_BUDGET) -> Automaton:
    """The byte-level automaton of ``tree``: a :class:`ByteDfa` within ``budget``, a lazy
    automaton past it (memoised in a small LRU bounded by count and bytes).

    Raises :class:`LmqCompileError` for an invalid regex and :class:`AutomatonLimitError`
    (a compile and a limit error) when even the lazy automaton exceeds ``budget``.
    """
    key = (tree, budget)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    dfa = _compile(tree, budget)
    with _CACHE_LOCK:
        _CACHE[key] = dfa
        while len(_CACHE) > _CACHE_MAX_ENTRIES or (
                len(_CACHE) > 1 and sum(d.nbytes for d in _CACHE.values()) > _CACHE_MAX_BYTES):
            _CACHE.popitem(last=False)
    return dfa


def dfa_accepts(dfa: Automaton, data: bytes) -> bool:
    """Whether the automaton accepts the byte string ``data``."""
    return dfa.accepts(dfa.walk(dfa.initial, data))


def is_empty(dfa: Automaton) -> bool:
    """Whether the automaton accepts nothing at all."""
    return dfa.initial == DEAD or dfa.distance(dfa.initial) < 0


def shortest_completion_len(dfa: ByteDfa) -> np.ndarray:
    """int32 ``[S]``: fewest bytes from each state to acceptance (-1 at :data:`DEAD`)."""
    return dfa.completion
