"""Token healing (LANGUAGE.md section 6) on the seeded tiny model (SmolLM2's tokenizer): a
prompt ending in a space the tokenizer merges into the next word gives that token to the
hole; values and rendered prompts are the same as without healing."""

from __future__ import annotations

import re

import pytest

import lmq
from lmq.runtime.decoding.context import Counters, RowContext
from lmq.runtime.decoding.healing import healing_enabled
from lmq.runtime.engine import shared_engine
from lmq.runtime.interpreter.program import Segment

MODEL = "tiny-random"


@pytest.fixture(scope="module")
def runtime():
    return shared_engine().runtime(shared_engine().backend(MODEL))


def run(source: str, healing: bool, monkeypatch, model: str = MODEL):
    monkeypatch.setenv("LMQ_TOKEN_HEALING", "1" if healing else "0")
    return lmq.query(source, model=model)()


def tokens_of(source: str, healing: bool, monkeypatch) -> list[str]:
    monkeypatch.setenv("LMQ_TOKEN_HEALING", "1" if healing else "0")
    events = lmq.query(source, model=MODEL).stream()
    return [event["text"] for event in events if event["event"] == "token"]


def test_switch(monkeypatch):
    monkeypatch.delenv("LMQ_TOKEN_HEALING", raising=False)
    assert healing_enabled()
    monkeypatch.setenv("LMQ_TOKEN_HEALING", "0")
    assert not healing_enabled()


def test_only_the_space_merges_in_smollm2(runtime):
    assert runtime.merging_whitespace == frozenset({b" "})


def test_topics_first_token_merges_the_space(monkeypatch):
    source = '"Topics: [L]" where L in ["sports", "politics"]'
    healed = tokens_of(source, True, monkeypatch)
    assert healed[0].startswith(" ") and len(healed[0]) > 1  # " s", " sports", " pol", ...
    plain = tokens_of(source, False, monkeypatch)
    assert not plain[0].startswith(" ")
    for healing in (True, False):
        result = run(source, healing, monkeypatch)
        assert result.variables["L"] in ("sports", "politics")
        assert result.prompt == "Topics: " + result.variables["L"]
        assert result.segments == [("Topics: ", None), (result.variables["L"], "L")]
        assert result.stats["healed_tokens"] == int(healing)


@pytest.mark.parametrize("source", [
    '"Topics: [L]" where L in ["sports"]',
    '"Answer: [X] done" where X == "yes"',
    '"Code: [X]." where REGEX(X, "ab[0-9]") and STOPS_BEFORE(X, "9")',
    '"Topics: [X]![Y]" where len(X) == 0 and len(TOKENS(Y)) < 3',
    '"Topics: [X] done" where REGEX(X, "spo(rts)?") and STOPS_AT(X, "o")',
    '"A: [A]\\nB: [B]" where A in ["one", "two"] and B in ["three"]',
])
def test_values_and_prompt_as_without_healing(source, monkeypatch):
    healed, plain = run(source, True, monkeypatch), run(source, False, monkeypatch)
    assert healed.stats["healed_tokens"] >= 1
    if "Y" not in healed.variables:  # Y is free text: the model sees a different context
        assert healed.variables == plain.variables
        assert healed.prompt == plain.prompt


def test_stop_phrase_inside_the_healed_token(monkeypatch):
    result = run('"Topics: [X] done" where REGEX(X, "spo(rts)?") and STOPS_AT(X, "o")',
                 True, monkeypatch)
    assert result.variables["X"] == "spo"
    assert result.prompt == "Topics: spo done"


def test_newline_is_not_healed(monkeypatch):
    result = run('"Topics:\\n[L]" where L in ["sports", "politics"]', True, monkeypatch)
    assert result.stats["healed_tokens"] == 0


def test_token_bounds_count_the_healed_token(monkeypatch):
    result = run('"Topics: [X]" where len(TOKENS(X)) == 3', True, monkeypatch)
    assert result.stats["healed_tokens"] == 1
    assert len(result.logprobs["X"]) == 3
    assert result.prompt == "Topics: " + result.variables["X"]
    assert not result.variables["X"].startswith(" ")


def test_no_healing_where_the_budget_cannot_spell_it(monkeypatch):
    # SmolLM2 has no " 7" token: a one-token INT after a space stays unhealed
    result = run('"N: [N]" where INT(N) and len(TOKENS(N)) == 1', True, monkeypatch)
    assert result.stats["healed_tokens"] == 0
    assert isinstance(result.variables["N"], int)


def test_healing_saves_a_prompt_token(monkeypatch):
    source = '"Topics: [L]" where L in ["sports", "politics"]'
    healed, plain = run(source, True, monkeypatch), run(source, False, monkeypatch)
    assert healed.stats["prompt_tokens"] == plain.stats["prompt_tokens"] - 1
    assert healed.stats["tokens_reencoded"] == plain.stats["tokens_reencoded"] == 0


@pytest.mark.parametrize("decoder", ["sample(n=3, seed=2)", "beam(n=2)"])
def test_healing_with_several_rows(decoder, monkeypatch):
    source = (f'{decoder} "Topics: [X] and [Y]" where len(TOKENS(X)) < 3 and '
              'len(TOKENS(Y)) < 3')
    results = run(source, True, monkeypatch)
    for result in results:
        assert result.stats["healed_tokens"] == 2
        assert result.prompt == f"Topics: {result.variables['X']} and {result.variables['Y']}"
        assert result.stats["tokens_reencoded"] == 0


def test_nested_query_after_a_healed_hole(monkeypatch):
    source = '''
query inner():
    "Inner: [I]" where I in ["x", "y"]
    return I
"Topics: [L] then [R: inner]" where L in ["sports", "politics"]
'''
    result = run(source, True, monkeypatch)
    assert re.fullmatch(r"Topics: (sports|politics) then [xy]", result.prompt), result.prompt


# ------------------------------------------------------------------ the row's bookkeeping


@pytest.fixture
def context(runtime):
    """A fresh row's context on the shared backend, released after the test (a row left
    there keeps the backend's KV columns from starting over, so later runs' logits, and
    their seeded samples, would depend on this test)."""
    view = shared_engine().view(runtime.backend)
    context = RowContext(view, runtime, view.backend.new_rows(1)[0], 4096, Counters())
    yield context
    view.backend.release([context.handle])


def test_fresh_row_leaves_the_healed_text_out(runtime, context):
    backend = runtime.backend
    sports = runtime.text_bytes.index(b" sports")
    prompt = Segment("Topics: ")
    hole = Segment("sports", hole="L", tokens=(sports,), model=context.view)
    context.sync([prompt, hole, Segment("!")])
    encode = backend.vocabulary.encode
    assert context.pending == encode("Topics:") + [sports] + encode("!")
    assert context.fed[2].healed and context.fed[1].n_tokens == len(encode("Topics:"))
    context.sync([prompt])  # the hole goes away: its prompt is encoded again, space included
    assert context.pending == backend.vocabulary.encode("Topics: ")
    assert context.length == len(context.pending)


def test_healing_a_row_and_rolling_back(runtime, context):
    backend = runtime.backend
    prompt = Segment("Topics: ")
    context.sync([prompt])
    space = context.last_text_token()
    assert runtime.text_bytes[space] == b" "
    context.take_text_token()
    assert context.last_text_token() is None
    sports = runtime.text_bytes.index(b" sports")
    context.push_generated(sports)
    tokens = context.close_hole(1, [])
    hole = Segment("sports", hole="L", tokens=tuple(tokens), model=context.view)
    context.adopt(hole, len(tokens))
    assert context.fed[-1].healed and context.counters.healed_tokens == 1
    context.sync([prompt, hole])  # nothing new
    assert context.pending == backend.vocabulary.encode("Topics:") + [sports]
    context.sync([prompt, Segment(" other")])
    assert backend.vocabulary.decode(context.pending) == "Topics:  other"


@pytest.mark.smollm2
def test_smollm2_answers_after_a_trailing_space(monkeypatch):
    # unhealed, the model continues "is " with "\nB: The capital"
    result = run('"Q: What is the capital of France?\\nA: The capital of France is [C]" where '
                 'STOPS_BEFORE(C, ".") and len(TOKENS(C)) < 6', True, monkeypatch, "smollm2")
    assert result.variables["C"] == "Paris"
    assert result.stats["healed_tokens"] == 1
