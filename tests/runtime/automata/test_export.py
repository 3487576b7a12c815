"""Byte automata exported to serving engines' languages accept exactly the same values.

Random regular expressions are compiled to byte DFAs; the exported regular expression
(read by Python's ``re``) and the exported GBNF grammar (read by a small interpreter of
the right-linear form :func:`to_ebnf` writes) must accept a string exactly when the DFA
accepts its UTF-8 bytes.
"""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from regex_strategies import REGEXES, TEXT, dfa_of

from lmq.runtime.automata import fsm
from lmq.runtime.automata.export import char_transitions, to_ebnf, to_regex
from lmq.runtime.automata.fsm import dfa_accepts

pytestmark = pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])




def _samples(data, pattern: str, dfa) -> list[str]:
    samples = [data.draw(TEXT) for _ in range(6)]
    if not fsm.is_empty(dfa):
        compiled = re.compile(pattern, re.ASCII)
        samples += [data.draw(st.from_regex(compiled, fullmatch=True)) for _ in range(4)]
    return samples


# -- a reader of the grammars to_ebnf writes ------------------------------------------

_CLASS_ITEM = re.compile(r"\\x([0-9A-F]{2})|\\u([0-9A-F]{4})|\\U([0-9A-F]{8})|(.)", re.S)


def _parse_class(body: str) -> tuple[bool, list[tuple[int, int]]]:
    negated = body.startswith("^")
    items = [(m.group(0), ord(m.group(4)) if m.group(4) is not None else
              int(next(g for g in m.groups()[:3] if g), 16))
             for m in _CLASS_ITEM.finditer(body[negated:])]
    ranges, i = [], 0
    while i < len(items):
        if i + 2 < len(items) and items[i + 1][0] == "-":  # a "-" between items: a range
            ranges.append((items[i][1], items[i + 2][1]))
            i += 3
        else:
            ranges.append((items[i][1], items[i][1]))
            i += 1
    return negated, ranges


class RightLinear:
    """rule ::= alternative ( " | " alternative )*, each ``[class] sN``, ``""`` or a lone
    ``[class]`` (a character that ends the value)."""

    ALTERNATIVE = re.compile(r'""|\[((?:\\.|[^\]\\])*)\](?: (s\d+))?')

    def __init__(self, grammar: str):
        lines = grammar.strip().split("\n")
        assert lines[0].startswith("root ::= s")
        self.start = lines[0].split("::= ")[1]
        self.rules: dict[str, list] = {}
        for line in lines[1:]:
            name, body = line.split(" ::= ")
            alternatives = []
            for m in self.ALTERNATIVE.finditer(body):
                if m.group(0) == '""':
                    alternatives.append(("end", None, None))
                else:
                    negated, ranges = _parse_class(m.group(1))
                    alternatives.append(("char", (negated, ranges), m.group(2)))
            self.rules[name] = alternatives

    def accepts(self, text: str) -> bool:
        state: str | None = self.start
        for i, char in enumerate(text):
            targets = [(target, kind) for kind, cls, target in self.rules[state]
                       if kind == "char" and _in_class(cls, ord(char))]
            if not targets:
                return False
            assert len(targets) == 1, "the grammar is deterministic"
            state = targets[0][0]
            if state is None:  # a leaving character: the value ended before it
                return i == len(text) - 1
        return any(kind == "end" for kind, _, _ in self.rules[state])


def _in_class(cls, code: int) -> bool:
    negated, ranges = cls
    return any(a <= code <= b for a, b in ranges) != negated


# -- properties -----------------------------------------------------------------------

@SETTINGS
@given(st.data(), REGEXES)
def test_exported_regex_accepts_the_same_strings(data, pattern):
    dfa = dfa_of(pattern)
    if fsm.is_empty(dfa):
        return
    exported = to_regex(dfa)
    assert exported is not None
    compiled = re.compile(exported, re.S)
    for text in _samples(data, pattern, dfa):
        assert (compiled.fullmatch(text) is not None) == dfa_accepts(dfa, text.encode()), \
            (pattern, exported, text)


@SETTINGS
@given(st.data(), REGEXES)
def test_exported_grammar_accepts_the_same_strings(data, pattern):
    dfa = dfa_of(pattern)
    if fsm.is_empty(dfa):
        with pytest.raises(ValueError):
            to_ebnf(dfa)
        return
    grammar = RightLinear(to_ebnf(dfa))
    for text in _samples(data, pattern, dfa):
        assert grammar.accepts(text) == dfa_accepts(dfa, text.encode()), (pattern, text)


def _dead_after(dfa, data: bytes) -> bool:
    state = dfa.initial
    for byte in data:
        state = int(dfa.transitions[state, byte])
        if state == fsm.DEAD:
            return True
    return False


def _accepts_leaving(dfa, text: str) -> bool:
    """A value, or a value and one character that cannot continue it."""
    return dfa_accepts(dfa, text.encode()) or (
        text != "" and dfa_accepts(dfa, text[:-1].encode()) and _dead_after(dfa, text.encode()))


@SETTINGS
@given(st.data(), REGEXES)
def test_leave_adds_one_ending_character_after_a_value(data, pattern):
    dfa = dfa_of(pattern)
    if fsm.is_empty(dfa):
        return
    grammar = RightLinear(to_ebnf(dfa, leave=True))
    regex = re.compile(to_regex(dfa, leave=True), re.S)
    samples = _samples(data, pattern, dfa)
    samples += [text + data.draw(st.sampled_from("\x00~é中😀a1 ")) for text in samples]
    for text in samples:
        expected = _accepts_leaving(dfa, text)
        assert grammar.accepts(text) == expected, (pattern, text)
        assert (regex.fullmatch(text) is not None) == expected, (pattern, text)


@SETTINGS
@given(REGEXES)
def test_char_transitions_are_disjoint_and_ascending(pattern):
    for ranges in char_transitions(dfa_of(pattern)):
        for (a, b, _), (c, _, _) in zip(ranges, ranges[1:]):
            assert a <= b < c
        assert all(not 0xD800 <= a <= 0xDFFF for a, _, _ in ranges)


def test_four_byte_ranges_cost_few_rules():
    dfa = dfa_of("[\U00010000-\U0010FFFF]+")
    grammar = to_ebnf(dfa)
    assert len(grammar) < 400, grammar
    assert RightLinear(grammar).accepts("😀\U0010FFFF")
    assert not RightLinear(grammar).accepts("a")


def test_regex_size_cap_returns_none():
    # (a|b)*a(a|b){12}: the minimal DFA has 2**13 states; its regex is far past the cap
    dfa = dfa_of("[ab]*a[ab]{12}")
    assert to_regex(dfa, max_size=2_000) is None
    assert RightLinear(to_ebnf(dfa)).accepts("a" * 13)
