"""Byte automata built without a regex: ``LABELS`` and ``SPAN`` (for :mod:`.fsm`).

**Labels** (:class:`LabelsAutomaton`, a lazy automaton that ``fsm`` builds in full while
it fits the budget). A value is read against a byte trie of the labels. A *configuration*
is ``(used, phase)``: ``used`` is the bitmask of labels already completed (with
``unique=True``; otherwise a count, saturated where it no longer matters) and ``phase`` a
trie node or a position inside the separator. A DFA state is a set of configurations --
usually one, several only where a label contains the separator or another label followed
by separator bytes -- so the construction is an ordinary subset construction from the
initial configuration. Labels are therefore allowed byte by byte: any tokenization works,
including tokens that span a label's end and the separator. Tracking ``used`` is what
makes unique labels exact, and it is exponential: over n labels and no ``max`` there are
up to 2^n used-sets, each with the trie nodes of the labels still unused (the 10 topics of
label_sets.json: 43,646 states; with ``max=3``: 3,783). Past the state budget the
automaton stays lazy and only the used-sets a generation meets are built.

**Substrings** (:func:`substring_automaton`: ``(table, accepting, initial)``, an int32
``[S, 256]`` table whose row 0 is the dead sink, every state reachable from ``initial``).
A suffix automaton over the text's characters (at most 2n - 1 states) accepts exactly its
substrings; each character edge is spelled out in UTF-8 with shared intermediate states,
so values start and end on character boundaries. Past the budget -- texts over
``max_states // 2`` characters, and shorter ones whose table outgrows ``max_states`` --
``fsm`` uses :class:`SubstringAutomaton` instead: the same language,
lazily, over a suffix array of the text's UTF-8 bytes (only the suffixes that start a
character). The value read so far is the common prefix of one contiguous interval of that
array, so a state is the key ``(lo, hi, depth)``; expanding it splits the interval by the
byte at ``depth`` (a gather, or a binary search per byte value for a wide interval).
Building costs one prefix-doubling sort: about 0.5 s for 1 MB of prose, 0.8 s for 1 MB of
one repeated paragraph (texts are bounded by ``limits.string_size``). Every state it makes
is live: it only follows bytes that occur.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lmq import regular as rg
from lmq.runtime.automata.fsm_lazy import DEAD, LazyAutomaton
from lmq.runtime.automata.nfa import CompileBudget, too_large

Automaton = tuple[np.ndarray, np.ndarray, int]
_EMPTY_LIST = (-1, -1)  # the configuration of the empty value (min=0): accepting, no moves


class _LabelTrie:
    def __init__(self, labels: Iterable[bytes]) -> None:
        self.children: list[dict[int, int]] = [{}]
        self.ends = [-1]  # the label that ends at each node, or -1
        self.below = [0]  # bitmask of the labels in each node's subtree
        for i, data in enumerate(labels):
            node = 0
            self.below[0] |= 1 << i
            for byte in data:
                child = self.children[node].get(byte)
                if child is None:
                    child = len(self.children)
                    self.children[node][byte] = child
                    self.children.append({})
                    self.ends.append(-1)
                    self.below.append(0)
                node = child
                self.below[node] |= 1 << i
            self.ends[node] = i


class LabelsAutomaton(LazyAutomaton):
    """``LABELS`` as a lazy subset construction over configurations ``(used, phase)``."""

    def __init__(self, node: rg.Labels, budget: CompileBudget) -> None:
        encoded = [label.encode() for label in node.labels]
        size = sum(map(len, encoded))
        if len(encoded) > budget.max_labels or size > budget.max_label_bytes:
            raise too_large(f"LABELS over {len(encoded):,} labels of {size:,} bytes (at most "
                            f"{budget.max_labels:,} labels of {budget.max_label_bytes:,} "
                            "bytes)", hint="use fewer labels, or a LABELS per group")
        self.trie = _LabelTrie(encoded)
        self.sep, self.unique, self.low, self.high = (node.sep.encode(), node.unique,
                                                      node.min, node.max)
        self.nodes, self.everything = len(self.trie.children), (1 << len(node.labels)) - 1
        self.cap = self.high if self.high is not None else self.low  # saturating count
        super().__init__(frozenset({(0, 0)} | ({_EMPTY_LIST} if self.low == 0 else set())),
                         budget)

    def _completed(self, used: int, label: int) -> tuple[int, int] | None:
        """``used`` and the label count after ``label`` ends, None if it may not end."""
        if self.unique:
            if used >> label & 1:
                return None
            used |= 1 << label
            return used, used.bit_count()
        return min(used + 1, self.cap), used + 1

    def _moves(self, used: int, phase: int) -> list[tuple[int, tuple[int, int]]]:
        sep, nodes, trie = self.sep, self.nodes, self.trie
        if phase >= nodes:  # inside the separator: ``phase - nodes`` bytes of it read
            k = phase - nodes + 1
            return [(sep[k - 1], (used, nodes + k if k < len(sep) else 0))]
        out = [(byte, (used, child)) for byte, child in trie.children[phase].items()
               if not self.unique or trie.below[child] & ~used]
        label = trie.ends[phase]
        after = self._completed(used, label) if label >= 0 else None
        if after is not None and (self.high is None or after[1] < self.high) and not (
                self.unique and after[0] == self.everything):
            out.append((sep[0], (after[0], nodes + 1 if len(sep) > 1 else 0)))
        return out

    def _expand(self, key):
        targets: dict[int, set[tuple[int, int]]] = {}
        for used, phase in key:
            if phase >= 0:
                for byte, config in self._moves(used, phase):
                    targets.setdefault(byte, set()).add(config)
        codes = np.zeros(256, dtype=np.int32)
        codes[list(targets)] = np.arange(1, len(targets) + 1)
        return [DEAD, *map(frozenset, targets.values())], codes

    def _accepts(self, key) -> bool:
        return key != DEAD and any(self._config_accepts(*config) for config in key)

    def _config_accepts(self, used: int, phase: int) -> bool:
        if (used, phase) == _EMPTY_LIST:
            return True
        ends = self.trie.ends
        after = self._completed(used, ends[phase]) \
            if 0 <= phase < self.nodes and ends[phase] >= 0 else None
        return after is not None and after[1] >= self.low and (
            self.high is None or after[1] <= self.high)


def substring_automaton(text: str, budget: CompileBudget) -> Automaton:
    # Suffix automaton over characters (state 0 is the empty string's).
    link, length, last = [-1], [0], 0
    edges: list[dict[str, int]] = [{}]
    for char in text:
        cur = len(edges)
        edges.append({})
        length.append(length[last] + 1)
        link.append(0)
        p = last
        while p != -1 and char not in edges[p]:
            edges[p][char] = cur
            p = link[p]
        if p != -1:
            q = edges[p][char]
            if length[p] + 1 == length[q]:
                link[cur] = q
            else:
                clone = len(edges)
                edges.append(dict(edges[q]))
                length.append(length[p] + 1)
                link.append(link[q])
                while p != -1 and edges[p].get(char) == q:
                    edges[p][char] = clone
                    p = link[p]
                link[q] = link[cur] = clone
        last = cur
    # Byte DFA: suffix-automaton state s is DFA state s + 1; the inner bytes of multi-byte
    # characters get states shared per (state, byte prefix).
    rows: list[dict[int, int]] = [{} for _ in range(len(edges) + 1)]
    for state, out in enumerate(edges):
        for char, target in out.items():
            data, here = char.encode(), state + 1
            for byte in data[:-1]:
                nxt = rows[here].get(byte)
                if nxt is None:
                    nxt = rows[here][byte] = len(rows)
                    rows.append({})
                here = nxt
            rows[here][data[-1]] = target + 1
        if len(rows) > budget.max_states:
            raise too_large(f"SPAN over {len(text):,} characters needs more than "
                            f"{budget.max_states} DFA states", hint="pass a shorter text")
    accepting = np.zeros(len(rows), dtype=bool)
    accepting[2:len(edges) + 1] = True  # every non-empty substring
    return _table(rows), accepting, 1


def _table(rows: list[dict[int, int]]) -> np.ndarray:
    table = np.zeros((len(rows), 256), dtype=np.int32)
    for i, row in enumerate(rows):
        if row:
            table[i, list(row)] = list(row.values())
    return table


class SubstringAutomaton(LazyAutomaton):
    """``SPAN`` past the state budget: the non-empty substrings of ``text`` that start and
    end on character boundaries, as a lazy automaton over a suffix array (see the module
    docstring).

    ``sa`` lists the byte offsets where a character starts, in the lexicographic order of
    the suffixes there (a suffix before its extensions). A key ``(lo, hi, depth)`` is the
    value ``s`` of ``depth`` bytes read so far: ``sa[lo:hi]`` are exactly the occurrences
    of ``s`` at character starts. The initial key is ``(0, len(sa), 0)``; every key made
    is live.
    """

    _WIDE = 2048  # intervals wider than this are split by binary search, not a gather

    def __init__(self, text: str, budget: CompileBudget) -> None:
        data = np.frombuffer(text.encode(), dtype=np.uint8)
        n = len(data)
        boundary = np.ones(n + 1, dtype=bool)  # offset n (the end) counts as a boundary
        boundary[:n] = (data & 0xC0) != 0x80
        order = _suffix_array(data)
        self.sa = order[boundary[order]].astype(np.int32 if n < 1 << 31 else np.int64)
        self.boundary = boundary
        self.bytes = np.full(n + 1, -1, dtype=np.int16)  # -1: the suffix has ended
        self.bytes[:n] = data
        lengths = np.diff(np.flatnonzero(boundary))  # each character's UTF-8 length
        self.first = int(lengths.min()) if n else 0  # the initial state's distance
        self.max_distance = int(lengths.max()) if n else 0
        super().__init__((0, len(self.sa), 0) if n else DEAD, budget)

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.sa.nbytes + self.bytes.nbytes + self.boundary.nbytes

    def _expand(self, key):
        lo, hi, depth = key
        codes = np.zeros(256, dtype=np.int32)
        if hi - lo <= self._WIDE:
            following = self.bytes[self.sa[lo:hi] + depth]  # non-decreasing
            cuts = np.flatnonzero(following[1:] != following[:-1]) + 1
            starts = np.concatenate(([0], cuts)) + lo
            ends = np.concatenate((cuts, [hi - lo])) + lo
            values = following[starts - lo]
            keep = values >= 0
            values, starts, ends = values[keep], starts[keep], ends[keep]
        else:
            bounds = self._lower_bounds(lo, hi, depth)
            values = np.flatnonzero(bounds[1:] > bounds[:-1])
            starts, ends = bounds[values], bounds[values + 1]
        codes[values] = np.arange(1, len(values) + 1, dtype=np.int32)
        return [DEAD, *zip(starts.tolist(), ends.tolist(), [depth + 1] * len(values))], codes

    def _lower_bounds(self, lo: int, hi: int, depth: int) -> np.ndarray:
        """For each byte value v (0..255), the first index of ``sa[lo:hi]`` whose byte at
        ``depth`` is at least v, then ``hi``: 257 searches at once."""
        wanted = np.arange(256, dtype=np.int16)
        low = np.full(256, lo, dtype=np.int64)
        high = np.full(256, hi, dtype=np.int64)
        sa, data = self.sa, self.bytes
        while True:
            open_ = low < high
            if not open_.any():
                break
            mid = (low + high) >> 1
            below = data[sa[np.minimum(mid, hi - 1)] + depth] < wanted
            low = np.where(open_ & below, mid + 1, low)
            high = np.where(open_ & ~below, mid, high)
        return np.append(low, hi)

    def _accepts(self, key) -> bool:
        return key != DEAD and key[2] > 0 and bool(self.boundary[self.sa[key[0]] + key[2]])

    def _distance(self, i: int) -> int:
        key = self.keys[i]
        if key == DEAD:
            return -1
        lo, _, depth = key
        if depth == 0:
            return self.first
        at = end = int(self.sa[lo]) + depth  # all occurrences agree: the rest of one character
        while not self.boundary[end]:
            end += 1
        return end - at


def _suffix_array(data: np.ndarray) -> np.ndarray:
    """The start offsets of ``data``'s suffixes in lexicographic order (a suffix before its
    extensions), by prefix doubling: round k sorts by the first 2^k bytes, as pairs of
    ranks by the first 2^(k-1). Rounds stop once all ranks differ (after about log2 of the
    longest repeated substring, at most log2 of the length)."""
    n = len(data)
    if not n:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(data, kind="stable")
    rank = data.astype(np.int64)
    base = max(n, 256) + 1  # above every rank + 1
    step = 1
    while True:
        second = np.zeros(n, dtype=np.int64)  # 0: the suffix ends within the first half
        if step < n:
            second[:n - step] = rank[step:] + 1
        keys = (rank * base + second)[order]  # already sorted by the first half
        by_key = np.argsort(keys, kind="stable")
        order, keys = order[by_key], keys[by_key]
        fresh = np.empty(n, dtype=bool)
        fresh[0] = True
        np.not_equal(keys[1:], keys[:-1], out=fresh[1:])
        dense = np.cumsum(fresh) - 1
        rank[order] = dense
        if dense[-1] == n - 1:
            return order
        step *= 2
