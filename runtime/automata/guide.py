"""Guides turn a constraint into token masks over an opaque integer state (STYLE.md 6).

One guide serves every row of a batch; each sequence keeps its own state (a plain int).
A guide speaks about content tokens only: special ids, EOS included, are never in
``allowed``/``mask`` and ``advance`` refuses them -- the caller allows EOS exactly where
``is_accepting`` holds.

:class:`DfaGuide` walks the byte-level DFA of :mod:`lmq.runtime.automata.fsm` over the token
index's length-sorted byte columns (ENGINE-NOTES 3.1.4): all candidate tokens step one
byte position at a time as numpy gathers, tokens die when the DFA does, and the survivors
of their whole byte string are the allowed set. Since every non-dead DFA state can still
reach acceptance, every allowed token can be completed to a valid value (soundness), and
every token that could be is allowed (completeness). A state's result is computed on first
visit and memoised: a decoding step on a known state costs one dictionary lookup.

Over a lazy automaton (:mod:`lmq.runtime.automata.fsm_lazy`, the fallback for constraints too large
to build up front) the walk is the same over the automaton's memo table, whose rows are
expanded just before each gather needs them; the tokens that end in a state with no
completion are dropped afterwards (a lazy table is not trimmed), and the guide's states are
the automaton's keys rather than small ints.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Protocol

import numpy as np

from lmq import regular as rg
from lmq.runtime.automata.fsm import (
    DEAD,
    DEFAULT_BUDGET,
    UNKNOWN,
    Automaton,
    CompileBudget,
    compile_regular,
)
from lmq.runtime.automata.fsm_concat import StopAutomaton
from lmq.runtime.automata.tokens import TokenIndex


class Guide(Protocol):
    """What the decoding loop needs from a constraint (states are opaque and hashable:
    ints over a ByteDfa, keys over a lazy automaton)."""

    initial_state: int
    stops: bool  # a StopsBefore language (``resume`` and ``stop_outlook`` matter)
    # True: masks ignore token budgets and each choice is checked (:class:`ChoiceChecking`);
    # False: ``next_distances`` make budget-aware masks
    checks_choices: bool

    def allowed(self, state: int) -> np.ndarray:
        """Sorted int32 ids of the content tokens allowed next (read-only)."""

    def mask(self, state: int) -> np.ndarray:
        """bool ``[vocab_size]``, True where allowed (content tokens only; EOS False)."""

    def advance(self, state: int, token_id: int) -> int:
        """The state after ``token_id``; ``ValueError`` if it is not allowed."""

    def is_accepting(self, state: int) -> bool:
        """Whether the text so far is in the guide's language."""

    def accepts_value(self, state: int) -> bool:
        """Whether the value so far satisfies the constraint (EOS may end it here): like
        ``is_accepting``, but a completed ``StopsBefore`` phrase does not count."""

    def resume(self, state: int) -> int:
        """``state`` with completed ``StopsBefore`` phrases forgotten (``state`` itself for
        other languages)."""

    def stop_outlook(self, state: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per allowed token: stop phrase completed, value live without it, distance then."""

    def walk_bytes(self, state: int, data: bytes) -> int | None:
        """The state after ``data`` (for stop-phrase truncation), ``None`` if it dies."""

    def live_bytes(self, state: int) -> np.ndarray:
        """The bytes that may follow."""

    def forced_bytes(self, state: int, limit: int = 64) -> tuple[bytes, bool]:
        """The bytes the constraint leaves no choice about from ``state`` (at most
        ``limit``; none where the text may end), and whether nothing can follow them."""

    def next_distances(self, state: int) -> np.ndarray:
        """Fewest bytes to acceptance after each allowed token (for budget-aware masks)."""

    @property
    def max_completion(self) -> int | None:
        """An upper bound on every ``next_distances``, None if unknown."""


class ChoiceChecking(Guide, Protocol):
    """A guide whose masks do not see token budgets (a context-free language has no
    per-state distance table): the hole checks each choice instead
    (:meth:`lmq.runtime.decoding.holes.HoleRun.admits`)."""

    def within(self, state: int, left: int) -> bool:
        """Whether the text at ``state`` has a known completion of at most ``left`` tokens."""

    def fits(self, state: int, token: int, left: int) -> bool:
        """Whether the text after ``token`` has a known completion of at most ``left``
        tokens."""

    def closing(self, state: int, left: int) -> np.ndarray:
        """Allowed tokens along the state's known completion after which the rest takes at
        most ``left`` tokens (never empty where ``within(state, left + 1)``)."""


class _Lru(OrderedDict):
    """An LRU dict bounded by the summed ``nbytes`` of its array values."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes, self.nbytes = max_bytes, 0

    def put(self, key, value, size: int) -> None:
        self[key] = (value, size)
        self.nbytes += size
        while self.nbytes > self.max_bytes and len(self) > 1:
            _, (_, dropped) = self.popitem(last=False)
            self.nbytes -= dropped

    def fetch(self, key):
        entry = self.get(key)
        if entry is None:
            return None
        self.move_to_end(key)
        return entry[0]


class DfaGuide:
    """A :class:`Guide` over a :class:`ByteDfa` or a lazy automaton and a
    :class:`TokenIndex` (thread-safe).

    ``memo_bytes`` bounds the memoised per-state results (allowed ids + next states; a
    state allowing all 49k tokens of SmolLM2 takes ~300 KB) and ``mask_bytes`` the cached
    bool rows; evicted states are recomputed on their next visit. ``stats`` counts states
    explored, the seconds spent exploring them, and (lazy automata) the states left out
    because a shortest-completion search gave up on them.
    """

    def __init__(self, dfa: Automaton, index: TokenIndex, memo_bytes: int = 64 << 20,
                 mask_bytes: int = 32 << 20) -> None:
        self.dfa, self.index = dfa, index
        self.initial_state = dfa.initial
        self._lazy = dfa.lazy
        self._next_dtype = np.uint16 if not self._lazy and dfa.num_states <= 1 << 16 \
            else np.int32
        self._memo, self._masks = _Lru(memo_bytes), _Lru(mask_bytes)
        self._column_sizes = [len(c) for c in index.columns] + [0]
        self._bucket_sizes = np.diff(index.first_byte_starts)
        self._scratch = np.empty(len(index.order), dtype=np.int32)
        # one guide may serve rows decoded on several threads; a lazy automaton (whose memo
        # the walk uses) may be shared by guides on several tokenizers
        self._lock = dfa.lock if self._lazy else threading.RLock()
        self.stats = {"explored": 0, "explore_seconds": 0.0, "gave_up": 0}
        self.stops = isinstance(dfa, StopAutomaton)  # a StopsBefore language
        self.checks_choices = False

    @classmethod
    def from_regular(cls, tree: rg.Regular, index: TokenIndex,
                     budget: CompileBudget = DEFAULT_BUDGET) -> DfaGuide:
        """Compile ``tree`` (memoised, see :func:`compile_regular`) and wrap it."""
        return cls(compile_regular(tree, budget), index)

    # -- the protocol -------------------------------------------------------------------

    def allowed(self, state: int) -> np.ndarray:
        return self._entry(state)[0]

    def next_states(self, state: int) -> np.ndarray:
        """The state after each token of ``allowed(state)``, aligned with it."""
        _, next_states, keys = self._entry(state)
        return next_states if keys is None else keys[0][next_states]

    def next_distances(self, state: int) -> np.ndarray:
        """Fewest bytes to acceptance after each token of ``allowed(state)``, aligned."""
        _, next_states, keys = self._entry(state)
        return (self.dfa.completion if keys is None else keys[1])[next_states]

    @property
    def max_completion(self) -> int | None:
        """An upper bound on ``next_distances`` everywhere, None if unknown."""
        return self.dfa.max_distance

    def live_bytes(self, state: int) -> np.ndarray:
        """The bytes that may follow in ``state`` (int32, ascending)."""
        return self.dfa.live_bytes(state)

    def forced_bytes(self, state: int, limit: int = 64) -> tuple[bytes, bool]:
        out = bytearray()
        while len(out) < limit and not self.is_accepting(state):
            live = self.live_bytes(state)
            if len(live) != 1:
                break
            out.append(int(live[0]))
            state = self.dfa.walk(state, bytes(out[-1:]))
        return bytes(out), not len(self.live_bytes(state))

    def mask(self, state: int) -> np.ndarray:
        with self._lock:
            row = self._masks.fetch(state)
            if row is None:
                row = np.zeros(self.index.vocab_size, dtype=bool)
                row[self._entry(state)[0]] = True
                row.flags.writeable = False
                self._masks.put(state, row, row.nbytes)
            return row

    def advance(self, state: int, token_id: int) -> int:
        ids, next_states, keys = self._entry(state)
        i = int(ids.searchsorted(np.int32(token_id)))  # a Python int would upcast ids
        if i == len(ids) or ids[i] != token_id:
            raise ValueError(f"token {token_id} is not allowed in state {state!r}")
        return int(next_states[i]) if keys is None else keys[0][next_states[i]]

    def is_accepting(self, state: int) -> bool:
        return self.dfa.accepts(state)

    def accepts_value(self, state: int) -> bool:
        return self.dfa.accepts_value(state) if self.stops else self.dfa.accepts(state)

    def resume(self, state: int) -> int:
        return self.dfa.resume(state) if self.stops else state

    def stop_outlook(self, state: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Over a ``StopsBefore`` language, for each token of ``allowed(state)`` (aligned):
        whether it completes a stop phrase, whether the value can still complete without
        one, and the fewest bytes to acceptance once completed phrases are forgotten (-1:
        none) -- what a hole needs where its token counts may forbid a stop."""
        _, next_states, keys = self._entry(state)
        info = np.array([self.dfa.stop_info(key) for key in keys[0]],
                        dtype=np.int64).reshape(-1, 3)[next_states]
        return info[:, 0].astype(bool), info[:, 1].astype(bool), info[:, 2]

    def walk_bytes(self, state: int, data: bytes) -> int | None:
        state = self.dfa.walk(state, data)
        if state == DEAD or (self._lazy and self.dfa.distance(state) < 0):
            return None
        return state

    # -- the walk -----------------------------------------------------------------------

    def _entry(self, state: int):
        """Allowed ids and their next states. Over a lazy automaton the next states are
        indexes into the third item, the distinct next keys and their distances (so that
        an entry costs 6 bytes per token either way, not an object pointer each)."""
        with self._lock:  # the caches and the walk's scratch buffer are shared
            entry = self._memo.fetch(state)
            if entry is None:
                start = time.perf_counter()
                if self._lazy:
                    self.dfa.checkpoint()  # no id is held here
                    entry = self._live(*self._explore(self.dfa.intern(state)))
                else:
                    entry = (*self._explore(state), None)
                self.stats["explored"] += 1
                self.stats["explore_seconds"] += time.perf_counter() - start
                self._memo.put(state, entry, entry[0].nbytes + entry[1].nbytes)
            return entry

    def _live(self, ids: np.ndarray, states: np.ndarray):
        """Keep the tokens of a lazy walk that end in a live state; ids become keys."""
        dfa = self.dfa
        present = np.zeros(dfa.num_states, dtype=bool)  # ids are small: no sort needed
        present[states] = True
        unique = np.flatnonzero(present)
        distances = np.array([dfa.distance_id(i) for i in unique.tolist()], dtype=np.int32)
        self.stats["gave_up"] += int(np.count_nonzero(distances == UNKNOWN))
        unique, distances = unique[distances >= 0], distances[distances >= 0]
        slot = np.full(dfa.num_states, -1, dtype=np.int32)
        slot[unique] = np.arange(len(unique), dtype=np.int32)
        inverse = slot[states]
        keep = inverse >= 0
        dtype = np.uint16 if len(unique) <= 1 << 16 else np.int32
        return (_frozen(ids[keep]), _frozen(inverse[keep].astype(dtype)),
                (_keys(dfa, unique), _frozen(distances)))

    def _explore(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        """Allowed ids (sorted) and their next states (ids, over a lazy automaton), by the
        column walk.

        ``states[j]`` is the DFA state the j-th candidate reached after ``p`` bytes. The
        candidates longer than ``p`` bytes are the first ``len(columns[p])`` positions of
        ``index.order``, so the finished ones split off the end of the arrays. While most
        candidates live, ``states`` covers every position (dead ones stay DEAD, as DEAD's row
        is all DEAD) and each step is one slice-aligned gather; once half are dead, ``pos``
        lists the survivors' positions and the arrays are compacted.
        """
        index, dfa, lazy = self.index, self.dfa, self._lazy
        row = dfa.row(state)
        if not index.columns:
            return self._pack([], [])
        first_bytes = np.nonzero(row)[0]  # DEAD == 0
        positions, starts = index.first_byte_positions, index.first_byte_starts
        pos: np.ndarray | None = None
        if self._bucket_sizes[first_bytes].sum() * 4 < len(index.order):
            # Sparse first step (digits, a literal): only the buckets of allowed first bytes.
            pos = np.sort(np.concatenate(
                [positions[starts[b]:starts[b + 1]] for b in first_bytes.tolist()]
                or [np.zeros(0, np.int32)]))
            states = row[index.columns[0][pos]]
        else:
            states = row[index.columns[0]]  # a fresh array, updated in place below
        done_pos: list[np.ndarray] = []
        done_states: list[np.ndarray] = []
        p = 1
        while len(states):
            size = self._column_sizes[p]
            cut = size if pos is None else int(np.searchsorted(pos, size))
            if cut < len(states):  # exactly p bytes long: finished
                done_pos.append(np.arange(cut, len(states)) if pos is None else pos[cut:])
                done_states.append(states[cut:])
                states = states[:cut]
                pos = None if pos is None else pos[:cut]
            if not cut:
                break
            if lazy:
                dfa.ensure_rows(states)
            flat = dfa.flat
            if pos is None:  # in place: the finished tails above lie beyond ``cut``
                rows = self._scratch[:cut]
                np.multiply(states, 256, out=rows)
                np.add(rows, index.columns[p], out=rows)
                np.take(flat, rows, out=states)
                if np.count_nonzero(states) * 2 < len(states):
                    pos = np.nonzero(states)[0]
                    states = states[pos]
            else:
                states = flat[states * 256 + index.columns[p][pos]]
                alive = np.nonzero(states)[0]
                if len(alive) < len(states):
                    pos, states = pos[alive], states[alive]
            p += 1
        return self._pack(done_pos, done_states)

    def _pack(self, done_pos: list[np.ndarray], done_states: list[np.ndarray]):
        """Sorted allowed ids and aligned next states from the walk's finished candidates."""
        if not done_pos:
            return _frozen(np.zeros(0, np.int32)), _frozen(np.zeros(0, self._next_dtype))
        states = np.concatenate(done_states)
        alive = np.nonzero(states)[0]
        ids, states = self.index.order[np.concatenate(done_pos)[alive]], states[alive]
        if len(ids) * 16 > self.index.vocab_size:  # many: a scatter beats sorting
            scattered = np.zeros(self.index.vocab_size, dtype=self._next_dtype)
            scattered[ids] = states
            ids = np.sort(ids) if len(ids) < 4096 else np.flatnonzero(scattered).astype(np.int32)
            states = scattered[ids]
        else:
            by_id = np.argsort(ids, kind="stable")
            ids, states = ids[by_id], states[by_id]
        return _frozen(ids.astype(np.int32)), _frozen(states.astype(self._next_dtype))


def _keys(dfa, ids: np.ndarray) -> np.ndarray:
    """The keys of a lazy automaton's ``ids``, as an object array."""
    keys = np.empty(len(ids), dtype=object)
    for j, i in enumerate(ids.tolist()):
        keys[j] = dfa.key_of(i)  # one by one: numpy would unpack tuple keys
    return keys


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
