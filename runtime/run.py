"""Running a checked program: instances in, :class:`Result` s out.

This is where the caller's choices meet the program: which model (LANGUAGE.md section 9's
precedence), which decoder, which parameters and tools. Each input becomes one program
instance; ``sample(n)`` makes n rows of it, ``beam(n)`` forks it; all rows decode together.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from lmq.checks import CheckedProgram
from lmq.config import Config, default_model_name, load_config
from lmq.decoders import DecoderSpec
from lmq.errors import LmqError, LmqLimitError, LmqParameterError, did_you_mean, is_out_of_memory
from lmq.limits import Limits
from lmq.result import Result, hole_constraints
from lmq.runtime.decoding.choosing import seeded_generator
from lmq.runtime.decoding.loop import Decoding, Row
from lmq.runtime.engine import Engine, shared_engine
from lmq.runtime.interpreter import boundary
from lmq.runtime.interpreter.budget import Budget
from lmq.runtime.interpreter.modules import clause_model
from lmq.runtime.interpreter.program import ProgramState
from lmq.runtime.specialists import ModelResolver


def default_model(checked: CheckedProgram, model: Any = None,
                  config: Config | None = None) -> Any:
    """The caller's model, else the program's ``from`` clause (a name, or LMQL's
    ``lmql.model("name")``), else ``LMQ_MODEL``, else
    the configuration's ``model`` (:mod:`lmq.config`), else the default model. Specialists
    and aliases are resolved later (:mod:`lmq.runtime.specialists`)."""
    if model is not None:
        return model
    return clause_model(checked.program.model) or default_model_name(config)


def check_parameters(checked: CheckedProgram, params: Mapping[str, Any],
                     tools: Mapping[str, Any]) -> None:
    """Every parameter and tool given, nothing else; a missing one points at its first use
    and suggests the closest unexpected name that was passed (a misspelt ``--arg``)."""
    expected = set(checked.params) | set(checked.tools)
    extra = [name for name in params if name not in expected]
    source = checked.program.source
    for name in checked.params:
        if name not in params:
            raise LmqParameterError(f"missing parameter '{name}'", checked.uses.get(name),
                                    source, hint=did_you_mean(name, extra))
    for name in checked.tools:
        if name not in tools and name not in params:
            raise LmqParameterError(f"missing tool '{name}' (pass it with tools= or "
                                    "--tools MODULE:NAME)", checked.uses.get(name), source)
    for name in params:
        if name not in expected:
            raise LmqParameterError(f"unknown parameter '{name}'",
                                    hint=did_you_mean(name, expected))


def execute(checked: CheckedProgram, inputs: Sequence[Mapping[str, Any]], *,
            model: Any = None, tools: Mapping[str, Any] | None = None,
            decoder: DecoderSpec | None = None, limits: Limits | None = None,
            fail_fast: bool = True, output=None,
            on_event=None, force_tokens: bool | None = None,
            stats: dict[str, Any] | None = None, trace: list[Any] | None = None,
            on_answer: Callable[[int, Any], None] | None = None,
            engine: Engine | None = None) -> list[Result | list[Result] | LmqError]:
    """Run one instance per input; each entry of the answer is a Result, a list of them
    (``sample(n>1)``, ``beam``), or — without ``fail_fast`` — the instance's error.
    ``force_tokens`` (default on, ``LMQ_FORCED_TOKENS=0`` turns it off) appends the
    tokens a constraint leaves no choice about without sampling them. A ``stats`` dict is
    filled with the whole run's counts (:func:`run_stats`): there ``forward_passes`` counts
    each forward pass once, however many rows shared it. A ``trace`` list is extended with
    the run's model calls (each result holds them too). ``on_answer(index, answer)`` is
    called for each instance as soon as it is finished (at the end for ``beam``), in the
    order instances finish; those early results carry no trace. The run loads its models
    into ``engine`` (default: :func:`~lmq.runtime.engine.shared_engine`) and holds its lock
    while it decodes."""
    if force_tokens is None:
        force_tokens = os.environ.get("LMQ_FORCED_TOKENS", "1") != "0"
    tools = dict(tools or {})
    limits = limits or Limits()
    engine = engine or shared_engine()
    config = load_config()
    resolve = ModelResolver(config, default_model(checked, model, config), engine)
    decoder = decoder or checked.decoder
    check_rows(checked, decoder, limits)
    answers: list[Any] = [None] * len(inputs)
    rows: list[Row] = []
    copies = decoder.n if decoder.name == "sample" else 1
    for index, params in enumerate(inputs):
        pool = Budget.pool_for(limits)  # the instance's rows hold limits.memory together
        try:
            check_parameters(checked, params, tools)
            states = [ProgramState(checked.program, params, tools, limits, output,
                                   Budget.start(limits, pool)) for _ in range(copies)]
        except LmqError as error:  # a missing parameter, one the program may not hold
            if fail_fast:
                raise
            answers[index] = error
            if on_answer is not None:
                on_answer(index, error)
            continue
        for copy, state in enumerate(states):
            row = Row(index, state)
            if decoder.name == "sample":
                row.rng = seeded_generator(decoder.seed, index * copies + copy)
            rows.append(row)
    many = decoder.name == "beam" or (decoder.name == "sample" and decoder.n > 1)
    constraints = hole_constraints(checked.program)
    listen = on_event
    if on_answer is not None and decoder.name != "beam":
        listen = _early_answers(rows, on_event, lambda index, mine: on_answer(
            index, _answer(mine, [], constraints, many)))
    started = time.perf_counter()
    with engine.lock:
        decoding = Decoding(decoder, resolve, engine.runtimes, listen, force_tokens)
        try:
            finished = _decode(decoding, decoder, rows, fail_fast)
        except BaseException:  # an error with fail_fast, Ctrl-C: free every row's KV cache
            for row in rows:
                decoding.release(row)
            raise
    calls = [asdict(entry) for entry in decoding.trace] + [
        {"decisions": d} for d in decoding.decisions]
    if trace is not None:
        trace.extend(calls)
    if stats is not None:
        stats.update(run_stats(decoding, finished, len(inputs),
                               time.perf_counter() - started))
    for index in range(len(inputs)):
        if answers[index] is not None:
            continue
        answers[index] = _answer([row for row in finished if row.instance == index], calls,
                                 constraints, many)
        if on_answer is not None and decoder.name == "beam":
            on_answer(index, answers[index])
    return answers


def check_rows(checked: CheckedProgram, decoder: DecoderSpec, limits: Limits) -> None:
    """``sample(n)`` and ``beam(n)`` rows of one instance: at most ``limits.rows``, refused
    before any is made."""
    if decoder.name in ("sample", "beam") and decoder.n > limits.rows:
        clause = checked.program.decoder
        span = clause.span if clause is not None and clause.name == decoder.name else None
        raise LmqLimitError(f"{decoder.name}(n={decoder.n:,}) would decode {decoder.n:,} rows "
                            f"per instance; the limit is {limits.rows:,} (limits.rows)", span,
                            checked.program.source)


def _decode(decoding: Decoding, decoder: DecoderSpec, rows: list[Row],
            fail_fast: bool) -> list[Row]:
    """Decode ``rows`` to the end. Running out of memory in a forward pass the rows share
    (the last line of defence) stops every row still running with an ``LmqLimitError``."""
    try:
        if decoder.name == "beam":
            from lmq.runtime.decoding.beam import run_beam

            return run_beam(decoding, rows, decoder.n, fail_fast)
        return decoding.run(rows, fail_fast)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        limit = LmqLimitError(f"ran out of memory while decoding {len(rows)} rows with "
                              f"{decoder.name} (lower the batch size or the decoder's n)")
        if fail_fast:
            raise limit from None
        for row in rows:
            if row.active:
                decoding.fail(row, limit)
        return rows


def _early_answers(rows: Sequence[Row], on_event: Callable[[dict], None] | None,
                   report: Callable[[int, list[Row]], None]) -> Callable[[dict], None]:
    """An event listener that passes events on to ``on_event`` and calls ``report(index,
    rows)`` once every row of an instance has finished or failed."""
    mine: dict[int, list[Row]] = {}
    for row in rows:
        mine.setdefault(row.instance, []).append(row)
    pending = {index: len(group) for index, group in mine.items()}

    def listen(event: dict) -> None:
        if on_event is not None:
            on_event(event)
        if event["event"] in ("done", "failed"):
            index = event["instance"]
            pending[index] -= 1
            if pending[index] == 0:
                report(index, mine[index])

    return listen


def _answer(mine: Sequence[Row], calls: list[dict[str, Any]],
            constraints: Mapping[str, str], many: bool) -> Result | list[Result] | LmqError:
    """One instance's answer from its rows: its results, best first (a list for
    branching decoders), or its first row's error."""
    good = [row for row in mine if row.error is None]
    if not good:
        return mine[0].error if mine and mine[0].error else LmqError("no result")
    results = sorted((_result(row, calls, constraints) for row in good),
                     key=lambda r: -r.score)
    return results if many else results[0]


def run_stats(decoding: Decoding, rows: Sequence[Row], instances: int,
              seconds: float) -> dict[str, Any]:
    """Counts for a whole run: ``forward_passes`` once per pass (shared by its rows), the
    token counts summed over every row (beam branches included)."""
    totals: dict[str, Any] = {"forward_passes": decoding.forward_passes}
    for row in rows:
        for key, value in row.counters.as_dict().items():
            if key != "forward_passes":
                totals[key] = totals.get(key, 0) + value
    for key in ("prompt_tokens", "generated_tokens", "forced_tokens", "tokens_reencoded",
                "billable_tokens"):
        totals.setdefault(key, 0)
    totals.update(instances=instances, rows=len(rows), model_calls=len(decoding.trace),
                  mask_ms=round(decoding.mask_seconds * 1000, 3),
                  seconds=round(seconds, 3))
    return totals


def _result(row: Row, trace: list[dict[str, Any]],
            constraints: Mapping[str, str] | None = None) -> Result:
    state = row.state
    assert isinstance(state, ProgramState)
    return Result(variables=state.variables, values=boundary.hand_out(state.values),
                  prompt=state.prompt, return_value=boundary.hand_out(state.return_value),
                  distribution=state.distribution,
                  logprobs=state.logprobs, score=row.score, trace=trace,
                  stats=row.counters.as_dict(),
                  segments=[(segment.text, segment.hole) for segment in state.context],
                  constraints=dict(constraints or {}))
