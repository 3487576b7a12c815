"""Guides turn a constraint into token masks over an opaque integer state (STYLE.md 6).

One guide serves every row of a batch; each sequence keeps its own state (a plain int).
A guide speaks about content tokens only: special ids, EOS included, are never in
``allowed``/``mask`` and ``advance`` refuses them -- the caller allows EOS exactly where
``is_accepting`` holds.

:class:`DfaGuide` walks the byte-level DFA of :mod:`lmq.runtime.fsm` over the token
index's length-sorted byte columns (ENGINE-NOTES 3.1.4): all candidate tokens step one
byte position at a time as numpy gathers, tokens die when the DFA does, and the survivors
of their whole byte string are the allowed set. Since every non-dead DFA state can still
reach acceptance, every allowed token can be completed to a valid value (soundness), and
every token that could be is allowed (completeness). A state's result is computed on first
visit and memoised: a decoding step on a known state costs one dictionary lookup.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Protocol

import numpy as np

from lmq import regular as rg
from lmq.runtime.fsm import DEAD, DEFAULT_BUDGET, ByteDfa, CompileBudget, compile_regular
from lmq.runtime.tokens import TokenIndex


class Guide(Protocol):
    """What the decoding loop needs from a constraint."""

    initial_state: int

    def allowed(self, state: int) -> np.ndarray:
        """Sorted int32 ids of the content tokens allowed next (read-only)."""

    def mask(self, state: int) -> np.ndarray:
        """bool ``[vocab_size]``, True where allowed (content tokens only; EOS False)."""

    def advance(self, state: int, token_id: int) -> int:
        """The state after ``token_id``; ``ValueError`` if it is not allowed."""

    def is_accepting(self, state: int) -> bool:
        """Whether the value so far satisfies the constraint (EOS may end it here)."""

    def walk_bytes(self, state: int, data: bytes) -> int | None:
        """The state after ``data`` (for stop-phrase truncation), ``None`` if it dies."""


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
    """A :class:`Guide` over a :class:`ByteDfa` and a :class:`TokenIndex` (thread-safe).

    ``memo_bytes`` bounds the memoised per-state results (allowed ids + next states; a
    state allowing all 49k tokens of SmolLM2 takes ~300 KB) and ``mask_bytes`` the cached
    bool rows; evicted states are recomputed on their next visit. ``stats`` counts states
    explored and the seconds spent exploring them.
    """

    def __init__(self, dfa: ByteDfa, index: TokenIndex, memo_bytes: int = 64 << 20,
                 mask_bytes: int = 32 << 20) -> None:
        self.dfa, self.index = dfa, index
        self.initial_state = dfa.initial
        self._flat = dfa.transitions.ravel()
        self._next_dtype = np.uint16 if dfa.num_states <= 1 << 16 else np.int32
        self._memo, self._masks = _Lru(memo_bytes), _Lru(mask_bytes)
        self._column_sizes = [len(c) for c in index.columns] + [0]
        self._bucket_sizes = np.diff(index.first_byte_starts)
        self._scratch = np.empty(len(index.order), dtype=np.int32)
        self._lock = threading.RLock()  # one guide may serve rows decoded on several threads
        self.stats = {"explored": 0, "explore_seconds": 0.0}

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
        return self._entry(state)[1]

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
        ids, next_states = self._entry(state)
        i = int(ids.searchsorted(np.int32(token_id)))  # a Python int would upcast ids
        if i == len(ids) or ids[i] != token_id:
            raise ValueError(f"token {token_id} is not allowed in state {state}")
        return int(next_states[i])

    def is_accepting(self, state: int) -> bool:
        return bool(self.dfa.accepting[state])

    def walk_bytes(self, state: int, data: bytes) -> int | None:
        state = self.dfa.walk(state, data)
        return None if state == DEAD else state

    # -- the walk -----------------------------------------------------------------------

    def _entry(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:  # the caches and the walk's scratch buffer are shared
            entry = self._memo.fetch(state)
            if entry is None:
                start = time.perf_counter()
                entry = self._explore(state)
                self.stats["explored"] += 1
                self.stats["explore_seconds"] += time.perf_counter() - start
                self._memo.put(state, entry, entry[0].nbytes + entry[1].nbytes)
            return entry

    def _explore(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        """Allowed ids (sorted) and their next states, by the column walk.

        ``states[j]`` is the DFA state the j-th candidate reached after ``p`` bytes. The
        candidates longer than ``p`` bytes are the first ``len(columns[p])`` positions of
        ``index.order``, so the finished ones split off the end of the arrays. While most
        candidates live, ``states`` covers every position (dead ones stay DEAD, as DEAD's row
        is all DEAD) and each step is one slice-aligned gather; once half are dead, ``pos``
        lists the survivors' positions and the arrays are compacted.
        """
        index, row, flat = self.index, self.dfa.transitions[state], self._flat
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


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
