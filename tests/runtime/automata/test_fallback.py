"""The lazy fallback of constraint compilation (lmq.runtime.automata.fsm_lazy): past the compile
budget a constraint is served by a lazy automaton whose masks, next-state distances and
budget-aware masks are exactly those of the complete DFA; its memo stays bounded; only a
truly impossible constraint is an error, and it names the constraint."""

import random
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmq
from lmq import regular as rg
from lmq.constraints import HoleSpec
from lmq.errors import LmqCompileError, LmqLimitError
from lmq.runtime.automata.fsm import CompileBudget, compile_regular, dfa_accepts, is_empty
from lmq.runtime.automata.guide import DfaGuide
from lmq.runtime.automata.nfa import AutomatonLimitError
from lmq.runtime.decoding.holes import HoleRun

pytestmark = pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")

LAZY = CompileBudget(max_states=1, memo_states=64)  # everything lazy, memo cleared often
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def index(smollm2_index):
    return smollm2_index


def _atoms():
    return st.sampled_from(["a", "b", "é", "中", " ", "1", r"\.", "[ab]", "[^a]", r"\d", r"\w",
                            "[^\\n]", ".", "[中😀]", "x"])


def _regex(children):
    return (st.tuples(children, children).map("".join)
            | st.tuples(children, children).map(lambda t: f"({t[0]}|{t[1]})")
            | st.tuples(children, st.sampled_from(["*", "+", "?", "{2}", "{0,3}"]))
            .map(lambda t: f"(?:{t[0]}){t[1]}"))


REGEXES = st.recursive(_atoms(), _regex, max_leaves=5)
LEAVES = (REGEXES.map(rg.Regex) | st.sampled_from([
    rg.Contains("ab"), rg.Prefix(" "), rg.Suffix("1"), rg.CharLength(0, 6), rg.CharLength(2, None),
    rg.OneOf(("ab", "a b", "中文")), rg.Labels(("a", "ab", "b"), ",", 1, 2, True)]))
TREES = LEAVES | st.tuples(LEAVES, LEAVES).map(rg.And) | st.tuples(LEAVES, LEAVES).map(rg.Or) \
    | LEAVES.map(rg.Not) | st.tuples(LEAVES, LEAVES, LEAVES).map(
        lambda t: rg.And((t[0], rg.Not(t[1]), rg.Or((t[2], rg.CharLength(0, 3))))))


def hole(guide, index, budget: int) -> HoleRun:
    return HoleRun(HoleSpec("X"), guide, index.token_bytes, np.array([2]), budget)


def assert_same(eager: DfaGuide, lazy: DfaGuide, e_state, l_state) -> None:
    allowed = eager.allowed(e_state)
    assert np.array_equal(allowed, lazy.allowed(l_state))
    assert np.array_equal(eager.mask(e_state), lazy.mask(l_state))
    assert np.array_equal(eager.next_distances(e_state), lazy.next_distances(l_state))
    assert eager.is_accepting(e_state) == lazy.is_accepting(l_state)
    assert np.array_equal(eager.live_bytes(e_state), lazy.live_bytes(l_state))
    for data in (b"a", b"1", " 中".encode(), "é".encode()[:1]):  # incl. a partial character
        assert (eager.walk_bytes(e_state, data) is None) == (lazy.walk_bytes(l_state, data) is None)


def lockstep(tree, index, rnd: random.Random, steps: int = 6, budget: int = 0) -> int:
    """Random walk through the eager and the lazy guide of ``tree`` together, comparing
    masks and distances at every state, and the budget-aware masks and endings of a hole
    with a token budget (random and small by default); returns how many states were
    compared."""
    dfa = compile_regular(tree)
    automaton = compile_regular(tree, LAZY)
    if is_empty(dfa):
        assert is_empty(automaton)
        return 0
    assert automaton.lazy
    eager, lazy = DfaGuide(dfa, index), DfaGuide(automaton, index, memo_bytes=1 << 20)
    budget = budget or rnd.randint(1, 8)
    runs = [hole(eager, index, budget), hole(lazy, index, budget)]
    e_state, l_state, compared = eager.initial_state, lazy.initial_state, 0
    while compared < steps:
        assert_same(eager, lazy, e_state, l_state)
        compared += 1
        assert np.array_equal(runs[0].mask(index.vocab_size), runs[1].mask(index.vocab_size))
        assert runs[0].forced_bytes() == runs[1].forced_bytes()
        allowed = eager.allowed(e_state)
        options = np.flatnonzero(runs[0].mask(index.vocab_size)[allowed])
        if not len(options) or runs[0].ending is not None:
            break
        token = int(allowed[rnd.choice(options.tolist())])
        e_state, l_state = eager.advance(e_state, token), lazy.advance(l_state, token)
        for run in runs:
            run.push(token, 0.0)
        assert runs[0].ending == runs[1].ending
    return compared


@SETTINGS
@given(TREES, st.randoms(use_true_random=False))
def test_lazy_masks_equal_the_complete_dfa(index, tree, rnd):
    lockstep(tree, index, rnd)


@pytest.mark.parametrize("tree", [
    rg.Regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    rg.Regex(r"[a-z0-9.]+@[a-z0-9]+\.(com|org)"),
    rg.Regex(r"[^\n]{0,24}"),
    rg.And((rg.Regex(r"[A-Za-z ]+"), rg.CharLength(3, 12), rg.Not(rg.Contains("the")))),
    rg.Or((rg.Regex(r"-?[0-9]+"), rg.Literal("none"))),
    rg.Not(rg.Prefix(" ")),
    rg.json_node({"type": "object", "properties": {"a": {"type": "integer"}}}),
])
def test_lazy_masks_on_known_constraints(index, tree):
    assert lockstep(tree, index, random.Random(repr(tree)), steps=10, budget=11) >= 2


def test_exponential_regex_is_lazy_and_exact(index):
    pattern = r"(a|b)*a(a|b){20}"
    automaton = compile_regular(rg.Regex(pattern))  # 2^21 DFA states: an error before
    assert automaton.lazy and automaton.num_states <= CompileBudget().memo_states + 256
    assert dfa_accepts(automaton, b"b" + b"a" * 21) and not dfa_accepts(automaton, b"b" * 30)
    guide = DfaGuide(automaton, index)
    state, text, rnd = guide.initial_state, b"", random.Random(1)
    for _ in range(12):
        allowed = guide.allowed(state)
        assert all(set(index.token_bytes[t]) <= set(b"ab") for t in allowed.tolist())
        token = int(rnd.choice(allowed.tolist()))
        state, text = guide.advance(state, token), text + index.token_bytes[token]
        # the distance is the bytes missing after the last 'a' that could be the one
        expected = min((20 - (len(text) - 1 - i) for i in range(len(text))
                        if text[i:i + 1] == b"a" and len(text) - 1 - i <= 20), default=21)
        assert guide.dfa.distance(state) == max(expected, 0)


def test_product_past_the_budget_is_lazy_and_exact(index):
    tree = rg.And((rg.Regex(r"[^\n]{0,200}"), rg.Not(rg.Contains("the end")),
                   rg.CharLength(0, 150)))
    eager = compile_regular(tree)
    small = CompileBudget(max_states=500, memo_states=2000)
    lazy = compile_regular(tree, small)
    assert not eager.lazy and lazy.lazy
    assert lockstep(tree, index, random.Random(3), steps=8, budget=12) >= 2
    guide = DfaGuide(lazy, index)
    state = guide.walk_bytes(guide.initial_state, b"x" * 148)
    assert guide.is_accepting(state) and guide.dfa.distance(state) == 0
    assert guide.walk_bytes(state, b"the end") is None
    assert all(len(index.token_bytes[t].decode("utf-8", "replace")) <= 2
               for t in guide.allowed(state).tolist())


def test_memo_stays_under_its_cap(index):
    budget = CompileBudget(max_states=1, memo_states=200)
    automaton = compile_regular(rg.Regex(r"(a|b|c| )*a(a|b|c| ){12}"), budget)
    guide = DfaGuide(automaton, index, memo_bytes=1 << 16, mask_bytes=1 << 16)
    state, rnd, largest = guide.initial_state, random.Random(0), 0
    for _ in range(60):
        allowed = guide.allowed(state)
        largest = max(largest, automaton.num_states)
        state = guide.advance(state, int(rnd.choice(allowed.tolist())))
    assert automaton.stats["cleared"] > 0
    assert largest <= 200 + 256 + 4096  # the cap, one expansion and one walk's new states


def test_searches_prove_emptiness_or_give_up():
    words = rg.Regex(r"(a|b)*a(a|b){20}")
    assert is_empty(compile_regular(rg.And((rg.Regex(rg.INT_PATTERN), rg.Literal("a"))), LAZY))
    small = CompileBudget(max_states=1, max_search_states=300)
    with pytest.raises(AutomatonLimitError, match=r"no value found within 300 states") as error:
        compile_regular(rg.And((words, rg.Not(words))), small)
    assert isinstance(error.value, LmqLimitError) and isinstance(error.value, LmqCompileError)
    assert "(a|b)*a(a|b){20}" in error.value.message  # names the constraint


def test_truly_impossible_constraints_are_limit_errors():
    with pytest.raises(AutomatonLimitError, match="too large: more than 9999 NFA states") as error:
        compile_regular(rg.Regex("(?:(?:x{0,100}){0,100}){0,100}"),
                        CompileBudget(max_nfa_states=9999))
    assert "constraint Regex(pattern='(?:(?:x{0,100})" in error.value.message


def test_previously_failing_regex_decodes_on_tiny_random():
    pattern = r"(a|b)*a(a|b){20}"
    result = lmq.query(f'"Say:[X]" where REGEX(X, r"{pattern}") and len(TOKENS(X)) < 30\n',
                       model="tiny-random")()
    assert re.fullmatch(pattern, result["X"]), result["X"]
