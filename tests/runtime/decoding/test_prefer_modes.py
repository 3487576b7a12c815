"""The modes of ``prefer`` in the decoding loop (LANGUAGE.md section 9, lmq.runtime.decoding.prefer),
run from program text on the tiny-random model: the hole's constraints hold, the trace
records each mode's decisions, the prompt mode decodes exactly what its rewritten text
would, and the cascade falls back down the hierarchy to a closed-book answer."""

from __future__ import annotations

import json
import math

import pytest

import lmq
from lmq.errors import LmqCompileError
from lmq.stdlib.knowledge import render_segments

INSTRUCTION = "Assume that the tower stands in Rome."
CONTEXT = "The tower is a landmark of Paris."
QUESTION = "Question: In which city is the tower?\nAnswer:"
CITY_VALUES = [" Rome", " Paris", " Lyon"]
CITIES = json.dumps(CITY_VALUES)
PROGRAM = f'''argmax
    if instruction:
        "{{:instruction}}{{instruction}}\\n"
    "{{:context}}{CONTEXT}\\n"
    "Question: In which city is the tower?\\nAnswer:[A]" where WHERE
prefer
    ORDER with mode=MODE
'''


def run(mode: str, where: str = f"A in {CITIES}", order: str = "instruction > context > "
        "parametric", instruction: str = INSTRUCTION, **params: object) -> lmq.Result:
    source = PROGRAM.replace("MODE", mode).replace("WHERE", where).replace("ORDER", order)
    return lmq.query(source, model="tiny-random")(instruction=instruction, **params)


def steps(result: lmq.Result) -> list[dict]:
    [decision] = [entry["decisions"] for entry in result.trace if "decisions" in entry]
    assert decision["hole"] == "A"
    return decision["steps"]


# ------------------------------------------------------------------ prompt


def test_prompt_mode_decodes_from_the_rewritten_text():
    where = 'len(TOKENS(A)) < 5 and STOPS_AT(A, ".")'
    result = run('"prompt"', where)
    pieces = [(INSTRUCTION + "\n", "instruction"), (CONTEXT + "\n", "context"),
              (QUESTION, None)]
    shown = "".join(text for text, _ in render_segments(pieces))
    assert shown.index("User assumptions (highest priority):\n" + INSTRUCTION) < \
        shown.index("Context documents:\n" + CONTEXT)
    [step] = steps(result)
    assert step == {"mode": "prompt", "order": ["instruction", "context", "parametric"],
                    "prompt": shown}
    direct = lmq.query(f'"{{shown}}[A]" where {where}\n', model="tiny-random")(shown=shown)
    assert result.variables == direct.variables  # greedy, token for token
    assert result.logprobs["A"] == pytest.approx(direct.logprobs["A"], abs=1e-4)
    assert result.prompt == INSTRUCTION + "\n" + CONTEXT + "\n" + QUESTION + \
        result.variables["A"]  # the program's own prompt is not rewritten


def test_prompt_mode_keeps_constraints_and_the_cache_across_holes():
    source = f'''argmax
    "{{:context}}{CONTEXT}\\n"
    "Q: city?\\nA:[A]\\nQ: country?\\nA:[B]"
where
    A in {CITIES} and len(TOKENS(B)) < 3
prefer
    context > parametric with mode="prompt"
'''
    result = lmq.query(source, model="tiny-random")()
    assert result.variables["A"] in CITY_VALUES
    holes = [entry["decisions"]["hole"] for entry in result.trace if "decisions" in entry]
    assert holes == ["A", "B"]
    assert result.stats["tokens_reencoded"] == 0  # the added headings are the same segments


# ------------------------------------------------------------------ cascade


def test_cascade_stops_at_the_top_source_when_it_answers():
    result = run('"cascade", margin=margin', margin=-math.inf)
    [step] = steps(result)
    assert step["mode"] == "cascade" and step["source"] == "instruction" and step["answered"]
    assert result.variables["A"] in CITY_VALUES
    assert step["answer"] == result.variables["A"].strip()
    assert step["answer_score"] > -math.inf and step["sentinel_score"] > -math.inf


def test_cascade_falls_back_to_the_closed_book_answer():
    result = run('"cascade", margin=margin', margin=math.inf)
    trail = steps(result)
    assert [s["source"] for s in trail] == ["instruction", "context", "parametric"]
    assert [s["answered"] for s in trail] == [False, False, True]
    assert all(s["answer"] in [c.strip() for c in CITY_VALUES] for s in trail)
    closed = lmq.query(f'"{{question}}[A]" where A in {CITIES}\n',
                       model="tiny-random")(question=QUESTION)
    assert result.variables == closed.variables
    assert result.score == pytest.approx(closed.score, abs=1e-4)  # discarded tries dropped


def test_cascade_skips_a_source_without_sections():
    result = run('"cascade", margin=margin', instruction="", margin=math.inf)
    assert [s["source"] for s in steps(result)] == ["context", "parametric"]


def test_cascade_keeps_the_last_sources_value_and_scores_it_exactly():
    result = run('"cascade", margin=margin', where="len(TOKENS(A)) < 4", order="context",
                 margin=math.inf)
    [step] = steps(result)
    assert step["source"] == "context" and not step["answered"]
    assert step["raw"] == result.variables["A"]
    logprobs = result.logprobs["A"]  # the same tokens, from the decoding loop's own passes
    assert step["answer_score"] == pytest.approx(sum(logprobs) / len(logprobs), abs=1e-4)
    assert len(result.logprobs["A"]) <= 3


# ------------------------------------------------------------------ modes and options


@pytest.mark.parametrize("mode", ["contrastive", "prompt", "cascade"])
def test_every_mode_runs_under_sampling_and_keeps_the_constraint(mode):
    source = PROGRAM.replace("argmax", "sample(2, seed=3)").replace("MODE", f'"{mode}"') \
        .replace("WHERE", f"A in {CITIES}").replace("ORDER", "instruction > context")
    results = lmq.query(source, model="tiny-random")(instruction=INSTRUCTION)
    assert len(results) == 2
    assert all(r.variables["A"] in CITY_VALUES for r in results)


def test_unknown_mode_is_a_compile_error_with_a_caret():
    with pytest.raises(LmqCompileError) as caught:
        lmq.query(PROGRAM.replace("MODE", '"promt"').replace("WHERE", "INT(A)")
                  .replace("ORDER", "context"))
    assert caught.value.message == "unknown prefer mode 'promt'"
    assert "did you mean 'prompt'?" in str(caught.value) and "^^^" in str(caught.value)


def test_a_mode_from_a_parameter_is_checked_when_the_hole_runs():
    assert steps(run("m", m="prompt"))[0]["mode"] == "prompt"
    with pytest.raises(LmqCompileError) as caught:
        run("m", m="cascades")
    assert "did you mean 'cascade'?" in str(caught.value)
    with pytest.raises(LmqCompileError, match="prefer option 'margin' takes a number"):
        run('"cascade", margin=m', m="high")


def test_contrastive_plausibility_runs_and_keeps_the_constraint():
    for plausibility in (0, 0.1, 1):
        result = run('"contrastive", strength=3.0, plausibility=p', p=plausibility)
        assert result.variables["A"] in CITY_VALUES
        assert max(entry["rows"] for entry in result.trace if "rows" in entry) == 3


def test_plausibility_is_checked():
    with pytest.raises(LmqCompileError, match="prefer option 'plausibility' takes a number"):
        run('"contrastive", plausibility=p', p="high")
    with pytest.raises(LmqCompileError, match="'plausibility' is a share between 0 and 1"):
        run('"contrastive", plausibility=p', p=1.5)
    with pytest.raises(LmqCompileError, match="'plausibility' is a share between 0 and 1"):
        run('"contrastive", plausibility=p', p=-0.1)
    with pytest.raises(lmq.LmqSyntaxError) as caught:
        lmq.query(PROGRAM.replace("MODE", '"contrastive", plausability=0.1')
                  .replace("WHERE", "INT(A)").replace("ORDER", "context"))
    assert "did you mean 'plausibility'?" in str(caught.value)


def test_streaming_a_cascade_retracts_each_rejected_attempt():
    source = PROGRAM.replace("MODE", '"cascade", margin=margin').replace(
        "WHERE", f"A in {CITIES}").replace("ORDER", "instruction > context > parametric")
    events = list(lmq.query(source, model="tiny-random").stream(
        instruction=INSTRUCTION, margin=math.inf))
    shown = ""  # what a client rendering the stream shows for A
    retracted = []
    for event in events:
        if event["event"] == "token":
            shown += event["text"]
        elif event["event"] == "retract":
            assert event["text"] == shown and event["hole"] == "A"
            retracted.append(shown)
            shown = ""
    result = events[-1]["result"]
    assert len(retracted) == 2  # the instruction's and the context's answers
    assert [s["answer"] for s in steps(result)][:2] == [r.strip() for r in retracted]
    assert shown == result.variables["A"]
