"""Running out of memory is a clear ``LmqError``, never a crash (issue: bound what
compile and decoding allocate before allocating; the last line of defence turns
``MemoryError`` and allocator failures into ``LmqLimitError``).

The attacks run in child processes under a 2 GiB address-space limit
(``resource.setrlimit(RLIMIT_AS)``), so a bound that does not hold shows as a real
``MemoryError`` or a killed process, deterministically and fast. One child runs all API
cases in turn and reports each as a JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap

import pytest

ADDRESS_SPACE = 2 * 2**30
LMQ = [sys.executable, "-m", "lmq"]

CHILD = textwrap.dedent('''
    import json, sys, traceback
    import lmq

    def hog(gigabytes):
        return len(bytearray(int(gigabytes * 2**30)))

    def torch_hog(gigabytes):
        import torch
        return int(torch.empty(int(gigabytes * 2**30 // 4)).numel())

    def allocator_failure():
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
                           "can't allocate memory")

    TOOLS = {"hog": hog, "torch_hog": torch_hog, "allocator_failure": allocator_failure}
    lmq.query('"[A]" where len(TOKENS(A)) < 2', model="tiny-random")()  # load it first

    for case in json.loads(sys.stdin.read()):
        try:
            limits = lmq.Limits(memory=case["memory"]) if "memory" in case else None
            q = lmq.query(case["source"], model="tiny-random", tools=TOOLS, limits=limits)
            if "batch" in case:
                answers = q.batch(case["batch"])
                outcome = {"kind": "batch", "message": [
                    type(a).__name__ + ": " + a.message if isinstance(a, lmq.LmqError)
                    else "ok" for a in answers]}
            else:
                q(**case.get("params", {}))
                outcome = {"kind": "ok", "message": ""}
        except lmq.LmqError as error:
            outcome = {"kind": type(error).__name__, "message": str(error)}
        except BaseException as error:
            outcome = {"kind": "CRASH " + type(error).__name__,
                       "message": traceback.format_exc()}
        print(json.dumps({"name": case["name"], **outcome}), flush=True)
''')

SMALL = "limits.memory"  # a parameter entry that is the run's memory limit instead
LONG_LINE = "x = " + "+".join(["1"] * 600_000) + "\n"
LABELS = "[" + ", ".join(repr(f"label number {i}") for i in range(100_000)) + "]"
CASES = [
    # (name, source, params, expected kind, text the message must hold)
    ("beam of 100,000", 'beam(n=100000)\n    "[A]" where len(TOKENS(A)) < 3\n', {},
     "LmqLimitError", "beam(n=100,000) would decode 100,000 rows per instance; the limit is "
     "256 (limits.rows)"),
    ("sample of 10,000,000", 'sample(n=10000000)\n    "[A]"\n', {}, "LmqLimitError",
     "(limits.rows)"),
    ("a megabyte expression line", LONG_LINE, {}, "LmqCompileError",
     "the program has 1,200,004 characters; the compile budget is 1,000,000"),
    ("100,000 labels written out", f'"[L]" where LABELS(L, {LABELS})\n', {},
     "LmqCompileError", "the compile budget is 1,000,000"),
    ("100,000 labels as a parameter", '"Pick:[L]" where LABELS(L, labels)\n',
     {"labels": [f"label number {i}" for i in range(100_000)]}, "AutomatonLimitError",
     "LABELS over 100,000 labels"),
    ("a distribution over 100,000 values",
     'argmax\n    "Pick:[A]"\ndistribution\n    A in vs\n',
     {"vs": [f" value {i}" for i in range(100_000)]}, "LmqLimitError",
     "scoring the 100,000 values of the distribution of hole 'A' would hold"),
    ("big integers", "b = 7 ** 11000\nxs = [b + i for i in range(600000)]\n", {},
     "LmqLimitError", "(limits.memory)"),
    ("twelve samples of 240 MB", 'sample(n=12)\n    xs = ["a" * 1000000 + str(i) for i in '
     'range(240)]\n    "[A]" where len(TOKENS(A)) < 2\n', {}, "LmqLimitError",
     "(limits.memory)"),
    ("eight beams of 100 MB, 400 MB together", 'beam(n=8)\n    xs = ["a" * 1000000 + str(i) '
     'for i in range(50)]\n    "[A]" where len(TOKENS(A)) < 3\n    ys = [x + "b" for x in xs]'
     '\n    zs = [y + "c" for y in ys]\n', {SMALL: 400_000_000}, "LmqLimitError",
     "more than 400,000,000 bytes (limits.memory)"),
    ("eight samples of 100 MB, 400 MB together", 'sample(n=8)\n    xs = ["a" * 1000000 + '
     'str(i) for i in range(100)]\n    "[A]" where len(TOKENS(A)) < 2\n', {SMALL: 400_000_000},
     "LmqLimitError", "more than 400,000,000 bytes (limits.memory)"),
    ("a tool that exhausts memory", "n = hog(3)\n", {}, "LmqLimitError",
     "ran out of memory in 'hog'"),
    ("torch's allocator fails", "n = torch_hog(3)\n", {}, "LmqLimitError",
     "ran out of memory in 'torch_hog'"),
    ("an allocator failure", "allocator_failure()\n", {}, "LmqLimitError",
     "ran out of memory in 'allocator_failure'"),
]
BATCH = ('"{n}[A]" where len(TOKENS(A)) < 2\nif n == 2:\n    hog(3)\n',
         [{"n": 1}, {"n": 2}, {"n": 3}])


def run_child(cases: list[dict]) -> dict[str, dict]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    result = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(cases),
                            capture_output=True, text=True, preexec_fn=limit, timeout=900,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    outcomes = {}
    for line in result.stdout.splitlines():
        outcome = json.loads(line)
        outcomes[outcome.pop("name")] = outcome
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(outcomes) == len(cases), (result.returncode, result.stderr[-3000:])
    return outcomes


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict]:
    cases = [{"name": name, "source": source,
              "params": {k: v for k, v in params.items() if k != SMALL},
              **({"memory": params[SMALL]} if SMALL in params else {})}
             for name, source, params, _, _ in CASES]
    cases.append({"name": "batch", "source": BATCH[0], "batch": BATCH[1]})
    return run_child(cases)


@pytest.mark.parametrize("name, kind, text", [(c[0], c[3], c[4]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_memory_attacks_end_in_a_clear_error(outcomes, name, kind, text):
    outcome = outcomes[name]
    assert outcome["kind"] == kind, outcome
    assert text in outcome["message"], outcome["message"]


def test_in_a_batch_only_the_line_that_ran_out_fails(outcomes):
    assert outcomes["batch"]["kind"] == "batch"
    first, second, third = outcomes["batch"]["message"]
    assert first == "ok" and third == "ok"
    assert second.startswith("LmqLimitError: ran out of memory in 'hog'")


def cli(args: list[str], cwd, stdin: str | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    return subprocess.run([*LMQ, *args], cwd=cwd, capture_output=True, text=True,
                          preexec_fn=limit, timeout=600, input=stdin,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_inputs_from_dev_zero(tmp_path):
    (tmp_path / "p.lmq").write_text('"{x}[A]" where len(TOKENS(A)) < 2\n')
    result = cli(["run", "p.lmq", "--model", "tiny-random", "--inputs", "/dev/zero"], tmp_path)
    assert result.returncode == 1, result.stderr
    assert "line 1 of the inputs goes on for more than 100,000,000 bytes without a line " \
        "end; stopped reading" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_over_long_input_line_is_an_error_line(tmp_path):
    (tmp_path / "p.lmq").write_text('"{x}[A]" where len(TOKENS(A)) < 2\n')
    data = '{"x": 1}\n{"x": "' + "a" * 10_000_001 + '"}\n{"x": 3}\n'
    (tmp_path / "in.jsonl").write_text(data)
    result = cli(["run", "p.lmq", "--model", "tiny-random", "--inputs", "in.jsonl"], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["line"] for line in lines] == [1, 2, 3]
    assert lines[1]["error"] == "input error: longer than 10,000,000 bytes"
    assert "result" in lines[0] and "result" in lines[2]


def test_a_huge_beam_through_the_command_line(tmp_path):
    (tmp_path / "p.lmq").write_text('"[A]" where len(TOKENS(A)) < 3\n')
    result = cli(["run", "p.lmq", "--model", "tiny-random", "--decoder", "beam(n=100000)"],
                 tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "(limits.rows)" in result.stderr


def test_an_ended_instance_is_freed_without_waiting_for_the_collector():
    """An instance refers to itself only weakly (its functions, lambdas, LMQL's
    ``context``) and a failed row keeps its error without the traceback: ended instances
    do not pile up as garbage for the cycle collector, holding big values of failed rows
    until a collection."""
    import gc

    import lmq
    from lmq.runtime.interpreter.program import ProgramState

    def alive() -> int:
        return sum(type(o) is ProgramState for o in gc.get_objects())

    source = ('def f(x):\n    return x + 1\ng = lambda y: f(y)\n'
              '"[A]" where len(TOKENS(A)) < 2\nn = g(1) + 1 / 0\n')
    query = lmq.query(source, model="tiny-random")
    gc.collect()
    gc.disable()
    try:
        before = alive()
        for _ in range(3):
            try:
                query()
            except lmq.LmqRuntimeError as error:  # its traceback goes with it
                assert "division by zero" in error.message
        assert alive() <= before + 1  # the last run's rows may wait for the caller's frame
    finally:
        gc.enable()
