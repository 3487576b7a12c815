"""Lazy byte automata: DFA states built on demand, for constraints too large to build up front.

:mod:`lmq.runtime.automata.fsm` describes every constraint as a :class:`LazyAutomaton` -- the subset
construction of an NFA (:class:`SubsetAutomaton`) or the product of two automata
(:class:`ProductAutomaton`) -- and turns it into a complete
:class:`~lmq.runtime.automata.fsm.ByteDfa` when that fits the :class:`CompileBudget`. When it
does not, the lazy automaton itself is the fallback: slower (a first visit expands the states
it meets), bounded in memory, and exactly as permissive as the eager DFA would be.

**Keys and ids.** A state is a hashable *key* (a frozenset of NFA states, a pair of component
keys); key :data:`DEAD` (``0``) is the dead sink. The automaton interns keys as small int
*ids* into ``table``, int32 ``[capacity, 256]`` rows laid out like a ``ByteDfa``'s
``transitions`` (id 0 is DEAD, its row all DEAD), so the guide's vectorised token walk runs
over it unchanged. Ids are scratch: the table is a memo, cleared when it holds more than
``budget.memo_states`` states -- but only in :meth:`LazyAutomaton.checkpoint`, which the
methods taking keys call first, so ids stay valid from one checkpoint to the next. What
leaves the automaton (guide states, hole cursors) is always a key.

**Distances.** ``distance`` is the fewest bytes from a state to acceptance, ``-1`` if there is
none (the state is dead though not DEAD; the eager DFA trims those into DEAD, here the
guide drops the tokens that end in one). A subset's distance is the least NFA distance of
its members (precomputed once, backwards over the NFA); a product's is found by an A*
search whose heuristic is the components' distances (an ``or`` product needs none: the
least live component distance is exact). A search that expands more than
``budget.max_search_states`` states gives up with :data:`UNKNOWN`, which callers treat as
not live: never entering a state that might not complete is sound, and only pathological
intersections get there (``lmq.runtime.automata.fsm`` makes an initial state it cannot decide an
error).
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections import deque
from functools import cached_property
from typing import Any

import numpy as np

from lmq.runtime.automata.nfa import CompileBudget, Nfa

Key = Any  # a hashable state key: a frozenset of NFA states, a pair of component keys, ...
DEAD = 0
UNKNOWN = -2  # a distance the search gave up on
_UNSET = -3
_OPS = {"and": (lambda x, y: x and y, lambda x, y: x == DEAD or y == DEAD),
        "or": (lambda x, y: x or y, lambda x, y: x == DEAD and y == DEAD),
        "diff": (lambda x, y: x and not y, lambda x, y: x == DEAD)}


class LazyAutomaton:
    """A deterministic byte automaton expanded on demand (see the module docstring).

    Subclasses define ``_expand(key) -> (targets, codes)`` -- byte ``b`` leads to
    ``targets[codes[b]]`` (int32 ``codes[256]``) --, ``_accepts(key)`` and, unless the
    generic search fits, ``_distance(i)``. ``max_distance`` is an upper bound on the distance
    of every live state, or None when unknown.
    """

    lazy = True
    max_distance: int | None = None

    def __init__(self, initial: Key, budget: CompileBudget) -> None:
        self.initial, self.budget = initial, budget
        self.lock = threading.RLock()  # guides on several threads may share one automaton
        self.stats = {"expanded": 0, "cleared": 0, "searched": 0, "gave_up": 0}
        self.work = 0  # what expanding states has cost so far (see _cost)
        self._reset()

    def _reset(self) -> None:
        self.keys: list[Key] = [DEAD]
        self._ids: dict[Key, int] = {DEAD: 0}
        self.table = np.zeros((64, 256), dtype=np.int32)
        self._filled = np.zeros(64, dtype=bool)
        self._filled[DEAD] = True
        self._accepting = np.full(64, -1, dtype=np.int8)
        self._accepting[DEAD] = 0
        self._distances = np.full(64, _UNSET, dtype=np.int32)
        self._distances[DEAD] = -1
        self.flat = self.table.ravel()

    @property
    def num_states(self) -> int:
        """States in the memo now (the automaton may have far more)."""
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return self.table.nbytes + self._distances.nbytes + 160 * len(self.keys)

    # -- ids (valid until the next checkpoint) -------------------------------------------

    def checkpoint(self) -> None:
        """Clear the memo if it outgrew ``budget.memo_states``; only call this where no id
        is held. (Between checkpoints the memo may outgrow the cap by what one mask
        computation or search adds.)"""
        if len(self.keys) > self.budget.memo_states:
            self.clear()
            self.stats["cleared"] += 1

    def clear(self) -> None:
        """Forget every state but DEAD (ids are void after this)."""
        self._reset()

    def intern(self, key: Key) -> int:
        i = self._ids.get(key)
        if i is None:
            i = self._ids[key] = len(self.keys)
            self.keys.append(key)
            if i == len(self._filled):
                self._grow()
        return i

    def _grow(self) -> None:
        size = 2 * len(self._filled)
        table = np.zeros((size, 256), dtype=np.int32)
        table[:len(self.table)] = self.table
        self.table, self.flat = table, table.ravel()
        self._filled = np.concatenate([self._filled, np.zeros(size // 2, dtype=bool)])
        self._accepting = np.concatenate([self._accepting, np.full(size // 2, -1, np.int8)])
        self._distances = np.concatenate([self._distances, np.full(size // 2, _UNSET, np.int32)])

    def key_of(self, i: int) -> Key:
        return self.keys[i]

    def row(self, i: int) -> np.ndarray:
        """The successor ids of state ``i`` (int32 ``[256]``), expanding it if needed."""
        if not self._filled[i]:
            key = self.keys[i]
            targets, codes = self._expand(key)
            self.work += self._cost(key, targets)
            ids = np.fromiter((self.intern(t) for t in targets), np.int32, len(targets))
            self.table[i] = ids[codes]  # after interning: that may reallocate the table
            self._filled[i] = True
            self.stats["expanded"] += 1
        return self.table[i]

    def ensure_rows(self, ids: np.ndarray) -> None:
        """Expand every state of ``ids`` (so that ``flat`` can be gathered at them)."""
        filled = self._filled[ids]
        if not filled.all():
            for i in np.unique(ids[~filled]).tolist():
                self.row(i)

    def accepts_id(self, i: int) -> bool:
        if self._accepting[i] < 0:
            self._accepting[i] = self._accepts(self.keys[i])
        return bool(self._accepting[i])

    def distance_id(self, i: int) -> int:
        """Fewest bytes to acceptance from state ``i``: -1 dead, :data:`UNKNOWN` gave up."""
        if self._distances[i] == _UNSET:
            self._distances[i] = self._distance(i)
        return int(self._distances[i])

    # -- keys ----------------------------------------------------------------------------

    def accepts(self, key: Key) -> bool:
        with self.lock:
            self.checkpoint()
            return self.accepts_id(self.intern(key))

    def distance(self, key: Key) -> int:
        with self.lock:
            self.checkpoint()
            return self.distance_id(self.intern(key))

    def walk(self, key: Key, data: bytes) -> Key:
        """The state after reading ``data`` from ``key`` (DEAD once it dies)."""
        with self.lock:
            self.checkpoint()
            i = self.intern(key)
            for byte in data:
                i = int(self.row(i)[byte])
                if i == DEAD:
                    break
            return self.keys[i]

    def live_bytes(self, key: Key) -> np.ndarray:
        """The bytes that lead from ``key`` to a live state."""
        with self.lock:
            self.checkpoint()
            row = self.row(self.intern(key))
            targets = np.unique(row[row != DEAD]).tolist()
            live = [t for t in targets if self.distance_id(t) >= 0]
            return np.flatnonzero(np.isin(row, live)).astype(np.int32)

    # -- the generic search ---------------------------------------------------------------

    def _bound(self, i: int) -> int:
        """A lower bound on ``distance_id(i)`` that never overestimates by more than one
        byte per step (consistent); -1 where the state is surely dead."""
        return 0

    def _distance(self, i: int) -> int:
        return self._search(i)

    def _search(self, start: int) -> int:
        """A* from ``start`` to an accepting state with :meth:`_bound` as the heuristic.

        The states on the path found get their exact distances too; when the search runs
        out of states without finding one, every state it reached is dead."""
        self.stats["searched"] += 1
        bound = self._bound(start)
        if bound < 0:
            return -1
        heap, cost, parent, expanded = [(bound, 0, start)], {start: 0}, {start: -1}, 0
        while heap:
            _, negative, i = heapq.heappop(heap)
            if -negative > cost[i]:
                continue  # a stale entry
            if self.accepts_id(i):
                total, node = cost[i], i
                while node != start:
                    self._distances[node] = total - cost[node]
                    node = parent[node]
                return total
            expanded += 1
            if expanded > self.budget.max_search_states:
                self.stats["gave_up"] += 1
                return UNKNOWN
            row = self.row(i)
            for j in np.unique(row[row != DEAD]).tolist():
                if self._distances[j] == -1 or cost.get(j, 1 << 62) <= cost[i] + 1:
                    continue
                bound = self._bound(j)
                if bound < 0:
                    self._distances[j] = -1
                    continue
                cost[j], parent[j] = cost[i] + 1, i
                heapq.heappush(heap, (cost[j] + bound, -cost[j], j))
        for i in cost:
            self._distances[i] = -1
        return -1

    def _expand(self, key: Key) -> tuple[list[Key], np.ndarray]:
        raise NotImplementedError

    def _cost(self, key: Key, targets: list[Key]) -> int:
        """The work of one expansion in units that do not depend on the machine (the
        eager budget, ``CompileBudget.eager_work``, counts them): here one per row and
        successor."""
        return 1 + len(targets)

    def _accepts(self, key: Key) -> bool:
        raise NotImplementedError


class SubsetAutomaton(LazyAutomaton):
    """The subset construction of a byte NFA, one DFA state per set of NFA states.

    A key is the frozenset of NFA states with byte edges (or ``final``) in an epsilon
    closure: states differing only in epsilon-only members behave alike, so leaving those
    out merges them. A key is live iff one of its members can reach ``final``.
    """

    def __init__(self, nfa: Nfa, start: int, final: int, budget: CompileBudget) -> None:
        self.nfa, self.final = nfa, final
        self._closures: dict[int, frozenset[int]] = {}
        super().__init__(self._closure(start) or DEAD, budget)

    @cached_property
    def _nfa_distances(self) -> list[int]:
        return _nfa_distances(self.nfa, self.final)

    @cached_property
    def max_distance(self) -> int:  # type: ignore[override]
        return max(self._nfa_distances, default=0)

    def _closure(self, s: int) -> frozenset[int]:
        if s not in self._closures:
            nfa = self.nfa
            seen, todo = {s}, [s]
            while todo:
                for t in nfa.eps[todo.pop()]:
                    if t not in seen:
                        seen.add(t)
                        todo.append(t)
            self._closures[s] = frozenset(t for t in seen if nfa.edges[t] or t == self.final)
        return self._closures[s]

    def _expand(self, key):
        edges = [edge for s in key for edge in self.nfa.edges[s]]
        bounds = sorted({lo for lo, _, _ in edges} | {hi + 1 for _, hi, _ in edges})
        reached: list[set[int]] = [set() for _ in bounds]
        for lo, hi, target in edges:
            for k in range(bisect.bisect_left(bounds, lo), bisect.bisect_left(bounds, hi + 1)):
                reached[k].add(target)
        targets: list[Key] = [DEAD]
        codes = np.zeros(256, dtype=np.int32)
        for k, states in enumerate(reached):
            if states:
                codes[bounds[k]:bounds[k + 1]] = len(targets)
                targets.append(frozenset().union(*(self._closure(t) for t in states)))
        return targets, codes

    def _accepts(self, key) -> bool:
        return key != DEAD and self.final in key

    def _cost(self, key, targets) -> int:
        """One per NFA edge scanned and per successor closure (what ``_expand`` does)."""
        return 1 + sum(len(self.nfa.edges[s]) for s in key) + \
            sum(len(t) for t in targets if t != DEAD)

    def _distance(self, i: int) -> int:
        key, distances = self.keys[i], self._nfa_distances
        if key == DEAD:
            return -1
        return min((distances[s] for s in key if distances[s] >= 0), default=-1)


class PairAutomaton(LazyAutomaton):
    """A lazy automaton built from two component automata ``a`` and ``b``: a checkpoint
    of the pair is a checkpoint of both."""

    a: Any
    b: Any

    def checkpoint(self) -> None:
        super().checkpoint()
        self.a.checkpoint()
        self.b.checkpoint()


class ProductAutomaton(PairAutomaton):
    """The product of automata ``a`` and ``b`` (lazy ones or :class:`ByteDfa`), accepting
    by ``op`` (``and``, ``or``, ``diff``: in ``a`` but not in ``b``). A key is the pair of
    component keys, DEAD where the product can no longer accept."""

    def __init__(self, a, b, op: str, budget: CompileBudget) -> None:
        self.a, self.b, self.op = a, b, op
        self._accept, self._dead = _OPS[op]
        start = (a.initial, b.initial)
        super().__init__(DEAD if self._dead(*start) else start, budget)

    @cached_property
    def max_distance(self) -> int | None:  # type: ignore[override]
        a, b = self.a.max_distance, self.b.max_distance
        return max(a, b) if self.op == "or" and a is not None and b is not None else None

    def _expand(self, key):
        a, b = self.a, self.b
        x, y = key
        codes = a.row(a.intern(x)).astype(np.int64) << 32 | b.row(b.intern(y))
        unique, inverse = np.unique(codes, return_inverse=True)
        targets: list[Key] = []
        for code in unique.tolist():
            x, y = code >> 32, code & 0xFFFFFFFF
            targets.append(DEAD if self._dead(x, y) else (a.key_of(x), b.key_of(y)))
        return targets, inverse.astype(np.int32)

    def _accepts(self, key) -> bool:
        return key != DEAD and self._accept(self.a.accepts(key[0]), self.b.accepts(key[1]))

    def _components(self, i: int) -> tuple[int, int]:
        key = self.keys[i]
        if key == DEAD:
            return -1, -1
        return self.a.distance(key[0]), self.b.distance(key[1])

    def _bound(self, i: int) -> int:
        x, y = self._components(i)
        if self.op == "or":  # UNKNOWN counts as 0, a dead component not at all
            return -1 if x == y == -1 else min(max(d, 0) for d in (x, y) if d != -1)
        if x == -1 or (self.op == "and" and y == -1):
            return -1
        return max(x, y if self.op == "and" else 0, 0)

    def _distance(self, i: int) -> int:
        x, y = self._components(i)
        if self.op == "or" and UNKNOWN not in (x, y):
            return -1 if x == y == -1 else min(d for d in (x, y) if d >= 0)
        if self.op == "diff" and x >= 0 and self.keys[i][1] == DEAD:
            return x  # nothing left to avoid
        return self._search(i)


def _nfa_distances(nfa: Nfa, final: int) -> list[int]:
    """Fewest bytes from each NFA state to ``final`` (-1: never), by a 0-1 BFS backwards
    (epsilon edges cost nothing)."""
    n = len(nfa.edges)
    byte_preds, byte_starts = _predecessors(
        n, [s for s, edges in enumerate(nfa.edges) for _ in edges],
        [edge[2] for edges in nfa.edges for edge in edges])
    eps_preds, eps_starts = _predecessors(
        n, [s for s, eps in enumerate(nfa.eps) for _ in eps], [t for eps in nfa.eps for t in eps])
    distances = [-1] * n
    distances[final] = 0
    queue = deque([final])
    while queue:
        s = queue.popleft()
        d = distances[s]
        for p in eps_preds[eps_starts[s]:eps_starts[s + 1]]:
            if distances[p] < 0 or distances[p] > d:
                distances[p] = d
                queue.appendleft(p)
        for p in byte_preds[byte_starts[s]:byte_starts[s + 1]]:
            if distances[p] < 0 or distances[p] > d + 1:
                distances[p] = d + 1
                queue.append(p)
    return distances


def _predecessors(n: int, sources: list[int], targets: list[int]) -> tuple[list[int], list[int]]:
    """The sources of the edges into each state: ``preds[starts[t]:starts[t + 1]]``."""
    order = np.argsort(np.asarray(targets, dtype=np.int64), kind="stable")
    ordered = np.asarray(targets, dtype=np.int64)[order]
    return (np.asarray(sources, dtype=np.int64)[order].tolist(),
            np.searchsorted(ordered, np.arange(n + 1)).tolist())
