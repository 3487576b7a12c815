"""Attack programs and bad inputs through the command line: each ends with a clear error
and exit code (2 for compile-time refusals, 1 for run-time ones), no traceback, and no file
written outside the output path. Ctrl-C during a single run exits with 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lmq.cli import main

LMQ = [sys.executable, "-m", "lmq"]

ATTACKS = [
    # (program, exit code, rule named on stderr)
    ("import os\n", 2, "'import os' is not allowed in lmq programs (sandbox)"),
    ('x = open("pwned", "w")\n"[A]"\n', 2, "'open' is not available in lmq programs (sandbox)"),
    ('x = "".__class__.__mro__[1].__subclasses__()\n', 2, "is not available in lmq programs"),
    ('"{x.__class__}"\n', 2, "'__class__' is not available"),
    ('x = getattr(1, "real")\n', 2, "'getattr' is not available"),
    ('x = "{}".format(1)\n', 2, "'.format' is not available"),
    ('from lmq.runtime.backends.hf_models import load_model\n', 2, "importing from 'lmq.runtime.backends.hf_models'"),
    ('"{x!r}"\n', 2, "conversions such as '!r' are not available"),
    ('x = "a" * 10**100\n"[A]"\n', 1, "(limits.string_size)"),
    ('x = range(10**12)\n', 1, "(limits.collection_size)"),
    ('x = 2 ** 10**10\n', 1, "(limits.int_digits)"),
    ('while True:\n    pass\n', 1, "(limits.steps)"),
    ('x = [1]\nfor i in range(80):\n    x = [x, x]\n"{x}[A]"\n', 1, "(limits.string_size)"),
    ('x = []\nfor i in range(5000):\n    x = [x]\nreturn x\n', 1, "(limits.nesting)"),
    ('query f(n):\n    "[A: f(n)]"\n"[R: f(1)]"\n', 1, "(limits.depth)"),
    ('"[A]" where REGEX(A, r"(?:(?:x{0,100}){0,100}){0,100}")\n', 2,
     "constraint automaton too large"),
    ('x = "\\ud800"\n"{x}[A]"\n', 1, "the prompt text contains the lone surrogate U+D800"),
    ('return 10 ** 5000\n', 1, "the return value holds an integer of more than 4,300 digits"),
    ('"[A]" where A in []\n', 2, "no value of 'A' can satisfy"),
    ('"[A" \n', 2, "error"),
    ("\x00\xff\ufeff'''", 2, "error"),
]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    for name in ("LMQ_MODEL", "LMQ_DECODER", "LMQ_CONFIG", "LMQ_BATCH_SIZE", "LMQ_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("source, code, rule", ATTACKS)
def test_attack_programs_through_main(scratch, capsys, source, code, rule):
    (scratch / "attack.lmq").write_text(source, encoding="utf-8", errors="surrogatepass")
    assert main(["run", "attack.lmq", "--model", "tiny-random"]) == code
    captured = capsys.readouterr()
    assert rule in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert sorted(p.name for p in scratch.iterdir()) == ["attack.lmq"]


def test_attack_lines_in_a_batch(scratch, capsys):
    """Hostile inputs for one program: each line gets its own error line; the others run."""
    (scratch / "p.lmq").write_text('"{x + 1}:{y * 2}[A]" where len(TOKENS(A)) < 2\n')
    lines = [
        {"x": 1, "y": "ab"},
        {"x": "s", "y": 1},                        # wrong type
        {"x": 1, "y": "a" * 6_000_000},            # too large once doubled
        {"x": 1},                                  # missing parameter
        {"x": 1, "y": 1, "__class__": 1},          # unknown parameter
        {"x": 10**4000, "y": 1},                   # huge but legal integer
        {"x": 1, "y": [[[[[]]]]]},
    ]
    data = "\n".join(json.dumps(line) for line in lines) + "\n{not json\n[1]\n"
    (scratch / "in.jsonl").write_text(data)
    code = main(["run", "p.lmq", "--model", "tiny-random", "--inputs", "in.jsonl",
                 "--output", "out.jsonl"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    out = [json.loads(line) for line in (scratch / "out.jsonl").read_text().splitlines()]
    assert [r["line"] for r in out] == list(range(1, 10))
    assert out[0]["result"]["prompt"].startswith("2:abab")
    assert "can only concatenate str" in out[1]["error"]
    assert "(limits.string_size)" in out[2]["error"]
    assert "missing parameter 'y'" in out[3]["error"]
    assert "unknown parameter '__class__'" in out[4]["error"]
    assert out[5]["result"]["prompt"].startswith(str(10**4000 + 1))
    assert out[6]["result"]["prompt"].startswith("2:[[[[[]]]], [[[[]]]]]")
    assert "not valid JSON" in out[7]["error"] and "not a JSON object" in out[8]["error"]
    assert sorted(p.name for p in scratch.iterdir()) == ["in.jsonl", "out.jsonl", "p.lmq"]


def test_a_subprocess_attack_has_no_traceback(tmp_path):
    (tmp_path / "attack.lmq").write_text('x = t\ny = t.tofile("pwned")\n"[A]"\n')
    result = subprocess.run([*LMQ, "run", "attack.lmq", "--model", "tiny-random", "--arg",
                             "t=1.5"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert result.returncode == 2, result.stderr  # no plain value has .tofile: compile time
    assert "no plain value has the attribute '.tofile'" in result.stderr
    assert "attack.lmq:2:5" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attack.lmq"]


def test_ctrl_c_during_a_single_run_exits_130(tmp_path, spawn):
    """SIGINT while the program loops (no hole yet) and while it decodes."""
    (tmp_path / "tools.py").write_text(
        "import sys\n"
        "def ready():\n"
        "    print('READY', file=sys.stderr, flush=True)\n"
        "    return 1\n")
    (tmp_path / "slow.lmq").write_text(
        "ready()\nn = 0\nwhile n >= 0:\n    n += 1\n")
    process = spawn(
        [*LMQ, "run", "slow.lmq", "--model", "tiny-random", "--tools", "tools.py:ready"],
        cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    line = ""
    while time.monotonic() < deadline and "READY" not in line:
        line = process.stderr.readline()
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err


def test_json_that_python_cannot_hold(scratch, capsys):
    """Integers past Python's conversion limit and deeply nested lines are bad lines, not
    crashes; a deeply nested --arg is taken as a string."""
    (scratch / "p.lmq").write_text('"{x}[A]" where len(TOKENS(A)) < 2\n')
    (scratch / "in.jsonl").write_text('{"x": ' + "9" * 5000 + '}\n' + "[" * 100_000 + "\n"
                                      + '{"x": 1}\n')
    assert main(["run", "p.lmq", "--model", "tiny-random", "--inputs", "in.jsonl",
                 "--output", "out.jsonl", "--arg", "x=" + "[" * 100_000]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    out = [json.loads(line) for line in (scratch / "out.jsonl").read_text().splitlines()]
    assert [r["line"] for r in out] == [1, 2, 3]
    assert out[0]["error"].startswith("input error: not usable JSON")
    assert out[1]["error"] == "input error: not usable JSON: nested too deeply"
    assert out[2]["result"]["prompt"].startswith("1")


def test_limit_flags(scratch, capsys):
    (scratch / "loop.lmq").write_text('for i in range(100):\n    x = i\n"[A]"\n')
    assert main(["run", "loop.lmq", "--model", "tiny-random", "--max-steps", "50"]) == 1
    assert "(limits.steps)" in capsys.readouterr().err
    for flag, value in (("--timeout", "0"), ("--max-steps", "-1"), ("--timeout", "nan")):
        assert main(["run", "loop.lmq", "--model", "tiny-random", flag, value]) == 2
        assert f"{flag} must be a positive" in capsys.readouterr().err
