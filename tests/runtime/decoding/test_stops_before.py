"""STOPS_BEFORE with a regular constraint: the masks admit a value followed by a stop phrase
(and the overshoot of the token that completes it), the finished value still satisfies the
constraint, and holes without STOPS_BEFORE decode as before."""

from __future__ import annotations

import itertools
import random
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmq
from lmq import regular as rg
from lmq.constraints import HoleSpec
from lmq.errors import LmqConstraintError
from lmq.runtime.automata.fsm import compile_regular, dfa_accepts
from lmq.runtime.automata.fsm_concat import ConcatAutomaton, StopAutomaton
from lmq.runtime.automata.guide import DfaGuide
from lmq.runtime.automata.nfa import DEFAULT_BUDGET
from lmq.runtime.decoding.holes import HoleRun
from lmq.runtime.engine import shared_engine

INT = rg.Regex(rg.INT_PATTERN)


@pytest.fixture(scope="module")
def runtime():
    return shared_engine().runtime(shared_engine().backend("tiny-random"))


def hole(runtime, spec: HoleSpec, budget: int = 30) -> HoleRun:
    return HoleRun(spec, runtime.guide(spec.generation()), runtime.text_bytes,
                   runtime.eos_ids, budget)


def token(runtime, text: str) -> int:
    """The vocabulary token spelling exactly ``text``."""
    return runtime.text_bytes.index(text.encode())


def allowed(run: HoleRun, runtime) -> set[bytes]:
    mask = run.mask(runtime.index.vocab_size)
    return {runtime.text_bytes[t] for t in np.flatnonzero(mask)}


def push(run: HoleRun, runtime, *texts: str) -> HoleRun:
    for text in texts:
        t = token(runtime, text)
        assert run.mask(runtime.index.vocab_size)[t], text
        run.push(t, 0.0)
    return run


# ------------------------------------------------------------------ languages


def strings(alphabet: str, n: int):
    for size in range(n + 1):
        yield from ("".join(p) for p in itertools.product(alphabet, repeat=size))


def test_concat_accepts_the_concatenation():
    a, b = rg.Regex("a+|c"), rg.Regex("b*a")
    auto = ConcatAutomaton(compile_regular(a), compile_regular(b), DEFAULT_BUDGET)
    eager = compile_regular(rg.Concat((a, b)))
    for text in strings("abc", 6):
        expected = re.fullmatch("(a+|c)b*a", text) is not None
        assert dfa_accepts(auto, text.encode()) == expected, text
        assert dfa_accepts(eager, text.encode()) == expected, text
        state = auto.walk(auto.initial, text.encode())  # exact distances
        assert auto.distance(state) == eager.distance(eager.walk(eager.initial, text.encode()))


def test_concat_of_a_lazy_part_and_labels():
    tree = rg.Concat((rg.Literal(" "), rg.Labels(("x", "y"), sep=","), rg.Regex("[0-9]")))
    dfa = compile_regular(tree)
    for text in (" x1", " y,x9", " x,y,x1", "x1", " x"):
        assert dfa_accepts(dfa, text.encode()) == (text in (" x1", " y,x9")), text


@pytest.mark.parametrize("phrases", [(".",), ("\n\n",), ("ab", "b"), ("a", "aab")])
def test_stops_before_language(phrases):
    value = rg.Regex("[0-9]+|a")
    auto = compile_regular(rg.StopsBefore(value, phrases))
    assert isinstance(auto, StopAutomaton)
    for text in strings("1ab.\n", 5):
        cut = any(text[:i] and re.fullmatch("[0-9]+|a", text[:i]) and text[i:].startswith(p)
                  for i in range(len(text) + 1) for p in phrases)
        expected = bool(re.fullmatch("[0-9]+|a", text)) or cut
        assert dfa_accepts(auto, text.encode()) == expected, (text, phrases)


# ------------------------------------------------------------------ one hole


def test_int_can_end_at_the_phrase(runtime):
    spec = HoleSpec("N", INT, stops_before=(".",), convert="int")
    run = push(hole(runtime, spec), runtime, "1", "2")
    assert {b".", b'."', b"..."} <= allowed(run, runtime)  # the phrase and overshoots
    push(run, runtime, '."')
    assert run.ending.value == b"12"
    assert (run.ending.keep, run.ending.tail) == (2, b"")  # phrase and overshoot dropped


def test_without_stops_before_the_mask_is_the_constraints(runtime):
    for spec in (HoleSpec("N", INT), HoleSpec("N", INT, stops_at=("1",)),
                 HoleSpec("N", None, stops_before=(".",))):
        assert spec.generation() is spec.regular
    run = hole(runtime, HoleSpec("N", INT, stops_at=(".",)))
    push(run, runtime, "1", "2")
    assert b"." not in allowed(run, runtime)  # STOPS_AT keeps the phrase: INT forbids it


def test_multi_token_phrase(runtime):
    spec = HoleSpec("N", INT, stops_before=("\n\n",))
    run = push(hole(runtime, spec), runtime, "7", "\n")
    assert run.ending is None and not run.can_end()
    assert allowed(run, runtime) >= {b"\n", b"\n\n"}
    assert not allowed(run, runtime) & {b"1", b"x"}  # only the phrase can go on
    push(run, runtime, "\n")
    assert run.ending.value == b"7"
    assert (run.ending.keep, run.ending.tail) == (1, b"")


def test_budget_leaves_room_for_the_rest_of_a_phrase(runtime):
    run = push(hole(runtime, HoleSpec("N", INT, stops_before=("\n\n",)), budget=2), runtime, "7")
    last = allowed(run, runtime)
    assert b"\n" not in last and b"\n\n" in last and b"8" in last


def test_min_tokens_forbid_an_early_stop(runtime):
    spec = HoleSpec("N", INT, min_tokens=3, stops_before=(".",))
    run = push(hole(runtime, spec), runtime, "1")
    assert not any(b"." in data for data in allowed(run, runtime))  # count 2: no stop yet
    push(run, runtime, "2")
    assert b"." in allowed(run, runtime)
    push(run, runtime, ".")
    assert run.ending.value == b"12"


def test_a_stop_the_counts_forbid_is_forgotten(runtime):
    value = rg.Regex("[0-9.]+")
    run = push(hole(runtime, HoleSpec("X", value, min_tokens=3, stops_before=("."))),
               runtime, "1", ".")
    assert run.ending is None  # "." at count 2 does not end X, and X may contain it
    assert b"x" not in allowed(run, runtime) and b"5" in allowed(run, runtime)
    push(run, runtime, "5", ".")
    assert run.ending.value == b"1.5"


def test_excluded_count_forbids_a_phrase_that_would_end_there(runtime):
    spec = HoleSpec("N", INT, excluded_counts=frozenset({3}), stops_before=("\n\n",))
    run = push(hole(runtime, spec), runtime, "1")
    options = allowed(run, runtime)
    assert b"\n\n" in options  # ends at count 2
    assert b"\n" not in options  # its second newline would come at count 3


def test_healed_prefix_is_not_part_of_the_value(runtime):
    spec = HoleSpec("N", INT, stops_before=(".",))
    run = HoleRun(spec, runtime.guide(spec.generation(" ")), runtime.text_bytes,
                  runtime.eos_ids, 10, prefix=b" ")
    assert not run.can_end()
    push(run, runtime, " ", "4", ".")
    assert run.ending.value == b"4" and run.ending.keep == 2


# ------------------------------------------------------------------ properties

VALUES = {
    "int": (INT, True), "float": (rg.Regex(rg.FLOAT_PATTERN), True),
    "word": (rg.Regex("[a-c ]+"), True), "choice": (rg.OneOf(("1", "12", " a b")), False),
}
PHRASES = [".", "\n\n", " b", "2.", ","]


def drive(runtime, run: HoleRun, rng: random.Random, phrases) -> None:
    """Random tokens from the mask (EOS where allowed), preferring phrase material."""
    vocab = runtime.index.vocab_size
    while run.ending is None:
        mask = run.mask(vocab)
        ids = np.flatnonzero(mask).tolist() if mask is not None else list(range(vocab))
        content = [t for t in ids if t not in runtime.eos_ids]
        favoured = [t for t in content if any(runtime.text_bytes[t][:1] == p.encode()[:1]
                                              for p in phrases)]
        if len(content) < len(ids) and rng.random() < 0.15:
            run.end_of_sequence()
            return
        assert content, "a live hole with no way forward"
        t = rng.choice(favoured if favoured and rng.random() < 0.4 else content)
        run.push(t, 0.0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(value=st.sampled_from(sorted(VALUES)),
       phrases=st.lists(st.sampled_from(PHRASES), min_size=1, max_size=2, unique=True),
       counts=st.tuples(st.integers(0, 3), st.sets(st.integers(1, 5), max_size=2)),
       budget=st.integers(6, 14), seed=st.integers(0, 2 ** 16))
def test_finished_values_satisfy_the_constraint(runtime, value, phrases, counts, budget, seed):
    tree, counted = VALUES[value]
    min_tokens, excluded = counts if counted else (0, set())
    spec = HoleSpec("X", tree, min_tokens=min_tokens, excluded_counts=frozenset(excluded),
                    stops_before=tuple(phrases))
    run = hole(runtime, spec, budget)
    drive(runtime, run, random.Random(seed), phrases)
    ending = run.ending
    assert dfa_accepts(compile_regular(tree), ending.value), ending
    assert spec.count_allows_end(len(run.tokens))
    kept = b"".join(runtime.text_bytes[t] for t in run.tokens[:ending.keep])
    assert kept + ending.tail == ending.value  # what stays in the prompt
    rest = bytes(run.data[len(ending.value):])
    assert not rest or any(rest.startswith(p.encode()) for p in phrases)


def test_unsatisfiable_budget_still_raises(runtime):
    spec = HoleSpec("N", rg.Regex("[0-9]{8}"), stops_before=(".",))
    run = hole(runtime, spec, budget=2)
    assert not run.mask(runtime.index.vocab_size).any()  # 8 digits cannot fit
    with pytest.raises(LmqConstraintError, match="'N'"):
        for text in ("1", "2"):
            run.push(token(runtime, text), 0.0)


# ------------------------------------------------------------------ real tokenizer


def test_smollm2_masks_after_digits(smollm2_index):
    guide = DfaGuide(compile_regular(rg.StopsBefore(INT, (".",))), smollm2_index)
    state = guide.initial_state
    for t in smollm2_index.encode("42"):
        state = guide.advance(state, t)
    allowed_bytes = {smollm2_index.token_bytes[t] for t in guide.allowed(state).tolist()}
    assert {b".", b'."', b"0", b"..."} <= allowed_bytes
    assert b"a" not in allowed_bytes and b" ." not in allowed_bytes
    assert guide.accepts_value(state)
    after = guide.advance(state, smollm2_index.encode(".")[0])
    assert guide.is_accepting(after) and not guide.accepts_value(after)


# ------------------------------------------------------------------ programs


def test_program_int_stops_before_period():
    result = lmq.query('"Count: [N]. Done" where INT(N) and STOPS_BEFORE(N, ".") and '
                       'len(TOKENS(N)) < 8', model="tiny-random")()
    n = result.variables["N"]
    assert isinstance(n, int)
    assert result.prompt == f"Count: {n}. Done"


@pytest.mark.parametrize("after", [rg.Regex("[0-9]+"), rg.Labels(("ab", "b"), sep=","),
                                   rg.OneOf(("", "x"))])
def test_literal_prefix_matches_the_generic_concatenation(after):
    fast = compile_regular(rg.Concat((rg.Literal(" a"), after)))
    generic = ConcatAutomaton(compile_regular(rg.Literal(" a")), compile_regular(after),
                              DEFAULT_BUDGET)
    assert not fast.lazy
    for text in strings(" a1b,", 6):
        state = fast.walk(fast.initial, text.encode())
        other = generic.walk(generic.initial, text.encode())
        assert fast.accepts(state) == generic.accepts(other), text
        assert fast.distance(state) == generic.distance(other), text


@pytest.mark.smollm2
def test_smollm2_number_ends_at_the_period():
    # before STOPS_BEFORE joined the mask, INT alone forbade the ".": the model padded digits
    result = lmq.query('"Q: What is 2 + 2?\\nA: The answer is [N]." where INT(N) and '
                       'STOPS_BEFORE(N, ".") and len(TOKENS(N)) < 10', model="smollm2")()
    assert result.variables["N"] == 4
