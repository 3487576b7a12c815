"""The ``lmq`` command line: single runs, ``--inputs`` batches, check, models, version,
logging. In-process through ``main`` where possible (the model loads once), in a
subprocess for signals and terminals."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from lmq.cli import main

PROGRAM = '"Q: {x}\\nA:[A]" where len(TOKENS(A)) == 3\n'
LMQ = [sys.executable, "-m", "lmq"]


@pytest.fixture
def program(tmp_path, monkeypatch):
    for name in ("LMQ_MODEL", "LMQ_DECODER", "LMQ_CONFIG", "LMQ_BATCH_SIZE", "LMQ_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "p.lmq"
    path.write_text(PROGRAM)
    return path


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_inputs_one_line_per_input_in_order(program, tmp_path, capsys):
    data = (b'\xef\xbb\xbf{"x": "one"}\r\n'   # BOM and CRLF
            b"\r\n"                           # blank: skipped
            b'{"x": \n'                       # bad JSON
            b'{"y": 2}\n'                     # runs, fails: unknown and missing parameter
            b"\xff\xfe\n"                     # not UTF-8
            b"[1, 2]\n"                       # not an object
            b"   \n"
            b'{"x": "last"}')                 # no final newline
    (tmp_path / "in.jsonl").write_bytes(data)
    code = main(["run", str(program), "--model", "tiny-random", "--inputs", "in.jsonl",
                 "--batch-size", "2"])
    captured = capsys.readouterr()
    out = lines_of(captured.out)
    assert code == 1
    assert [r["line"] for r in out] == [1, 3, 4, 5, 6, 8]
    assert out[0]["result"]["prompt"].startswith("Q: one\nA:")
    assert "trace" not in out[0]["result"]
    assert out[1]["error"].startswith("input error: not valid JSON")
    assert out[2]["error"].startswith("error: ") and "parameter" in out[2]["error"]
    assert out[3]["error"].startswith("input error: not valid UTF-8")
    assert out[4]["error"] == "input error: not a JSON object of parameters"
    assert out[5]["result"]["prompt"].startswith("Q: last\nA:")
    # every failure: one line, one shape, on stdout and stderr; then one summary line
    errors = [r for r in out if "error" in r]
    assert all("\n" not in r["error"] and re.fullmatch(r"[a-z ]*error: .+", r["error"])
               for r in errors)
    err = captured.err.splitlines()
    assert [line for line in err if line.startswith("lmq: line ")] == [
        f"lmq: line {r['line']}: {r['error']}" for r in errors]
    assert err[-1] == "6 lines: 2 ok, 4 failed (lines 3, 4, 5, 6)"


def test_inputs_summary_counts_and_quiet_leaves_it_out(program, tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text('{"x": "a"}\n')
    assert main(["run", str(program), "--model", "tiny-random", "--inputs", "in.jsonl"]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == "1 line: 1 ok, 0 failed"
    assert main(["run", str(program), "--model", "tiny-random", "--inputs", "in.jsonl",
                 "-q"]) == 0
    assert "ok," not in capsys.readouterr().err


def test_inputs_all_good_exit_zero_with_output_file_and_trace(program, tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"x": str(i)}) + "\n"
                                               for i in range(5)))
    code = main(["run", str(program), "--model", "tiny-random", "--inputs", "in.jsonl",
                 "--output", "out.jsonl", "--trace", "trace.json", "--batch-size", "3"])
    assert code == 0
    assert capsys.readouterr().out == ""
    out = lines_of((tmp_path / "out.jsonl").read_text())
    assert [r["line"] for r in out] == [1, 2, 3, 4, 5]
    assert [r["result"]["prompt"][:4] for r in out] == [f"Q: {i}" for i in range(5)]
    trace = json.loads((tmp_path / "trace.json").read_text())
    # two lockstep groups (3 + 2 instances), three tokens each
    assert trace["stats"]["forward_passes"] == 6
    assert [call["rows"] for call in trace["calls"]] == [3, 3, 3, 2, 2, 2]


def test_arg_gives_defaults_for_every_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.lmq").write_text('"{greeting}, {x}:[A]" where len(TOKENS(A)) == 1\n')
    (tmp_path / "in.jsonl").write_text('{"x": "a"}\n{"x": "b", "greeting": "Bye"}\n')
    assert main(["run", "two.lmq", "--model", "tiny-random", "--inputs", "in.jsonl",
                 "--arg", "greeting=Hi"]) == 0
    prompts = [r["result"]["prompt"] for r in lines_of(capsys.readouterr().out)]
    assert prompts[0].startswith("Hi, a:") and prompts[1].startswith("Bye, b:")


def test_single_run_json_and_trace(program, tmp_path, capsys):
    code = main(["run", str(program), "--model", "tiny-random", "--arg", "x=hello", "--json",
                 "--trace", "t.json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompt"].startswith("Q: hello\nA:")
    calls = json.loads((tmp_path / "t.json").read_text())["calls"]
    assert len(calls) == 3 and calls[0]["model"] == "tiny-random"


def test_decoder_flag(program, capsys):
    assert main(["run", str(program), "--model", "tiny-random", "--arg", "x=a",
                 "--decoder", "sample(n=2, seed=4)"]) == 0
    assert capsys.readouterr().out.count("--- result") == 2
    assert main(["run", str(program), "--decoder", "sampel"]) == 2
    assert "did you mean 'sample'" in capsys.readouterr().err
    assert main(["run", str(program), "--decoder", "sampel(n=2)"]) == 2
    err = capsys.readouterr().err
    assert "<decoder>:1:1: error: unknown decoder 'sampel' (did you mean 'sample'?)" in err
    assert '""' not in err  # the text lmq wraps the decoder in is not shown


def test_a_missing_parameter_points_at_its_use_and_suggests_the_arg(program, capsys):
    assert main(["run", str(program), "--model", "tiny-random", "--arg", "xx=a"]) == 2
    err = capsys.readouterr().err
    assert ":1:6: error: missing parameter 'x' (did you mean 'xx'?)" in err
    assert "^" in err and "Traceback" not in err


def test_tools_from_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "helpers.py").write_text("def shout(s):\n    return s.upper()\n")
    (tmp_path / "t.lmq").write_text('"{shout(x)}[A]" where len(TOKENS(A)) == 1\n')
    assert main(["run", "t.lmq", "--model", "tiny-random", "--arg", "x=hey",
                 "--tools", "helpers.py:shout"]) == 0
    assert capsys.readouterr().out.startswith("HEY")
    assert main(["run", "t.lmq", "--model", "tiny-random", "--arg", "x=hey",
                 "--tools", "helpers:shout"]) == 0
    assert main(["run", "t.lmq", "--tools", "nowhere.py:shout"]) == 2


def test_usage_errors(program, capsys):
    assert main(["run", str(program), "--output", "o.jsonl"]) == 2
    assert main(["run", str(program), "--inputs", "missing.jsonl"]) == 2
    assert main(["run", str(program), "--inputs", "x", "--batch-size", "0"]) == 2
    assert main(["run", "nope.lmq"]) == 2
    err = capsys.readouterr().err
    assert "need --inputs" in err and "cannot read" in err and "no such file" in err
    assert "Traceback" not in err


def test_check_models_version(program, capsys, tmp_path):
    assert main(["check", str(program)]) == 0
    assert "parameters: x" in capsys.readouterr().out
    (tmp_path / "lmq.toml").write_text('model = "fast"\n[models]\nfast = "tiny-random"\n'
                                       '[specialists.law]\nmodel = "fast"\n'
                                       'description = "Contracts and courts."\n')
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2" in out and "tiny-random" in out
    assert "default model: fast" in out and "fast -> tiny-random" in out
    assert "law -> fast: Contracts and courts." in out
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("lmq ")


def test_logging_levels(program, tmp_path, monkeypatch):
    (tmp_path / "in.jsonl").write_text('{"x": "a"}\n{}\n')
    base = ["run", str(program), "--model", "tiny-random", "--inputs", "in.jsonl"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    quiet = subprocess.run([*LMQ, "-q", *base], capture_output=True, text=True, env=env,
                           check=False)
    verbose = subprocess.run([*LMQ, *base, "-v"], capture_output=True, text=True, env=env,
                           check=False)
    assert quiet.returncode == verbose.returncode == 1
    assert "lmq: INFO: running 2 instance(s)" in verbose.stderr
    assert "lmq: line 2: error: missing parameter 'x'" in quiet.stderr
    assert "INFO" not in quiet.stderr
    by_env = subprocess.run([*LMQ, *base], capture_output=True, text=True,
                            env={**env, "LMQ_LOG_LEVEL": "info"}, check=False)
    assert "lmq: INFO:" in by_env.stderr
    bad = subprocess.run([*LMQ, "version"], capture_output=True, text=True,
                         env={**env, "LMQ_LOG_LEVEL": "loud"}, check=False)
    assert bad.returncode == 2 and "unknown log level" in bad.stderr


def test_ctrl_c_flushes_finished_lines_and_exits_130(tmp_path, spawn):
    (tmp_path / "slow.lmq").write_text('"{x}:[A]" where len(TOKENS(A)) == 60\n')
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"x": str(i)}) + "\n"
                                               for i in range(400)))
    out = tmp_path / "out.jsonl"
    process = spawn(
        [*LMQ, "run", "slow.lmq", "--model", "tiny-random", "--inputs", "in.jsonl",
         "--output", str(out), "--batch-size", "1"], cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    written = lines_of(out.read_text())
    assert 2 <= len(written) < 400
    assert [r["line"] for r in written] == list(range(1, len(written) + 1))


def test_progress_bar_on_a_terminal(tmp_path, spawn):
    (tmp_path / "p.lmq").write_text(PROGRAM)
    (tmp_path / "in.jsonl").write_text('{"x": "a"}\n{"x": "b"}\n{"x": "c"}\n')
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = spawn(
        [*LMQ, "run", "p.lmq", "--model", "tiny-random", "--inputs", "in.jsonl",
         "--output", "out.jsonl", "--batch-size", "1"], cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=secondary,
        stdout=subprocess.DEVNULL)
    os.close(secondary)
    seen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    process.wait(timeout=60)
    os.close(primary)
    assert process.returncode == 0
    assert b"3/3" in seen and b"line" in seen  # tqdm's counter and unit
    # and none when stderr is not a terminal (the other tests): nothing but results


def test_python_dash_m_matches_console_script(program):
    result = subprocess.run([*LMQ, "check", str(program)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "ok" in result.stdout
    assert Path(program).exists()
