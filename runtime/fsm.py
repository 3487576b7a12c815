"""Compile :mod:`lmq.regular` trees into byte-level DFAs.

A :class:`ByteDfa` reads the UTF-8 bytes of a value. Its dense table ``transitions[state,
byte]`` has a dead sink :data:`DEAD` (state 0, its row all ``DEAD``); every other state is
reachable from ``initial`` and *live* (an accepting state is reachable from it), because
compilation trims the rest into ``DEAD``. So "still completable" is ``state != DEAD``.

How: a regex becomes a Thompson NFA over bytes (:mod:`lmq.runtime.nfa`) and a budgeted
subset construction turns it into the DFA. The other leaves (literals, choices,
prefix/suffix/contains, character lengths, ANY) are built as NFAs directly, ``LABELS`` and
``SPAN`` as DFAs directly (:mod:`lmq.runtime.fsm_builders`), a JSON schema as a regular
tree first (:mod:`lmq.runtime.fsm_json`); ``And``/``Or``/``Not`` are product
constructions on DFAs, ``Not`` relative to valid UTF-8. interegular's own ``to_fsm`` is not used: its
crawl looks states up in a list (quadratic; ``(a|b)*a(a|b){12}`` takes 5 s there) and
cannot be stopped, while a constraint must compile within a budget or fail cleanly.
Determinizing a byte NFA also shares the UTF-8 continuation states of a character class
(``[^\\n]{0,64}``: 514 states), which a char-level DFA expanded per transition would not.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from itertools import islice

import interegular
import numpy as np
from interegular import patterns as ip

from lmq import regular as rg
from lmq.errors import LmqCompileError
from lmq.runtime.fsm_builders import labels_automaton, substring_automaton
from lmq.runtime.fsm_json import schema_regular
from lmq.runtime.nfa import (  # noqa: F401  (CompileBudget, utf8_sequences: re-exported)
    ALL_CHARS, DEFAULT_BUDGET, CompileBudget, Nfa, check_time, too_large, utf8_sequences)

DEAD = 0
JSON_HINT = ("give strings a smaller 'maxLength' and arrays a smaller 'maxItems' in the schema "
             "(unbounded strings get 256 characters, arrays 16 items, and each bounded "
             "character costs about 16 automaton states)")


@dataclass(frozen=True, eq=False)
class ByteDfa:
    """A complete DFA over bytes; see the module docstring for its invariants.

    ``transitions``: int32 ``[S, 256]``; ``accepting``, ``live``: bool ``[S]`` (``live`` is
    False only at :data:`DEAD`); ``initial`` is :data:`DEAD` iff the language is empty.
    """

    transitions: np.ndarray
    accepting: np.ndarray
    live: np.ndarray
    initial: int

    @property
    def num_states(self) -> int:
        return len(self.accepting)

    def walk(self, state: int, data: bytes) -> int:
        """The state after reading ``data`` from ``state`` (:data:`DEAD` once it dies)."""
        table = self.transitions
        for byte in data:
            state = int(table[state, byte])
            if state == DEAD:
                break
        return state


def _determinize(nfa: Nfa, start: int, final: int) -> ByteDfa:
    """Subset construction. A DFA state is the set of NFA states with byte edges reached by
    epsilon closure (plus ``final`` if reached): states differing only in epsilon-only
    members behave alike, so leaving those out merges them."""
    closures: dict[int, frozenset[int]] = {}

    def closure(s: int) -> frozenset[int]:
        if s not in closures:
            seen, todo = {s}, [s]
            while todo:
                for t in nfa.eps[todo.pop()]:
                    if t not in seen:
                        seen.add(t)
                        todo.append(t)
            closures[s] = frozenset(t for t in seen if nfa.edges[t] or t == final)
        return closures[s]

    initial = closure(start)
    if not initial:
        return _trimmed(np.zeros((1, 256), np.int32), np.zeros(1, bool), DEAD)
    ids: dict[frozenset[int], int] = {frozenset(): DEAD, initial: 1}
    sets, rows, budget = [frozenset(), initial], [np.zeros(256, np.int32)], nfa.budget
    for i, members in enumerate(islice(sets, 1, None), start=1):  # grows as we walk
        if i % 256 == 0:
            check_time(nfa.deadline)
        edges = [edge for s in members for edge in nfa.edges[s]]
        bounds = sorted({lo for lo, _, _ in edges} | {hi + 1 for _, hi, _ in edges})
        targets: list[set[int]] = [set() for _ in bounds]
        for lo, hi, target in edges:
            for k in range(bisect.bisect_left(bounds, lo), bisect.bisect_left(bounds, hi + 1)):
                targets[k].add(target)
        rows.append(row := np.zeros(256, np.int32))
        for k, reached in enumerate(targets):
            if reached:
                key = frozenset().union(*(closure(t) for t in reached))
                if key not in ids:
                    if len(sets) > budget.max_states:
                        raise too_large(f"more than {budget.max_states} DFA states")
                    ids[key] = len(sets)
                    sets.append(key)
                row[bounds[k]:bounds[k + 1]] = ids[key]
    accepting = np.array([final in s for s in sets], dtype=bool)
    return _trimmed(np.stack(rows), accepting, 1)


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


_OPS = {"and": (lambda x, y: x and y, lambda x, y: x == DEAD or y == DEAD),
        "or": (lambda x, y: x or y, lambda x, y: x == DEAD and y == DEAD),
        "diff": (lambda x, y: x and not y, lambda x, y: x == DEAD)}


def _product(a: ByteDfa, b: ByteDfa, op: str, budget: CompileBudget,
             deadline: float) -> ByteDfa:
    """The product automaton of ``a`` and ``b``, accepting by ``op`` (and, or, diff)."""
    accept, dead = _OPS[op]
    width = b.num_states
    start = (a.initial, b.initial)
    if dead(*start):
        return _trimmed(np.zeros((1, 256), np.int32), np.zeros(1, bool), DEAD)
    ids, pairs, rows = {start[0] * width + start[1]: 1}, [(0, 0), start], [np.zeros(256, np.int32)]
    for i, (x, y) in enumerate(islice(pairs, 1, None), start=1):  # grows as we walk
        if i % 256 == 0:
            check_time(deadline)
        codes = a.transitions[x].astype(np.int64) * width + b.transitions[y]
        unique, inverse = np.unique(codes, return_inverse=True)
        targets = []
        for code in unique.tolist():
            x2, y2 = divmod(code, width)
            if dead(x2, y2):
                targets.append(DEAD)
                continue
            if code not in ids:
                if len(pairs) > budget.max_states:
                    raise too_large(f"more than {budget.max_states} DFA states")
                ids[code] = len(pairs)
                pairs.append((x2, y2))
            targets.append(ids[code])
        rows.append(np.asarray(targets, dtype=np.int32)[inverse])
    accepting = np.array([accept(bool(a.accepting[x]), bool(b.accepting[y]))
                          for x, y in pairs], dtype=bool)
    accepting[DEAD] = False
    return _trimmed(np.stack(rows), accepting, 1)


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


def _compile(tree: rg.Regular, budget: CompileBudget, deadline: float) -> ByteDfa:
    match tree:
        case rg.And(parts) | rg.Or(parts) if parts:
            op = "and" if isinstance(tree, rg.And) else "or"
            result = _compile(parts[0], budget, deadline)
            for part in parts[1:]:
                result = _product(result, _compile(part, budget, deadline), op, budget, deadline)
            return result
        case rg.And(()):
            return _compile(rg.ANY, budget, deadline)
        case rg.Or(()):
            return _compile(rg.OneOf(()), budget, deadline)
        case rg.Not(part):
            return _product(_compile(rg.ANY, budget, deadline),
                            _compile(part, budget, deadline), "diff", budget, deadline)
        case rg.Labels():
            return _trimmed(*labels_automaton(tree, budget, deadline))
        case rg.Substring(text):
            return _trimmed(*substring_automaton(text, budget, deadline))
        case rg.Json(schema):
            try:
                return _compile(schema_regular(schema), budget, deadline)
            except LmqCompileError as error:
                if not error.message.startswith("constraint automaton too large"):
                    raise
                raise LmqCompileError(f"JSON schema: {error.message}", hint=JSON_HINT) from None
    nfa = Nfa(budget, deadline)
    start, end = _leaf(nfa, tree)
    return _determinize(nfa, start, end)


_CACHE: OrderedDict[tuple[rg.Regular, CompileBudget], ByteDfa] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_MAX_ENTRIES, _CACHE_MAX_BYTES = 128, 256 << 20


def compile_regular(tree: rg.Regular, budget: CompileBudget = DEFAULT_BUDGET) -> ByteDfa:
    """The byte-level DFA of ``tree`` (memoised in a small LRU bounded by count and bytes).

    Raises :class:`LmqCompileError` for an invalid regex or when the automaton exceeds
    ``budget``.
    """
    key = (tree, budget)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    dfa = _compile(tree, budget, time.perf_counter() + budget.seconds)
    with _CACHE_LOCK:
        _CACHE[key] = dfa
        while len(_CACHE) > _CACHE_MAX_ENTRIES or (
                len(_CACHE) > 1 and sum(d.transitions.nbytes for d in _CACHE.values())
                > _CACHE_MAX_BYTES):
            _CACHE.popitem(last=False)
    return dfa


def dfa_accepts(dfa: ByteDfa, data: bytes) -> bool:
    """Whether the DFA accepts the byte string ``data``."""
    return bool(dfa.accepting[dfa.walk(dfa.initial, data)])


def is_empty(dfa: ByteDfa) -> bool:
    """Whether the DFA accepts nothing at all."""
    return dfa.initial == DEAD


def shortest_completion_len(dfa: ByteDfa) -> np.ndarray:
    """int32 ``[S]``: fewest bytes from each state to acceptance (-1 at :data:`DEAD`)."""
    return _reverse_distances(dfa.transitions, dfa.accepting)
