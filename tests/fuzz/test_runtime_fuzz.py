"""Property tests for running programs: a random program that compiles, with random (and
hostile) parameters, tools that return odd values or raise, and random hole values, ends
normally or with an :class:`LmqError` (with a span inside the text, when it has one),
within its time bound, without reaching a host method it was not given.

Most examples run in the interpreter alone (holes filled by the test); a few run end to
end on ``tiny-random``."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lmq_fuzz_programs import TEXT, Opaque, Sub, programs, values

from lmq.checks import CheckedProgram, compile_source
from lmq.errors import LmqError
from lmq.limits import Limits
from lmq.runtime.interpreter.program import ProgramState
from lmq.runtime.run import execute

LIMITS = Limits(steps=20_000, string_size=100_000, collection_size=10_000, int_digits=2_000,
                memory=50_000_000, timeout=2.0)
SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class Tools:
    """Tools whose behaviour the test draws: return a drawn value, raise, or hand back
    something with a dangerous method."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def tool(self, *args, **kwargs):
        choice = self.data.draw(st.integers(0, 4), label="tool")
        if choice == 0:
            raise ValueError("tool failure")
        if choice == 1:
            return Opaque()
        if choice == 2:
            return Sub("sub")
        return self.data.draw(values(), label="tool value")


def compiled(source: str) -> CheckedProgram | None:
    try:
        return compile_source(source, "fuzz.lmq")
    except LmqError:
        return None


def check_error(error: LmqError, source: str) -> None:
    assert str(error)
    if error.span is not None:
        assert 0 <= error.span.start <= error.span.end <= len(source) + 1
        assert 1 <= error.span.line <= source.count("\n") + 2


def bind(checked: CheckedProgram, data: st.DataObject, tools: Tools) -> tuple[dict, dict]:
    params = {name: data.draw(values(), label=name) for name in checked.params}
    table = {name: tools.tool for name in checked.tools}
    table.setdefault("upper", str.upper)
    table.setdefault("check", lambda text, *args: bool(len(text) % 2))
    return params, table


@SETTINGS
@given(programs(), st.data())
def test_generated_programs_run_or_fail_cleanly(source: str, data: st.DataObject) -> None:
    checked = compiled(source)
    if checked is None:
        return
    tools = Tools(data)
    params, table = bind(checked, data, tools)
    try:
        state = ProgramState(checked.program, params, table, LIMITS, output=lambda text: None)
        while (request := state.run()) is not None:
            state.fill(data.draw(TEXT | st.sampled_from(["12", "true", "3.5", "[1]"]),
                                 label=request.hole.name))
            if data.draw(st.integers(0, 9), label="fork") == 0:
                state = state.fork()
    except LmqError as error:
        check_error(error, source)


@pytest.mark.parametrize("seed", range(3))
@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(source=programs(), data=st.data())
def test_generated_programs_end_to_end(seed: int, source: str, data: st.DataObject) -> None:
    checked = compiled(source)
    if checked is None:
        return
    params, table = bind(checked, data, Tools(data))
    answer = execute(checked, [params], model="tiny-random", tools=table, limits=LIMITS,
                     fail_fast=False)[0]
    if isinstance(answer, LmqError):
        check_error(answer, source)
