"""Grammar holes in the decoding loop: whatever tokens a decoder picks among those a hole
admits, the value is a sentence within the token budget (Hypothesis, with random choices);
greedy batches, sampling, beams, stop phrases, forced tokens, token healing, parse trees,
finite sets and JSON past the automaton all work on the tiny random model, and misuse is
an error naming the hole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmq
from lmq import grammars
from lmq import regular as rg
from lmq.constraints import HoleSpec
from lmq.errors import LmqCompileError, LmqConstraintError, LmqError
from lmq.runtime.decoding.holes import REFUSALS, HoleRun
from lmq.runtime.engine import shared_engine

pytest.importorskip("llguidance")

ROOT = Path(__file__).resolve().parents[3]
EXPR = (ROOT / "examples" / "expr.lark").read_text()
COMMANDS = (ROOT / "tests" / "cases" / "grammars" / "commands.lark").read_text()
MODEL = "tiny-random"


@pytest.fixture(scope="module")
def runtime():
    return shared_engine().runtime(shared_engine().backend(MODEL))


def run(source: str, **params):
    return lmq.query(source, model=MODEL)(**params)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([EXPR, COMMANDS]), st.integers(1, 14), st.integers(0, 2**32 - 1),
       st.floats(0, 0.3))
def test_any_admitted_choices_finish_a_sentence_within_the_budget(runtime, grammar, budget,
                                                                   seed, stop_rate):
    """A random decoder: a uniformly drawn allowed token (or the end where allowed), asked
    again while the hole refuses it -- the hole never runs out of room."""
    spec = HoleSpec("X", rg.Grammar(grammar), max_tokens=budget)
    try:
        hole = HoleRun(spec, runtime.guide(spec.generation()), runtime.text_bytes,
                       runtime.eos_ids, budget)
    except LmqConstraintError:
        assert grammar is COMMANDS and budget < 3  # "say''" is the shortest command
        return
    rng = np.random.default_rng(seed)
    while hole.ending is None:
        mask = hole.mask(runtime.index.vocab_size)
        eos = int(runtime.eos_ids[0])
        if mask[eos] and rng.random() < stop_rate:
            hole.end_of_sequence()
            break
        choices = np.flatnonzero(mask & ~np.isin(np.arange(len(mask)), runtime.eos_ids))
        assert len(choices) or mask[eos], "a hole with no way forward"
        if not len(choices):
            hole.end_of_sequence()
            break
        token = int(rng.choice(choices))
        refusals = 0
        while not hole.admits(token):
            refusals += 1
            assert refusals <= REFUSALS
            mask = hole.mask(runtime.index.vocab_size)
            choices = np.flatnonzero(mask & ~np.isin(np.arange(len(mask)), runtime.eos_ids))
            token = int(rng.choice(choices))
        hole.push(token, 0.0)
    assert len(hole.tokens) <= budget
    value = hole.ending.value.decode("utf-8")
    assert grammars.is_sentence(grammar, value), value


def test_a_greedy_batch_of_sixteen(runtime):
    q = lmq.query('"Expression {i}: [E]" where GRAMMAR(E, g) and len(TOKENS(E)) < 12',
                  model=MODEL)
    answers = q.batch([{"i": i, "g": EXPR} for i in range(16)], batch_size=16)
    assert not answers.errors
    for answer in answers:
        assert grammars.is_sentence(EXPR, answer["E"]) and len(answer.values["E"]) == 1
    assert answers.stats["forward_passes"] <= 12


def test_sampling_and_beams_stay_in_the_grammar():
    samples = run('sample(n=4, seed=3)\n    "Commands: [C]" where GRAMMAR(C, g) and '
                  'len(TOKENS(C)) < 16', g=COMMANDS)
    assert len(samples) == 4 and len({s["C"] for s in samples}) > 1
    beams = run('beam(n=2)\n    "Commands: [C]" where GRAMMAR(C, g) and len(TOKENS(C)) < 10',
                g=COMMANDS)
    for result in [*samples, *beams]:
        assert grammars.is_sentence(COMMANDS, result["C"]), result["C"]


def test_stop_phrases_end_a_sentence():
    result = run('"E: [E]\\nF: [F]" where GRAMMAR(E, g) and STOPS_AT(E, ")") and '
                 'GRAMMAR(F, g) and STOPS_BEFORE(F, ";") and len(TOKENS(E)) < 20 and '
                 'len(TOKENS(F)) < 20', g=EXPR)
    for value in (result["E"], result["F"]):
        assert grammars.is_sentence(EXPR, value), value
    assert ";" not in result["F"]


def test_stops_before_cuts_the_phrase_after_a_complete_value(runtime):
    spec = HoleSpec("X", rg.Grammar(EXPR), stops_before=(";",))
    hole = HoleRun(spec, runtime.guide(spec.generation()), runtime.text_bytes,
                   runtime.eos_ids, 20)
    overshoot = next(t for t, data in enumerate(runtime.text_bytes)
                     if data.startswith(b";") and len(data) > 1)
    for token in [runtime.text_bytes.index(text) for text in (b"1", b"+", b"2")] + [overshoot]:
        assert hole.ending is None and hole.mask(runtime.index.vocab_size)[token]
        hole.push(token, 0.0)
    assert hole.ending is not None and hole.ending.value == b"1+2"


def test_forced_text_is_appended_without_sampling():
    result = run('"Query: [Q]" where GRAMMAR(Q, g) and len(TOKENS(Q)) < 12',
                 g='start: "SELECT name FROM " TABLE\nTABLE: "users" | "orders"')
    assert result["Q"] in ("SELECT name FROM users", "SELECT name FROM orders")
    assert result.stats["forced_tokens"] >= 3


def test_token_healing_keeps_the_value_a_sentence():
    result = run('"Answer: [A]" where GRAMMAR(A, g) and len(TOKENS(A)) < 8', g=EXPR)
    assert result.stats["healed_tokens"] == 1
    assert grammars.is_sentence(EXPR, result["A"])
    assert result.prompt == "Answer: " + result["A"]


def test_tree_gives_the_lark_parse_tree():
    result = run('"E: [E]" where GRAMMAR(E, g, tree=True) and len(TOKENS(E)) < 10', g=EXPR)
    tree = result["E"]
    assert tree == grammars.parse_tree(EXPR, result.prompt[3:])
    assert tree.data == "start"


def test_finite_sets_keep_only_sentences():
    result = run('"E: [E]" where GRAMMAR(E, g) and E in ["1+", "2*3", "x", "(4)"]', g=EXPR)
    assert result["E"] in ("2*3", "(4)")
    with pytest.raises(LmqConstraintError, match="'E'"):
        run('"E: [E]" where GRAMMAR(E, g) and E in ["1+", "x"]', g=EXPR)


def test_json_past_the_automaton_uses_the_grammar_engine():
    schema = {"$defs": {"n": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
        "required": ["v", "kids"]}}, "$ref": "#/$defs/n"}
    result = run('"Tree: [T]" where JSON(T, s) and len(TOKENS(T)) < 30', s=schema)
    value = result["T"]

    def valid(node) -> bool:
        return set(node) == {"v", "kids"} and isinstance(node["v"], int) and \
            all(valid(kid) for kid in node["kids"])

    assert valid(value) and json.dumps(value, separators=(",", ":")) == \
        result.prompt[len("Tree: "):]
    lmq.query('"T: [T]" where JSON(T, {"$ref": "#"})\n')  # compiles: recursion is fine


def test_a_bad_grammar_parameter_names_the_hole():
    with pytest.raises(LmqError) as caught:
        run('"E: [E]" where GRAMMAR(E, g)', g='start: x\n')
    assert isinstance(caught.value, LmqCompileError)
    assert "invalid grammar" in caught.value.message and caught.value.line == 1


def test_grammar_under_or_is_an_error():
    with pytest.raises(LmqError, match="top-level"):
        run('"E: [E]" where GRAMMAR(E, g) or E == "a"', g=EXPR)


def test_a_budget_too_small_for_any_sentence_fails_at_once():
    with pytest.raises(LmqConstraintError, match="no value fits"):
        run('"C: [C]" where GRAMMAR(C, g) and len(TOKENS(C)) < 2', g='start: "ab" "cd" "ef"')


def test_masks_of_shared_states_come_from_the_bank(runtime):
    q = lmq.query('"[E]" where GRAMMAR(E, g) and len(TOKENS(E)) < 6', model=MODEL)
    bank = runtime.bank(__import__("torch").device("cpu"))
    before = bank.hits
    # words allow most of the vocabulary: dense masks, from the bank
    q.batch([{"g": 'start: /[a-zA-Z ,]+/ "."'}] * 4, batch_size=4)
    assert bank.hits > before  # four rows in the same states: one mask each
