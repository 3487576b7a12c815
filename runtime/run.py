"""Running a checked program: instances in, :class:`Result` s out.

This is where the caller's choices meet the program: which model (LANGUAGE.md section 9's
precedence), which decoder, which parameters and tools. Each input becomes one program
instance; ``sample(n)`` makes n rows of it, ``beam(n)`` forks it; all rows decode together.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from lmq import ir
from lmq.checks import CheckedProgram
from lmq.decoders import DecoderSpec
from lmq.errors import LmqError, LmqParameterError, did_you_mean
from lmq.limits import Limits
from lmq.result import Result
from lmq.runtime.decoding import Decoding, Row, seeded_generator
from lmq.runtime.interpreter import ProgramState
from lmq.runtime.models import load_backend

DEFAULT_MODEL = "smollm2"
_lock = threading.RLock()  # one decoding loop at a time per process: backends are stateful


def default_model(checked: CheckedProgram, model: Any = None) -> Any:
    """The caller's model, else the program's ``from`` clause, else ``LMQ_MODEL``, else
    the default model."""
    if model is not None:
        return model
    clause = checked.program.model
    if isinstance(clause, ir.Const) and isinstance(clause.value, str):
        return clause.value
    return os.environ.get("LMQ_MODEL") or DEFAULT_MODEL


def check_parameters(checked: CheckedProgram, params: Mapping[str, Any],
                     tools: Mapping[str, Any]) -> None:
    for name in checked.params:
        if name not in params:
            raise LmqParameterError(f"missing parameter '{name}'")
    for name in checked.tools:
        if name not in tools and name not in params:
            raise LmqParameterError(f"missing tool '{name}' (pass it with tools= or "
                                    "--tools MODULE:NAME)")
    expected = set(checked.params) | set(checked.tools)
    for name in params:
        if name not in expected:
            raise LmqParameterError(f"unknown parameter '{name}'",
                                    hint=did_you_mean(name, expected))


def execute(checked: CheckedProgram, inputs: Sequence[Mapping[str, Any]], *,
            model: Any = None, tools: Mapping[str, Any] | None = None,
            decoder: DecoderSpec | None = None, limits: Limits = Limits(),
            fail_fast: bool = True, output=None,
            on_event=None) -> list[Result | list[Result] | LmqError]:
    """Run one instance per input; each entry of the answer is a Result, a list of them
    (``sample(n>1)``, ``beam``), or — without ``fail_fast`` — the instance's error."""
    tools = dict(tools or {})
    decoder = decoder or checked.decoder
    default = default_model(checked, model)
    backends: dict[Any, Any] = {}

    def resolve(name: Any) -> Any:
        name = default if name is None else name
        if not isinstance(name, str):
            return name  # a backend object passed by the host
        if name not in backends:
            backends[name] = load_backend(name)
        return backends[name]

    answers: list[Any] = [None] * len(inputs)
    rows: list[Row] = []
    for index, params in enumerate(inputs):
        try:
            check_parameters(checked, params, tools)
        except LmqError as error:
            if fail_fast:
                raise
            answers[index] = error
            continue
        copies = decoder.n if decoder.name == "sample" else 1
        for copy in range(copies):
            state = ProgramState(checked.program, params, tools, limits, output)
            row = Row(index, state)
            if decoder.name == "sample":
                row.rng = seeded_generator(decoder.seed, index * copies + copy)
            rows.append(row)
    with _lock:
        decoding = Decoding(decoder, resolve, on_event)
        if decoder.name == "beam":
            from lmq.runtime.beam import run_beam

            finished = run_beam(decoding, rows, decoder.n, fail_fast)
        else:
            finished = decoding.run(rows, fail_fast)
    trace = [asdict(entry) for entry in decoding.trace]
    for index in range(len(inputs)):
        if answers[index] is not None:
            continue
        mine = [row for row in finished if row.instance == index]
        good = [row for row in mine if row.error is None]
        if not good:
            answers[index] = mine[0].error if mine else LmqError("no result")
            continue
        results = sorted((_result(row, trace) for row in good), key=lambda r: -r.score)
        many = decoder.name == "beam" or (decoder.name == "sample" and decoder.n > 1)
        answers[index] = results if many else results[0]
    return answers


def _result(row: Row, trace: list[dict[str, Any]]) -> Result:
    state = row.state
    return Result(variables=state.variables, values=state.values, prompt=state.prompt,
                  return_value=state.return_value, distribution=state.distribution,
                  logprobs=state.logprobs, score=row.score, trace=trace,
                  stats=row.counters.as_dict())
