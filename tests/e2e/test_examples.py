"""Every example in ``examples/`` runs on tiny-random, the way its header says to run it.

``.lmq`` programs run through the CLI (in process, so the model loads once) with the
arguments of their ``# run: lmq ...`` line plus ``--model tiny-random``; Python scripts
run in a subprocess with ``LMQ_MODEL=tiny-random``; the notebook runs in
``tests/jupyter``. The examples together cover every front door and constraint kind.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lmq.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FILES = sorted(p for p in EXAMPLES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
PROGRAMS = sorted(EXAMPLES.glob("*.lmq"))
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if "Run: python" in p.read_text())


def run_line(path: Path) -> list[str]:
    """The CLI arguments of the example's ``# run: lmq ...`` header line."""
    match = re.search(r"^# run: lmq (.*)$", path.read_text(), re.MULTILINE)
    if match is None:
        return ["run", str(path.relative_to(ROOT))]
    return shlex.split(match.group(1))


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.name)
def test_program_runs(path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("LMQ_DECODER", raising=False)
    code = main([*run_line(path), "--model", "tiny-random"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip()
    assert main(["check", str(path)]) == 0


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_script_runs(path):
    env = {**os.environ, "LMQ_MODEL": "tiny-random", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()


def test_every_example_has_a_header_saying_what_it_shows():
    for path in FILES:
        text = path.read_text()
        if path.suffix in (".lmq", ".toml"):
            assert text.startswith(f"# {path.name} — "), path.name
            assert "Shows:" in text, path.name
        elif path.suffix == ".py":
            assert text.startswith(f'"""{path.name} — '), path.name
            assert "Shows:" in text, path.name
        elif path.suffix == ".ipynb":
            assert "Shows the Jupyter front door" in text


def test_examples_cover_front_doors_and_constraint_kinds():
    assert len(PROGRAMS) + len(SCRIPTS) + 1 >= 10
    text = "\n".join(p.read_text() for p in FILES)
    kinds = ["len(TOKENS(", "len(CITY)", " in [", " not in [", " == ", " != ", '" cat" in ',
             '"e" not in ', "STARTS_WITH(", "ENDS_WITH(", "STOPS_AT(", "STOPS_BEFORE(",
             "INT(", "FLOAT(", "REGEX(", "LABELS(", "JSON(", "SPAN(", "GRAMMAR(", "has_vowel(WORD)",
             "[N: int]", "[T: float]", ": bool]", "r'[0-9]", "distribution", "@len"]
    doors = ["lmq run", "--inputs", "lmq.query(", "@lmq.query", "lmq.F(", ".batch(",
             ".stream(", ".acall(", "%%lmq", "--define", "--as", "tools={"]
    missing = [k for k in kinds + doors if k not in text]
    assert not missing
