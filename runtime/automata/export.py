"""A byte automaton spelled in a serving engine's constraint languages.

Serving engines (vLLM, SGLang, llama.cpp's server) constrain generation by a regular
expression or a grammar over characters; lmq's automata read UTF-8 bytes. Every complete
:class:`~lmq.runtime.automata.fsm.ByteDfa` of a valid-UTF-8 language is exported exactly:

* :func:`char_transitions` reads it back as a DFA over code points (each state's outgoing
  code point ranges and their targets), walking the UTF-8 encodings range by range with
  a memo per state and number of continuation bytes, so four-byte characters cost a few
  table lookups, not a million;
* :func:`to_ebnf` writes that DFA as a right-linear grammar, one rule per state, in the
  GBNF dialect llama.cpp's server reads and xgrammar (vLLM, SGLang) reads too: linear in
  the DFA's size, whatever the language;
* :func:`to_regex` eliminates states into one regular expression (Python syntax, which the
  engines' regex front ends accept), None when it would pass a size cap -- state
  elimination can grow exponentially; the grammar serves then.

``leave=True`` adds, at every accepting state, one character that cannot continue the
value (the grammar then ends): the engine's own sampling decides there whether the value
ends, so a hole whose model wants to stop writing digits ends, as decoding in lmq does
(LANGUAGE.md section 4, "Termination"); the caller cuts that character from the value.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

from lmq.runtime.automata.fsm import DEAD, ByteDfa

MAX_CODE_POINT = 0x10FFFF
# UTF-8 leads: (first lead, last lead, continuation bytes), and the allowed second-byte
# range per lead where it is narrower than 80-BF
_LEADS = ((0xC2, 0xDF, 1), (0xE0, 0xEF, 2), (0xF0, 0xF4, 3))
_SECOND = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}

Ranges = list[tuple[int, int, int]]  # (first code point, last code point, target state)


def char_transitions(dfa: ByteDfa) -> list[Ranges]:
    """Per state, the code point ranges that lead to live states, ascending and merged
    (states inside a character's encoding get ranges too; :func:`char_states` lists the
    states a character-level reader visits)."""
    table = dfa.transitions

    @lru_cache(maxsize=None)
    def tails(state: int, n: int) -> tuple[tuple[int, int, int], ...]:
        """Offsets ``0 .. 64**n - 1`` of ``n`` continuation bytes read from ``state``."""
        if n == 0:
            return ((0, 0, state),)
        size, out = 64 ** (n - 1), []
        for c in range(64):
            nxt = int(table[state, 0x80 + c])
            if nxt != DEAD:
                out += [(c * size + a, c * size + b, t) for a, b, t in tails(nxt, n - 1)]
        return tuple(_merge(out))

    result = []
    for state in range(dfa.num_states):
        ranges: Ranges = [(b, b, int(table[state, b])) for b in range(0x80)
                          if table[state, b] != DEAD]
        if state != DEAD:
            for first, last, n in _LEADS:
                for lead in range(first, last + 1):
                    after = int(table[state, lead])
                    if after == DEAD:
                        continue
                    start = (lead & (0x7F >> (n + 1))) * 64 ** n  # the lead's payload bits
                    low, high = _SECOND.get(lead, (0x80, 0xBF))
                    size = 64 ** (n - 1)
                    for a, b, t in tails(after, n):
                        a, b = max(a, (low - 0x80) * size), min(b, (high - 0x80 + 1) * size - 1)
                        if a <= b:
                            ranges.append((start + a, start + b, t))
        result.append(_merge(sorted(ranges)) if state != DEAD else [])
    return result


def char_states(dfa: ByteDfa, transitions: list[Ranges]) -> list[int]:
    """The states reachable from the initial one by whole characters, in order."""
    seen, order = {dfa.initial}, [dfa.initial]
    for state in order:
        for _, _, target in transitions[state]:
            if target not in seen:
                seen.add(target)
                order.append(target)
    return order


def _merge(ranges: list[tuple[int, int, int]]) -> Ranges:
    out: Ranges = []
    for a, b, t in ranges:
        if out and out[-1][2] == t and out[-1][1] + 1 == a:
            out[-1] = (out[-1][0], b, t)
        else:
            out.append((a, b, t))
    return out


# ------------------------------------------------------------------ GBNF / EBNF


def _class_char(code: int) -> str:
    if code < 0x80 and chr(code).isalnum():
        return chr(code)
    return f"\\x{code:02X}" if code < 0x100 else (
        f"\\u{code:04X}" if code < 0x10000 else f"\\U{code:08X}")


def _char_class(ranges: list[tuple[int, int]], negated: bool = False) -> str:
    body = "".join(_class_char(a) if a == b else f"{_class_char(a)}-{_class_char(b)}"
                   for a, b in ranges)
    return f"[{'^' if negated else ''}{body}]"


def to_ebnf(dfa: ByteDfa, leave: bool = False) -> str:
    """The language of ``dfa`` as a GBNF grammar (start rule ``root``); see the module
    docstring for ``leave``. ``ValueError`` for an empty language."""
    if dfa.initial == DEAD:
        raise ValueError("the constraint accepts no value")
    transitions = char_transitions(dfa)
    lines = [f"root ::= s{dfa.initial}"]
    for state in char_states(dfa, transitions):
        by_target: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for a, b, t in transitions[state]:
            by_target[t].append((a, b))
        options = [f"{_char_class(spans)} s{t}" for t, spans in by_target.items()]
        if dfa.accepting[state]:
            options.append('""')
            if leave:
                going = [(a, b) for a, b, _ in transitions[state]]
                options.append(_char_class(going, negated=True) if going else
                               _char_class([(0, MAX_CODE_POINT)]))
        lines.append(f"s{state} ::= " + " | ".join(options))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ regular expressions


def _regex_char(code: int) -> str:
    char = chr(code)
    if char.isalnum() and code < 0x80:
        return char
    return f"\\x{code:02x}" if code < 0x100 else (
        f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def _regex_class(ranges: list[tuple[int, int]]) -> str:
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _regex_char(ranges[0][0])
    body = "".join(_regex_char(a) if a == b else f"{_regex_char(a)}-{_regex_char(b)}"
                   for a, b in ranges)
    return f"[{body}]"


def to_regex(dfa: ByteDfa, leave: bool = False, max_size: int = 20_000) -> str | None:
    """The language of ``dfa`` as one regular expression (matched in full), or None when
    state elimination would make it longer than ``max_size`` characters; ``leave`` as for
    :func:`to_ebnf`."""
    if dfa.initial == DEAD:
        raise ValueError("the constraint accepts no value")
    transitions = char_transitions(dfa)
    states = char_states(dfa, transitions)
    start, final = "start", "final"
    # edges[(p, q)] = regex of the labels from p to q
    edges: dict[tuple[object, object], str] = {(start, dfa.initial): ""}
    for state in states:
        by_target: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for a, b, t in transitions[state]:
            by_target[t].append((a, b))
        for t, spans in by_target.items():
            edges[(state, t)] = _regex_class(spans)
        if dfa.accepting[state]:
            going = [(a, b) for a, b, _ in transitions[state]]
            stop = _regex_class(_complement(going)) if leave and going else \
                _regex_class([(0, MAX_CODE_POINT)]) if leave else None
            edges[(state, final)] = f"(?:{stop})?" if stop else ""
    left = set(states)
    while left:  # eliminate the state with the fewest paths through it first
        degree: dict[object, list[int]] = {state: [0, 0] for state in left}
        for p, q in edges:
            if q in degree and p != q:
                degree[q][0] += 1
            if p in degree and p != q:
                degree[p][1] += 1
        state = min(left, key=lambda s: degree[s][0] * degree[s][1])
        left.discard(state)
        loop = edges.pop((state, state), None)
        star = f"(?:{loop})*" if loop is not None and not _atomic(loop) else \
            f"{loop}*" if loop is not None else ""
        ins = [(p, r) for (p, q), r in edges.items() if q == state]
        outs = [(q, r) for (p, q), r in edges.items() if p == state]
        for p, _ in ins:
            del edges[(p, state)]
        for q, _ in outs:
            del edges[(state, q)]
        for p, r_in in ins:
            for q, r_out in outs:
                piece = _concat(r_in, star, r_out)
                edges[(p, q)] = _alternate(edges[(p, q)], piece) if (p, q) in edges else piece
                if len(edges[(p, q)]) > max_size:
                    return None
    return edges.get((start, final))


def _group(regex: str) -> str:
    return regex if len(regex) <= 1 or _atomic(regex) else f"(?:{regex})"


def _atomic(regex: str) -> bool:
    """A single character, escape or class, or one group: safe to follow with a quantifier
    or to concatenate without parentheses."""
    if regex.startswith("\\") and len(regex) in (2, 4, 6, 10):
        return True
    if regex.startswith("[") and regex.endswith("]") and regex.count("]") == 1:
        return True
    return regex.startswith("(?:") and regex.endswith(")") and _balanced(regex[3:-1])


def _balanced(inner: str) -> bool:
    depth, escaped = 0, False
    for char in inner:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _concat(*parts: str) -> str:
    return "".join(part if "|" not in part or _atomic(part) else f"(?:{part})"
                   for part in parts)


def _alternate(a: str, b: str) -> str:
    if a == b:
        return a
    return f"{_group(a) if a else ''}|{_group(b) if b else ''}" if a or b else ""


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The code points outside ``ranges`` (ascending, disjoint), surrogates excluded."""
    out, low = [], 0
    for a, b in ranges:
        if a > low:
            out.append((low, a - 1))
        low = b + 1
    if low <= MAX_CODE_POINT:
        out.append((low, MAX_CODE_POINT))
    return [piece for a, b in out for piece in ((a, min(b, 0xD7FF)), (max(a, 0xE000), b))
            if piece[0] <= piece[1]]
