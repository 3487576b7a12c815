"""A long fuzzing run (``make fuzz``): the properties of ``tests/fuzz`` with many more
examples, for a fixed time.

    python bench/fuzz.py [--minutes 10] [--e2e] [--out REPORT.md]

Properties, taken in turn until the time is spent (each round draws new examples):

* ``front``: random text, random bytes, generated programs and their mutants compile or
  fail with an ``LmqError`` whose span lies in the text, within 5 s each;
* ``runtime``: generated programs that compile run in the interpreter with random and
  hostile parameters, odd tools and random hole values, and end or fail with an
  ``LmqError`` within their limits;
* ``e2e`` (with ``--e2e``): the same end to end on ``tiny-random``.

Every falsifying example is printed and written to the report; the exit code is 1 when
there was one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from lmq_fuzz_programs import TEXT, Opaque, Sub, mutants, programs, values  # noqa: E402

from lmq.checks import compile_source  # noqa: E402
from lmq.errors import LmqError  # noqa: E402
from lmq.limits import Limits  # noqa: E402

LIMITS = Limits(steps=20_000, string_size=100_000, collection_size=10_000, int_digits=2_000,
                memory=50_000_000, timeout=2.0)
ROUND = 200  # examples per property per round


def check_error(error: LmqError, text: str) -> None:
    assert str(error)
    if error.span is not None:
        assert 0 <= error.span.start <= error.span.end <= len(text) + 1, error.span
        assert 1 <= error.span.line <= text.count("\n") + 2, error.span


def front(text: str) -> None:
    started = time.perf_counter()
    try:
        compile_source(text, "fuzz.lmq")
    except LmqError as error:
        check_error(error, text)
    assert time.perf_counter() - started < 5, "compiling took more than 5 s"


def tool_for(data: st.DataObject):
    def tool(*args, **kwargs):
        choice = data.draw(st.integers(0, 4))
        if choice == 0:
            raise ValueError("tool failure")
        return Opaque() if choice == 1 else Sub("sub") if choice == 2 else data.draw(values())
    return tool


def runtime(source: str, data: st.DataObject) -> None:
    run_program(source, data, e2e=False)


def end_to_end(source: str, data: st.DataObject) -> None:
    run_program(source, data, e2e=True)


def run_program(source: str, data: st.DataObject, e2e: bool) -> None:
    from lmq.runtime.interpreter.program import ProgramState

    try:
        checked = compile_source(source, "fuzz.lmq")
    except LmqError:
        return
    params = {name: data.draw(values()) for name in checked.params}
    tools = {name: tool_for(data) for name in checked.tools}
    tools.setdefault("upper", str.upper)
    tools.setdefault("check", lambda text, *args: bool(len(text) % 2))
    started = time.perf_counter()
    if e2e:
        from lmq.runtime.run import execute

        answer = execute(checked, [params], model="tiny-random", tools=tools, limits=LIMITS,
                         fail_fast=False)[0]
        if isinstance(answer, LmqError):
            check_error(answer, source)
        return
    try:
        state = ProgramState(checked.program, params, tools, LIMITS, output=lambda text: None)
        while state.run() is not None:
            state.fill(data.draw(TEXT | st.sampled_from(["12", "true", "3.5", "[1]"])))
            if data.draw(st.integers(0, 9)) == 0:
                state = state.fork()
    except LmqError as error:
        check_error(error, source)
    assert time.perf_counter() - started < 20, "a run took more than 20 s"


def properties(e2e: bool):
    common = dict(deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                         HealthCheck.data_too_large])
    texts = st.one_of(st.text(max_size=200), st.binary(max_size=120).map(
        lambda b: b.decode("utf-8", "replace")), programs(), mutants())
    yield "front", settings(max_examples=ROUND, **common)(given(texts)(front))
    yield "runtime", settings(max_examples=ROUND, **common)(
        given(programs(), st.data())(runtime))
    if e2e:
        yield "e2e", settings(max_examples=ROUND // 10, **common)(
            given(programs(), st.data())(end_to_end))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--e2e", action="store_true", help="also run on tiny-random")
    parser.add_argument("--out", help="also write the report (markdown) to this file")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.minutes * 60
    counts: dict[str, int] = {}
    failures: list[str] = []
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        for name, test in properties(args.e2e):
            if time.monotonic() >= deadline:
                break
            try:
                test()
            except Exception:  # noqa: BLE001 - a falsifying example: record, go on
                report = traceback.format_exc()
                failures.append(f"### {name} (round {rounds})\n\n```\n{report}\n```\n")
                print(report, file=sys.stderr)
            counts[name] = counts.get(name, 0) + (ROUND // 10 if name == "e2e" else ROUND)
            print(f"round {rounds}: {name} done ({counts[name]} examples so far, "
                  f"{len(failures)} failure(s))", flush=True)
    summary = (f"# Fuzzing run\n\n{args.minutes:g} minutes, {rounds} round(s); examples per "
               f"property: {', '.join(f'{k} {v}' for k, v in counts.items())}; "
               f"failures: {len(failures)}\n\n" + "\n".join(failures))
    if args.out:
        Path(args.out).write_text(summary, encoding="utf-8")
    print(summary.splitlines()[2])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
