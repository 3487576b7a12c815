"""Shortest completions of grammar prefixes: what a grammar hole needs to stay within its
token budget (:mod:`lmq.runtime.automata.grammar`).

llguidance computes a grammar's token masks but does not say how far a prefix is from a
complete sentence. :class:`EarleyCompletions` does: an Earley recognizer over bytes whose
terminals are byte DFAs (:mod:`lmq.runtime.automata.fsm`), built from the rules Lark makes of
the grammar (EBNF expanded; ``%ignore`` text allowed before every terminal but the first,
which is where llguidance allows it: Lark also allows it first and last). A chart is the
list of its Earley sets, one per byte read; :meth:`~EarleyCompletions.witness` gives the
shortest byte string that completes a chart's prefix, from each set's cost of completing
what its items wait for (a Dijkstra over the nonterminals predicted there) and each
symbol's shortest yield.

The recognizer reads the scannerless language of the grammar, which may be larger than
llguidance's (llguidance lexes longest-match first), and its regex dialect is lmq's
(``re.ASCII``); so a witness is only a proposal, which the grammar guide checks with
llguidance before relying on it.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from typing import Any

from lmq import regular as rg
from lmq.errors import LmqCompileError
from lmq.runtime.automata.fsm import DEAD, compile_regular

_INFINITE = 1 << 40


@dataclass
class _Terminal:
    """A terminal's byte DFA as Python lists (a scan reads one entry per byte)."""

    table: list[list[int]]
    accepting: list[bool]
    completion: list[int]
    initial: int

    @classmethod
    def of(cls, tree: rg.Regular) -> _Terminal | None:
        if isinstance(tree, rg.Literal):
            return cls.literal(tree.text.encode())
        try:
            dfa = compile_regular(tree)
        except LmqCompileError:  # outside lmq's regex dialect: never scanned
            return None
        if dfa.lazy or dfa.initial == DEAD:
            return None
        return cls(dfa.transitions.tolist(), dfa.accepting.tolist(), dfa.completion.tolist(),
                   dfa.initial)

    @classmethod
    def literal(cls, data: bytes) -> _Terminal:
        """The chain of states of one byte string (state ``i + 1``: ``i`` bytes read)."""
        table = [[DEAD] * 256 for _ in range(len(data) + 2)]
        for i, byte in enumerate(data):
            table[i + 1][byte] = i + 2
        accepting = [False] * (len(data) + 1) + [True]
        completion = [-1] + [len(data) - i for i in range(len(data) + 1)]
        return cls(table, accepting, completion, 1)

    def shortest(self, state: int) -> bytes:
        """The shortest bytes from ``state`` to acceptance (printable ones preferred)."""
        out = bytearray()
        while not self.accepting[state]:
            row, goal = self.table[state], self.completion[state] - 1
            byte = next(b for b in (*range(32, 127), *range(256))
                        if row[b] != DEAD and self.completion[row[b]] == goal)
            out.append(byte)
            state = row[byte]
        return bytes(out)


@dataclass
class _Set:
    """One Earley set: ``items`` are ``(rule, dot, origin)``, ``scans`` the items reading a
    terminal, with its DFA state (negative: still reading ignored text before it, in state
    ``-1 - state`` of the ignore automaton), ``waiting`` the items per nonterminal after their dot;
    ``costs`` (filled on first use) the cheapest completion of what waits for each
    nonterminal predicted here, with the item it goes through."""

    items: set[tuple[int, int, int]] = field(default_factory=set)
    scans: set[tuple[int, int, int, int]] = field(default_factory=set)
    waiting: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    costs: dict[int, tuple[int, tuple[int, int, int] | None]] | None = None


Chart = list  # of _Set, one per byte read plus the first


class EarleyCompletions:
    """Shortest completions for the generation language of a grammar hole: ``prefix``
    (healed prompt text), a sentence of the Lark ``parser``'s grammar, then optionally one
    of the ``stops`` phrases and any bytes (``STOPS_BEFORE``), as in
    :func:`lmq.grammars.lark_text`."""

    def __init__(self, parser: Any, prefix: bytes = b"", stops: tuple[bytes, ...] = ()) -> None:
        names: dict[str, int] = {}  # nonterminal name -> id (ids >= 0; terminals are < 0)
        self.terminals: list[_Terminal | None] = []
        terminal_ids: dict[str, int] = {}

        def nonterminal(name: str) -> int:
            return names.setdefault(name, len(names))

        def terminal(name: str, tree: rg.Regular) -> int:
            if name not in terminal_ids:
                terminal_ids[name] = -1 - len(self.terminals)
                self.terminals.append(_Terminal.of(tree))
            return terminal_ids[name]

        patterns = {t.name: t.pattern for t in parser.terminals}
        # ignored text: one automaton of any run of the %ignore terminals, read where a
        # terminal may start (scans in the state "ignoring", below)
        ignored = [_pattern(patterns[name]) for name in parser.ignore_tokens]
        self.ignore = _Terminal.of(rg.Regex("(?:" + "|".join(
            f"(?:{_regex(tree)})" for tree in ignored) + ")*")) if ignored else None
        rules: list[tuple[int, tuple[int, ...]]] = []
        for rule in parser.rules:
            rhs = tuple(terminal(s.name, _pattern(patterns[s.name])) if s.is_term
                        else nonterminal(s.name) for s in rule.expansion)
            rules.append((nonterminal(rule.origin.name), rhs))
        self.root = nonterminal("<root>")
        body = [nonterminal("start")]
        if prefix:
            body.insert(0, terminal("<prefix>", rg.Literal(prefix.decode("utf-8", "replace"))))
        rules.append((self.root, tuple(body)))
        if stops:
            tail = rg.Concat((rg.OneOf(tuple(s.decode("utf-8", "replace") for s in stops)),
                              rg.ANY))
            rules.append((self.root, (*body, terminal("<stop>", tail))))
        self.lhs = [lhs for lhs, _ in rules]
        self.rhs = [rhs for _, rhs in rules]
        self.by_lhs: dict[int, list[int]] = {}
        for i, lhs in enumerate(self.lhs):
            self.by_lhs.setdefault(lhs, []).append(i)
        self._shortest_yields(len(names))

    # -- static costs -------------------------------------------------------------------

    def _shortest_yields(self, count: int) -> None:
        """Each symbol's fewest bytes (``yields``) and one string of that length."""
        yields = [_INFINITE] * count
        best: list[int | None] = [None] * count

        def cost(symbol: int) -> int:
            if symbol >= 0:
                return yields[symbol]
            terminal = self.terminals[-1 - symbol]
            return _INFINITE if terminal is None else terminal.completion[terminal.initial]

        changed = True
        while changed:  # Knuth's generalisation of shortest paths; costs only fall
            changed = False
            for i, (lhs, rhs) in enumerate(zip(self.lhs, self.rhs)):
                total = min(sum(cost(s) for s in rhs), _INFINITE)
                if total < yields[lhs]:
                    yields[lhs], best[lhs], changed = total, i, True
        self.yields, self._best = yields, best
        self._cost = cost
        # suffix[i][d]: fewest bytes of rule i's symbols from the d-th on
        self.suffix = []
        for rhs in self.rhs:
            tail = [0] * (len(rhs) + 1)
            for d in range(len(rhs) - 1, -1, -1):
                tail[d] = min(tail[d + 1] + cost(rhs[d]), _INFINITE)
            self.suffix.append(tail)
        self._strings: dict[int, bytes] = {}

    def shortest_string(self, symbols: tuple[int, ...]) -> bytes:
        """A shortest byte string of the symbol sequence (every yield finite)."""
        out = bytearray()
        stack = list(reversed(symbols))
        while stack:
            symbol = stack.pop()
            if symbol < 0:
                terminal = self.terminals[-1 - symbol]
                assert terminal is not None
                out += terminal.shortest(terminal.initial)
            else:
                rule = self._best[symbol]
                assert rule is not None
                stack.extend(reversed(self.rhs[rule]))
        return bytes(out)

    # -- recognizing --------------------------------------------------------------------

    def start(self) -> Chart:
        """The chart of the empty prefix."""
        first = _Set()
        self._close(first, [(i, 0, 0) for i in self.by_lhs[self.root]], 0)
        return [first]

    def extend(self, chart: Chart, data: bytes) -> Chart | None:
        """The chart after ``data`` (a new list), None once no completion is left."""
        chart = list(chart)
        ignore = self.ignore
        for byte in data:
            before, after, done = chart[-1], _Set(), []
            for rule, dot, origin, state in before.scans:
                terminal = self.terminals[-1 - self.rhs[rule][dot]]
                assert terminal is not None
                if state < 0:  # ignoring: more ignored text, or the terminal starts here
                    assert ignore is not None
                    skip = ignore.table[-1 - state][byte]
                    if skip != DEAD:
                        after.scans.add((rule, dot, origin, -1 - skip))
                    if not ignore.accepting[-1 - state]:
                        continue
                    state = terminal.initial
                state = terminal.table[state][byte]
                if state == DEAD:
                    continue
                after.scans.add((rule, dot, origin, state))
                if terminal.accepting[state]:
                    done.append((rule, dot + 1, origin))
            if not after.scans and not done:
                return None
            chart.append(after)
            self._close(after, done, len(chart) - 1, chart)
        return chart

    def _close(self, here: _Set, agenda: list[tuple[int, int, int]], k: int,
               chart: Chart | None = None) -> None:
        """Predict and complete from ``agenda`` into ``here``, the ``k``-th set."""
        predicted: set[int] = set()
        while agenda:
            item = agenda.pop()
            if item in here.items:
                continue
            here.items.add(item)
            rule, dot, origin = item
            rhs = self.rhs[rule]
            if dot == len(rhs):
                if origin < k:  # origin == k: a nullable symbol, advanced when predicted
                    assert chart is not None
                    lhs = self.lhs[rule]
                    agenda.extend((r, d + 1, o) for r, d, o in chart[origin].waiting.get(lhs, ()))
                continue
            symbol = rhs[dot]
            if symbol < 0:
                terminal = self.terminals[-1 - symbol]
                if terminal is not None:  # ignored text may come first, except at the start
                    start = -1 - self.ignore.initial if k and self.ignore else terminal.initial
                    here.scans.add((rule, dot, origin, start))
                continue
            here.waiting.setdefault(symbol, []).append(item)
            if symbol not in predicted:
                predicted.add(symbol)
                agenda.extend((r, 0, k) for r in self.by_lhs.get(symbol, ()))
            if self.yields[symbol] == 0:
                agenda.append((rule, dot + 1, origin))

    # -- completing ---------------------------------------------------------------------

    def _costs(self, chart: Chart, k: int) -> dict[int, tuple[int, Any]]:
        """Set ``k``'s cheapest completion per waited-for nonterminal (memoised)."""
        here = chart[k]
        if here.costs is not None:
            return here.costs
        costs: dict[int, tuple[int, Any]] = {}
        heap: list[tuple[int, int]] = []
        inside: dict[int, list[tuple[int, int, tuple[int, int, int]]]] = {}
        for symbol, items in here.waiting.items():
            for item in items:
                rule, dot, origin = item
                step = self.suffix[rule][dot + 1]
                if origin == k:  # waits on a nonterminal predicted in this same set
                    inside.setdefault(self.lhs[rule], []).append((symbol, step, item))
                    continue
                total = step + self._context(chart, origin, self.lhs[rule])
                if total < costs.get(symbol, (_INFINITE,))[0]:
                    costs[symbol] = (total, item)
                    heapq.heappush(heap, (total, symbol))
        if k == 0:
            costs[self.root] = (0, None)
            heapq.heappush(heap, (0, self.root))
        while heap:
            total, symbol = heapq.heappop(heap)
            if total > costs[symbol][0]:
                continue
            for target, step, item in inside.get(symbol, ()):
                if total + step < costs.get(target, (_INFINITE,))[0]:
                    costs[target] = (total + step, item)
                    heapq.heappush(heap, (total + step, target))
        here.costs = costs
        return costs

    def _context(self, chart: Chart, k: int, symbol: int) -> int:
        return self._costs(chart, k).get(symbol, (_INFINITE,))[0]

    def distance(self, chart: Chart) -> int:
        """Fewest bytes that complete the chart's prefix (a large number if none)."""
        return self._best_item(chart)[0]

    def _best_item(self, chart: Chart) -> tuple[int, Any]:
        k = len(chart) - 1
        first = k  # costs set by set, oldest first: each reads only earlier sets' costs
        while first > 0 and chart[first - 1].costs is None:
            first -= 1
        for j in range(first, k + 1):
            self._costs(chart, j)
        here = chart[k]
        best: tuple[int, Any] = (_INFINITE, None)
        for rule, dot, origin in here.items:
            total = self.suffix[rule][dot] + self._context(chart, origin, self.lhs[rule])
            if total < best[0]:
                best = (total, (rule, dot, origin, None))
        for rule, dot, origin, state in here.scans:
            terminal = self.terminals[-1 - self.rhs[rule][dot]]
            assert terminal is not None
            reading = terminal.initial if state < 0 else state  # ignoring: all of it to come
            total = terminal.completion[reading] + self.suffix[rule][dot + 1] + \
                self._context(chart, origin, self.lhs[rule])
            if total < best[0]:
                best = (total, (rule, dot, origin, state))
        return best

    def witness(self, chart: Chart) -> bytes | None:
        """A shortest byte string completing the chart's prefix, None if there is none."""
        total, item = self._best_item(chart)
        if item is None or total >= _INFINITE:
            return None
        rule, dot, origin, state = item
        out = bytearray()
        if state is not None:
            terminal = self.terminals[-1 - self.rhs[rule][dot]]
            assert terminal is not None
            out += terminal.shortest(terminal.initial if state < 0 else state)
            dot += 1
        out += self.shortest_string(self.rhs[rule][dot:])
        symbol = self.lhs[rule]
        while not (symbol == self.root and origin == 0):
            _, waiting = self._costs(chart, origin)[symbol]
            rule, dot, origin = waiting
            out += self.shortest_string(self.rhs[rule][dot + 1:])
            symbol = self.lhs[rule]
        return bytes(out)


def _regex(tree: rg.Regular) -> str:
    if isinstance(tree, rg.Literal):
        return re.escape(tree.text)
    assert isinstance(tree, rg.Regex)
    return tree.pattern


def _pattern(pattern: Any) -> rg.Regular:
    """A Lark terminal pattern as a regular tree."""
    if pattern.type == "str" and not pattern.flags:
        return rg.Literal(pattern.value)
    return rg.Regex(pattern.to_regexp())
