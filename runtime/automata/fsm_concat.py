"""Concatenation automata: ``Concat`` and the generation language of ``STOPS_BEFORE``.

:class:`ConcatAutomaton` reads ``L(a)·L(b)`` lazily (the usual construction for
concatenating DFAs): a key is ``(x, ys)``, the state ``x`` of ``a`` on the whole text read
so far and the set ``ys`` of states of ``b`` on each suffix read since a point where ``a``
accepted. It accepts where some member of ``ys`` does; its distances are exact, ``x``'s
distance plus ``b``'s from its start, or the least of ``ys``'s.

:class:`StopAutomaton` is the concatenation of a hole's value automaton with a *stop tail*
(:func:`stop_tail`), which accepts the empty string or a stop phrase followed by any bytes:
the text a hole with ``STOPS_BEFORE`` may generate before the phrase and the token's
overshoot are cut off (``lmq.regular.StopsBefore``). It stays lazy so that its keys keep
their structure: a key's tail states show where a phrase is under way or complete
(``SINK``), which the hole needs when token counts forbid a stop (:meth:`resume`).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from lmq.runtime.automata.fsm_lazy import DEAD, UNKNOWN, Key, PairAutomaton
from lmq.runtime.automata.nfa import CompileBudget


class ConcatAutomaton(PairAutomaton):
    """``L(a)·L(b)`` for automata ``a`` and ``b`` (lazy ones or ``ByteDfa``)."""

    def __init__(self, a, b, budget: CompileBudget) -> None:
        self.a, self.b = a, b
        start = self._key(a.initial, a.accepts(a.initial), frozenset())
        super().__init__(start, budget)

    def _key(self, x: Key, accepting: bool, ys: frozenset) -> Key:
        if accepting and self.b.initial != DEAD:
            ys = ys | {self.b.initial}
        return DEAD if x == DEAD and not ys else (x, ys)

    @cached_property
    def max_distance(self) -> int | None:  # type: ignore[override]
        a, b = self.a.max_distance, self.b.max_distance
        return a + b if a is not None and b is not None else None

    def _expand(self, key):
        a, b = self.a, self.b
        x, ys = key
        rows = [a.row(a.intern(x))] + [b.row(b.intern(y)) for y in ys]
        columns, codes = np.unique(np.stack(rows).T, axis=0, return_inverse=True)
        targets: list[Key] = []
        for column in columns.tolist():
            i = column[0]
            ys_next = frozenset(b.key_of(j) for j in column[1:] if j != DEAD)
            targets.append(self._key(a.key_of(i), i != DEAD and a.accepts_id(i), ys_next))
        return targets, codes.reshape(-1).astype(np.int32)

    def _accepts(self, key) -> bool:
        return key != DEAD and any(self.b.accepts(y) for y in key[1])

    @cached_property
    def _b_start(self) -> int:
        return self.b.distance(self.b.initial) if self.b.initial != DEAD else -1

    def _distance(self, i: int) -> int:
        key = self.keys[i]
        if key == DEAD:
            return -1
        x, ys = key
        through_a = self.a.distance(x)
        found = [self.b.distance(y) for y in ys]
        if through_a >= 0 and self._b_start >= 0:
            found.append(through_a + self._b_start)
        if UNKNOWN in found or (through_a == UNKNOWN and self._b_start != -1):
            return self._search(i)
        return min((d for d in found if d >= 0), default=-1)


def stop_tail(phrases: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """The stop tail of ``phrases`` as ``(table, accepting, initial)``: state 1 (the start,
    accepting the empty string) and the byte trie of the phrases lead to a sink (the last
    state) that accepts every byte string; a phrase that another one starts with ends there
    first."""
    encoded = sorted({phrase.encode() for phrase in phrases})
    prefixes = sorted({p[:n] for p in encoded for n in range(1, len(p))
                       if not any(p[:n].startswith(q) for q in encoded)})
    state = {b"": 1, **{prefix: i + 2 for i, prefix in enumerate(prefixes)}}
    sink = len(state) + 1
    table = np.zeros((sink + 1, 256), dtype=np.int32)
    table[sink] = sink
    for prefix, here in state.items():
        for byte in range(256):
            longer = prefix + bytes([byte])
            table[here, byte] = sink if longer in encoded else state.get(longer, DEAD)
    accepting = np.zeros(sink + 1, dtype=bool)
    accepting[[1, sink]] = True
    return table, accepting, 1


class StopAutomaton(ConcatAutomaton):
    """A value automaton followed by a :func:`stop_tail` (``tail``, a ``ByteDfa``)."""

    def __init__(self, value, tail, phrases: tuple[str, ...], budget: CompileBudget) -> None:
        super().__init__(value, tail, budget)
        self.sink = tail.walk(tail.initial, phrases[0].encode())

    def accepts_value(self, key: Key) -> bool:
        """Whether the value read so far is in the value automaton's language."""
        return key != DEAD and self.a.accepts(key[0])

    def resume(self, key: Key) -> Key:
        """``key`` as if no stop phrase had been completed (a stop the hole's token counts
        did not allow): the phrases under way go on, the completed ones no longer count."""
        if key == DEAD or self.sink not in key[1]:
            return key
        return self._key(key[0], False, key[1] - {self.sink})

    def stop_info(self, key: Key) -> tuple[bool, bool, int]:
        """Whether ``key`` has completed a phrase, whether the value can still complete
        without one, and the distance of :meth:`resume` ``(key)``."""
        resumed = self.resume(key)
        live = resumed != DEAD and self.a.distance(resumed[0]) >= 0
        return resumed is not key, live, self.distance(resumed)
