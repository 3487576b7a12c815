"""Concurrency: a Query called from many threads gives what sequential calls give, and a
large batch maps every input to its own output, in order, nothing lost or duplicated,
also when some inputs fail."""

from __future__ import annotations

import threading

import pytest

import lmq
from lmq.checks import compile_source
from lmq.errors import LmqError, LmqParameterError, LmqRuntimeError
from lmq.result import Result
from lmq.runtime.run import execute

TINY = "tiny-random"


def summary(result: Result) -> tuple:
    return (result.prompt, tuple(sorted(result.variables.items())),
            tuple(round(lp, 4) for lp in result.logprobs["A"]))


@pytest.mark.parametrize("decoder", ["argmax", "sample(temperature=1.0, seed=7)"])
def test_a_query_is_thread_safe(decoder):
    q = lmq.query('"Q{n}: [A] and [B: int]" where len(TOKENS(A)) < 4 and len(TOKENS(B)) < 3\n',
                  model=TINY, decoder=decoder)
    calls = [n for n in range(6)]
    sequential = {n: summary(q(n=n)) for n in calls}
    results: dict[tuple[int, int], tuple] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(thread: int) -> None:
        try:
            barrier.wait()
            for n in calls:
                results[(thread, n)] = summary(q(n=n))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == 8 * len(calls)
    for (_, n), value in results.items():
        assert value == sequential[n]


def test_batch_of_1000_maps_each_input_to_its_own_output():
    checked = compile_source('"{x + 1}:[A]" where len(TOKENS(A)) < 3\n')
    inputs: list[dict] = []
    for i in range(1000):
        if i % 97 == 3:
            inputs.append({"x": f"bad{i}"})  # wrong type: str + int
        elif i % 101 == 5:
            inputs.append({})  # missing parameter
        elif i % 103 == 7:
            inputs.append({"x": i, "y": 1})  # unknown parameter
        else:
            inputs.append({"x": i})
    answers = execute(checked, inputs, model=TINY, fail_fast=False)
    assert len(answers) == len(inputs)
    seen = set()
    for params, answer in zip(inputs, answers):
        assert answer is not None
        if params.keys() == {"x"} and isinstance(params["x"], int):
            assert isinstance(answer, Result), answer
            head, _, rest = answer.prompt.partition(":")
            assert head == str(params["x"] + 1)  # its own input, not a neighbour's
            assert rest == answer.variables["A"]
            seen.add(head)
        elif params.keys() == {"x"}:
            assert isinstance(answer, LmqRuntimeError)
            assert "can only concatenate str" in answer.message and answer.line == 1
        else:
            assert isinstance(answer, LmqParameterError)
            assert ("missing parameter 'x'" in answer.message
                    or "unknown parameter 'y'" in answer.message)
    good = sum(1 for p in inputs if p.keys() == {"x"} and isinstance(p["x"], int))
    assert len(seen) == good  # nothing duplicated, nothing lost


def test_query_batch_keeps_order_with_failures():
    q = lmq.query('"{x + 1}:[A]" where len(TOKENS(A)) < 2\n', model=TINY)
    inputs = [{"x": i} if i % 5 else {"x": "s"} for i in range(40)]
    answers = q.batch(inputs, batch_size=7)
    assert len(answers) == 40
    for i, answer in enumerate(answers):
        if i % 5:
            assert answer.prompt.startswith(f"{i + 1}:")
        else:
            assert isinstance(answer, LmqError)
