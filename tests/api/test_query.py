"""The Python API on the seeded tiny random model: calls, batches, streams, decorators,
``lmq.F``, decoders given as text, and host queries used as nested queries."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest

import lmq
from lmq.api import compile_cached

MODEL = "tiny-random"
EXACT3 = '"Q: {x}\\nA:[A]" where len(TOKENS(A)) == 3'


def test_call_binds_keywords_and_positionals():
    q = lmq.query(EXACT3, model=MODEL)
    by_keyword, by_position = q(x="hi"), q("hi")
    assert by_keyword.prompt.startswith("Q: hi\nA:")
    assert by_keyword.variables == by_position.variables
    assert len(by_keyword.logprobs["A"]) == 3


def test_missing_parameter_is_named():
    with pytest.raises(lmq.LmqParameterError, match="missing parameter 'x'"):
        lmq.query(EXACT3, model=MODEL)()


def test_sync_call_works_inside_a_running_event_loop():
    q = lmq.query(EXACT3, model=MODEL)

    async def main():
        inside = q(x="loop")  # a notebook cell calls this with its loop running
        awaited = await q.acall(x="loop")
        return inside, awaited

    inside, awaited = asyncio.run(main())
    assert inside.variables == awaited.variables


def test_batch_keeps_order_and_errors_in_place():
    q = lmq.query(EXACT3, model=MODEL)
    inputs = [{"x": "one"}, {"x": "two"}, {"y": "wrong"}, {"x": "four"}]
    answers = q.batch(inputs)
    assert len(answers) == 4
    assert isinstance(answers[2], lmq.LmqParameterError)
    for params, answer in zip(inputs, answers):
        if "x" in params:
            assert answer.prompt.startswith(f"Q: {params['x']}\nA:")
    assert answers.errors == [(2, answers[2])]
    assert answers.stats["failed"] == 1 and answers.stats["instances"] == 4


def test_batch_shares_forward_passes():
    q = lmq.query(EXACT3, model=MODEL)
    answers = q.batch([{"x": "a"}, {"x": "bb"}, {"x": "ccc"}])
    per_row = [a.stats["forward_passes"] for a in answers]
    # every row took part in every pass of the lockstep batch, counted once for the batch
    assert answers.stats["forward_passes"] == max(per_row) < sum(per_row)
    assert answers.stats["generated_tokens"] == 9


def test_batch_size_splits_into_lockstep_groups():
    q = lmq.query(EXACT3, model=MODEL)
    answers = q.batch([{"x": str(i)} for i in range(4)], batch_size=2)
    assert [a.prompt[:4] for a in answers] == ["Q: 0", "Q: 1", "Q: 2", "Q: 3"]
    assert answers.stats["forward_passes"] == 2 * answers[0].stats["forward_passes"]


def test_batch_errors_raise_raises_the_first_in_input_order():
    q = lmq.query(EXACT3, model=MODEL)
    with pytest.raises(lmq.LmqParameterError, match="'z'"):
        q.batch([{"x": "ok"}, {"x": "a", "z": 1}, {"w": 2}], errors="raise")


def test_stream_yields_tokens_then_hole_then_result():
    q = lmq.query('"Word:[A]" where REGEX(A, r"[a-z]{2,6}")', model=MODEL)
    events = list(q.stream())
    kinds = [e["event"] for e in events]
    assert kinds[-2:] == ["hole", "result"]
    assert set(kinds[:-2]) == {"token"}
    value = events[-1]["result"].variables["A"]
    assert "".join(e["text"] for e in events if e["event"] == "token") == value
    assert events[-2]["hole"] == "A" and events[-2]["value"] == value


def test_stream_closed_early_stops_and_frees_the_runtime():
    q = lmq.query('"Text:[A]" where len(TOKENS(A)) == 40', model=MODEL)
    stream = q.stream()
    first = next(stream)
    assert first["event"] == "token"
    stream.close()
    assert len(q().logprobs["A"]) == 40  # the decoding lock was released


def test_stream_raises_the_run_error():
    q = lmq.query('"n:[N]" where len(TOKENS(N)) < 3 and never(N)', model=MODEL,
                  tools={"never": lambda value: False})
    with pytest.raises(lmq.LmqConstraintError, match="fails predicate 'never'"):
        list(q.stream())


def test_a_predicate_gets_its_arguments_and_keywords():
    seen = []

    def longer(value, n, strict=False):
        seen.append((value, n, strict))
        return True

    q = lmq.query('"n:[N]" where len(TOKENS(N)) < 3 and longer(N, 1, strict=True)', model=MODEL,
                  tools={"longer": longer})
    value = q()["N"]
    assert seen == [(value, 1, True)]


def test_decorator_takes_docstring_and_signature():
    @lmq.query(model=MODEL)
    def capital(country, suffix="?"):
        """
        "What is the capital of {country}{suffix}[C]" where len(TOKENS(C)) < 4
        """

    assert capital.params == ("country", "suffix")
    result = capital("Peru")
    assert result.prompt.startswith("What is the capital of Peru?")
    assert capital(country="Peru", suffix="!").prompt.startswith("What is the capital of Peru!")
    assert "capital" in repr(capital)


def test_decorator_without_arguments():
    @lmq.query
    def bare(x):
        """"{x}[A]" where len(TOKENS(A)) < 2"""

    assert isinstance(bare, lmq.Query) and bare.params == ("x",)


def test_decorator_errors():
    with pytest.raises(lmq.LmqCompileError, match="no docstring"):
        @lmq.query
        def nodoc(x):
            pass
    with pytest.raises(lmq.LmqCompileError, match="'y', which is not a parameter"):
        @lmq.query
        def missing(x):
            """"{x}{y}[A]" """
    with pytest.raises(lmq.LmqCompileError, match="'unused' of .*unused_param' is not used"):
        @lmq.query
        def unused_param(x, unused):
            """"{x}[A]" """


def test_f_returns_the_single_hole_value():
    f = lmq.F("Count to {n}:[N: int]", model=MODEL)
    assert isinstance(f(n=3), int)
    g = lmq.F("Code: [D: r'[0-9]{3}']", model=MODEL)
    assert re.fullmatch(r"[0-9]{3}", g())
    h = lmq.F('Say "[W]"', 'W in ["yes", "no"]', model=MODEL)
    assert h() in ("yes", "no")


def test_f_needs_exactly_one_hole():
    with pytest.raises(lmq.LmqCompileError, match="exactly one hole, found 2"):
        lmq.F("[A] and [B]")
    with pytest.raises(lmq.LmqCompileError, match="found 0"):
        lmq.F("no holes")


def test_decoder_as_text():
    q = lmq.query('"x[A]" where len(TOKENS(A)) < 3', model=MODEL,
                  decoder="sample(n=2, temperature=0.7, seed=1)")
    results = q()
    assert isinstance(results, list) and len(results) == 2
    assert q.decoder == lmq.DecoderSpec("sample", n=2, temperature=0.7, seed=1)
    with pytest.raises(lmq.LmqCompileError, match="did you mean 'temperature'") as info:
        lmq.query('"x[A]"', decoder="sample(temprature=1)")
    assert "^^^" in str(info.value)


def test_host_query_as_nested_macro_with_its_global_where():
    summarize = lmq.query('argmax\n    "Summary of {doc}:[S]"\nwhere\n    len(TOKENS(S)) == 2\n')
    outer = lmq.query('"Doc: {doc}\\n[X: summarize(doc)] end"', model=MODEL,
                      tools={"summarize": summarize})
    result = outer(doc="a text")
    assert result.prompt.startswith("Doc: a text\nSummary of a text:")
    assert result.prompt.endswith(" end")
    assert result.variables["X"].startswith("Summary of a text:")
    assert "S" not in result.variables  # the nested query's own holes stay inside


def test_host_query_with_return_keywords_and_own_tools():
    def shout(text):
        return text.upper() + "!"

    inner = lmq.query('"Inner {a}:[S]" where len(TOKENS(S)) < 3\nreturn shout(a)',
                      tools={"shout": shout})
    outer = lmq.query('"Doc:[X: loud(a=word)] end"', model=MODEL, tools={"loud": inner})
    result = outer(word="hey")
    assert result.variables["X"] == "HEY!"
    assert result.prompt == "Doc:HEY! end"
    assert ("HEY!", "X") in result.segments


def test_host_query_argument_errors():
    inner = lmq.query('"{a}[S]" where len(TOKENS(S)) < 2')
    outer = lmq.query('"[X: inner()]"', model=MODEL, tools={"inner": inner})
    with pytest.raises(lmq.LmqRuntimeError, match="missing argument 'a'"):
        outer()


def test_decorated_query_nested_with_positional_order_and_defaults():
    @lmq.query
    def pair(second, first="1"):
        """"{first}-{second}"
        return first + second"""

    outer = lmq.query('"[X: pair(\'2\')]"', model=MODEL, tools={"pair": pair})
    assert outer().variables["X"] == "12"


def test_compiled_programs_are_cached(monkeypatch):
    source = '"cached?[A]"'
    assert compile_cached(source) is compile_cached(source)
    monkeypatch.setenv("LMQ_NO_CACHE", "1")
    assert compile_cached(source) is not compile_cached(source)


def test_import_lmq_does_not_import_torch():
    code = ("import sys, lmq; q = lmq.query('\"x[A]\"'); import lmq.magic, lmq.html, "
            "lmq.config, lmq.cli; print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False False"


def test_each_instance_is_answered_as_soon_as_it_finishes():
    """`execute(..., on_answer=)` (what `lmq run --inputs` writes from) hears of a short
    instance before a long one in the same lockstep batch, and of bad inputs at once."""
    q = lmq.query('"{x}:[A]" where len(TOKENS(A)) == n', model=MODEL)
    heard: list[tuple[int, object]] = []
    answers = q.execute([{"x": "a", "n": 30}, {"x": "b", "n": 2}, {"x": "c"},
                          {"x": "d", "n": 1}], fail_fast=False,
                         on_answer=lambda index, answer: heard.append((index, answer)))
    order = [index for index, _ in heard]
    assert order[0] == 2  # the missing parameter is known before decoding starts
    assert order.index(3) < order.index(1) < order.index(0)  # 1 token, 2 tokens, 30 tokens
    assert sorted(order) == [0, 1, 2, 3]
    for index, answer in heard:
        if index == 2:
            assert isinstance(answer, lmq.LmqError)
        else:
            assert answer.variables == answers[index].variables
            assert answer.prompt == answers[index].prompt
