"""SPAN(X, text): the automaton accepts exactly the non-empty substrings of the text (at
character boundaries), guided values are substrings, every substring is reachable."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmq import regular as rg
from lmq.runtime.automata.fsm import CompileBudget, compile_regular, dfa_accepts, is_empty
from lmq.runtime.automata.guide import DfaGuide

ALPHABET = st.sampled_from(list("ab ab.,\néü中文😀") + ["\u00a0"])
TEXTS = st.text(ALPHABET, max_size=40)


@settings(max_examples=200, deadline=None)
@given(TEXTS, st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=6),
       st.lists(st.text(ALPHABET, max_size=4), max_size=4))
def test_accepts_exactly_the_substrings(text, cuts, others):
    dfa = compile_regular(rg.Substring(text))
    candidates = [text[i:j] for i, j in cuts] + others + [text]
    for candidate in candidates:
        assert dfa_accepts(dfa, candidate.encode()) == (candidate != "" and candidate in text)
    assert is_empty(dfa) == (text == "")
    data = text.encode()
    for i in range(len(data)):  # byte slices that cut a character are never accepted
        for j in range(i + 1, min(len(data), i + 6) + 1):
            try:
                piece = data[i:j].decode()
            except UnicodeDecodeError:
                assert not dfa_accepts(dfa, data[i:j])
            else:
                assert dfa_accepts(dfa, data[i:j]) == (piece in text)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(TEXTS.filter(bool), st.randoms(use_true_random=False))
def test_guided_values_are_substrings(guide_checks, text, rnd):
    guide = DfaGuide(compile_regular(rg.Substring(text)), guide_checks.index)
    for value in guide_checks.finished_values(guide, rnd, walks=4, steps=6):
        assert value and value in text


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(TEXTS.filter(bool), st.integers(0, 40), st.integers(1, 12))
def test_every_substring_is_reachable(guide_checks, text, start, width):
    start = min(start, len(text) - 1)
    guide = DfaGuide(compile_regular(rg.Substring(text)), guide_checks.index)
    guide_checks.assert_reachable(guide, text[start:start + width])


def test_long_text_size_and_budget():
    text = ("The quick brown fox jumps over the lazy dog. " * 12)[:500]
    dfa = compile_regular(rg.Substring(text))
    assert dfa.num_states <= 2 * len(text) + 1
    assert dfa_accepts(dfa, b"lazy dog. The quick") and not dfa_accepts(dfa, b"dog  The")
    assert compile_regular(rg.Substring(text), CompileBudget(max_states=300)).lazy
