"""Faults around the command line: outputs that would overwrite inputs, full disks,
broken tool files, bad environment, repeated Ctrl-C, seeds past 64 bits, pickled model
weights. Each ends with a clear error and its exit code, no traceback, no partial line."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from lmq.cli import main

LMQ = [sys.executable, "-m", "lmq"]
PROGRAM = '"{x}[A]" where len(TOKENS(A)) < 2\n'


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    for name in ("LMQ_MODEL", "LMQ_DECODER", "LMQ_CONFIG", "LMQ_BATCH_SIZE", "LMQ_LOG_LEVEL",
                 "LMQ_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.lmq").write_text(PROGRAM)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"x": i}) + "\n" for i in range(3)))
    return tmp_path


def lmq_run(*args: str, cwd, env=None, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([*LMQ, "run", "p.lmq", "--model", "tiny-random", *args], cwd=cwd,
                          stderr=subprocess.PIPE, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, **kwargs)


# ------------------------------------------------------------------ overwrites


@pytest.mark.parametrize("args, rule", [
    (["--trace", "p.lmq", "--arg", "x=1"], "--trace p.lmq is the program (p.lmq)"),
    (["--inputs", "in.jsonl", "--output", "in.jsonl"], "--output in.jsonl is --inputs"),
    (["--inputs", "in.jsonl", "--output", "link.jsonl"], "--output link.jsonl is --inputs"),
    (["--inputs", "in.jsonl", "--output", "hard.jsonl"], "--output hard.jsonl is --inputs"),
    (["--inputs", "in.jsonl", "--output", "tools.py", "--tools", "tools.py:f"],
     "--output tools.py is --tools"),
    (["--inputs", "in.jsonl", "--output", "out.jsonl", "--trace", "out.jsonl"],
     "--output out.jsonl is --trace"),
])
def test_an_output_that_is_an_input_is_refused(scratch, capsys, args, rule):
    (scratch / "link.jsonl").symlink_to(scratch / "in.jsonl")
    os.link(scratch / "in.jsonl", scratch / "hard.jsonl")
    (scratch / "tools.py").write_text("def f():\n    return 1\n")
    (scratch / "out.jsonl").write_text("old\n")
    before = {p.name: p.read_bytes() for p in scratch.iterdir()}
    assert main(["run", "p.lmq", "--model", "tiny-random", *args]) == 2
    captured = capsys.readouterr()
    assert rule in captured.err and "Traceback" not in captured.err
    assert {p.name: p.read_bytes() for p in scratch.iterdir()} == before


# ------------------------------------------------------------------ full disks


def test_a_full_output_device(scratch):
    result = lmq_run("--inputs", "in.jsonl", "--output", "/dev/full", cwd=scratch)
    assert result.returncode == 1
    assert "cannot write /dev/full: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr


def test_standard_output_on_a_full_device(scratch):
    with open("/dev/full", "w") as full:
        result = lmq_run("--arg", "x=1", cwd=scratch, stdout=full)
    assert result.returncode == 1
    assert "cannot write the output: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_a_disk_that_fills_up_leaves_whole_lines(scratch):
    """RLIMIT_FSIZE makes a write past 1,500 bytes fail as a full disk would (SIGXFSZ is
    ignored, so the write gets EFBIG)."""
    lines = "".join(json.dumps({"x": i}) + "\n" for i in range(40))
    (scratch / "in.jsonl").write_text(lines)

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))

    env = {"LMQ_CACHE_DIR": os.environ.get("LMQ_CACHE_DIR") or
           os.path.expanduser("~/.cache/lmq")}
    result = lmq_run("--inputs", "in.jsonl", "--output", "out.jsonl", cwd=scratch, env=env,
                     preexec_fn=small_disk)
    assert result.returncode == 1, result.stderr
    assert "cannot write out.jsonl: File too large" in result.stderr
    assert "Traceback" not in result.stderr
    written = (scratch / "out.jsonl").read_text()
    assert written and written.endswith("\n")
    assert [json.loads(line)["line"] for line in written.splitlines()] == \
        list(range(1, len(written.splitlines()) + 1))


def test_a_trace_that_cannot_be_written(scratch, capsys):
    assert main(["run", "p.lmq", "--model", "tiny-random", "--arg", "x=1", "--trace",
                 "missing/dir/trace.json"]) == 1
    captured = capsys.readouterr()
    assert "cannot write the trace missing/dir/trace.json" in captured.err
    assert "Traceback" not in captured.err


# ------------------------------------------------------------------ tools and environment


@pytest.mark.parametrize("code, rule", [
    ("def f(:\n", "bad.py:1: SyntaxError: invalid syntax"),
    ("x = 1\nraise RuntimeError('at import')\n", "bad.py:2: RuntimeError: at import"),
    ("import no_such_module_anywhere\n", "No module named 'no_such_module_anywhere'"),
])
def test_tool_files_that_do_not_load(scratch, capsys, code, rule):
    (scratch / "bad.py").write_text(code)
    assert main(["run", "p.lmq", "--model", "tiny-random", "--arg", "x=1", "--tools",
                 "./bad.py:f"]) == 2
    captured = capsys.readouterr()
    assert "cannot load tool './bad.py:f'" in captured.err and rule in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("env, rule", [
    ({"LMQ_DEVICE": "bogus"}, "unknown device 'bogus' (LMQ_DEVICE or device=)"),
    ({"LMQ_CACHE_DIR": "{scratch}/p.lmq"}, "is not a folder"),
])
def test_bad_environment(scratch, env, rule):
    env = {key: value.format(scratch=scratch) for key, value in env.items()}
    result = lmq_run("--arg", "x=1", cwd=scratch, env=env)
    assert result.returncode == 1, result.stderr
    assert rule in result.stderr and "Traceback" not in result.stderr


def test_seeds_past_64_bits(scratch, capsys):
    assert main(["run", "p.lmq", "--model", "tiny-random", "--arg", "x=1", "--seed",
                 str(10**23)]) == 2
    assert "the seed must be an integer from 0 to 2**63 - 1" in capsys.readouterr().err
    (scratch / "s.lmq").write_text(f'sample(n=1, seed={10**29})\n    "[A]"\n')
    assert main(["run", "s.lmq", "--model", "tiny-random"]) == 2
    assert "'seed' must be an integer from 0 to 2**63 - 1" in capsys.readouterr().err


def test_pickled_weights_are_not_loaded(scratch, capsys):
    torch = pytest.importorskip("torch")
    folder = scratch / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    canary = scratch / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(canary), "w"))

    torch.save({"weight": Payload()}, folder / "pytorch_model.bin")
    assert main(["run", "p.lmq", "--model", f"hf:{folder}", "--arg", "x=1"]) == 1
    captured = capsys.readouterr()
    assert "holds its weights as pickles (pytorch_model.bin), which lmq does not load" \
        in captured.err
    assert not canary.exists()


def test_repeated_ctrl_c_while_stopping(scratch):
    """The first Ctrl-C stops the run (exit 130, finished lines kept); the ones that
    follow while it stops and Python exits print nothing."""
    (scratch / "tools.py").write_text("import sys\ndef ready():\n"
                                      "    print('READY', file=sys.stderr, flush=True)\n"
                                      "    return 1\n")
    (scratch / "slow.lmq").write_text('ready()\n"Story {n}:[A]" where len(TOKENS(A)) < 200\n')
    (scratch / "in.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(50)))
    process = subprocess.Popen(
        [*LMQ, "run", "slow.lmq", "--model", "tiny-random", "--tools", "tools.py:ready",
         "--inputs", "in.jsonl", "--output", "out.jsonl", "--batch-size", "2"],
        cwd=scratch, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and "READY" not in line:
            line = process.stderr.readline()
        process.send_signal(signal.SIGINT)
        while time.monotonic() < deadline and "interrupted" not in line:
            line = process.stderr.readline()
        for _ in range(20):  # during the shutdown
            if process.poll() is not None:
                break
            process.send_signal(signal.SIGINT)
            time.sleep(0.002)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "Traceback" not in rest and "Exception ignored" not in rest
    for text in (scratch / "out.jsonl").read_text().splitlines():
        json.loads(text)  # every line written is whole
