"""The built wheel is complete and the light entry points stay light."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_grammar_and_works_outside_the_repo(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(ROOT)], check=True)
    wheel = next((tmp_path / "dist").glob("lmq-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("lmq/grammar/lmq.lark", "lmq/runtime/interpreter/program.py",
                     "lmq/runtime/automata/guide.py", "lmq/runtime/decoding/loop.py",
                     "lmq/runtime/backends/hf.py", "lmq/stdlib/__init__.py"):
        assert expected in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True)
    code = ("import lmq, sys; q = lmq.query('\"A:[X]\" where len(TOKENS(X)) < 3'); "
            "print(lmq.__file__, q.checked.holes)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True,
                         capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout
    assert str(target) in out and "('X',)" in out


def test_import_and_check_do_not_import_torch(tmp_path):
    program = tmp_path / "p.lmq"
    program.write_text('"Q: {q}\\nA:[A]" where STOPS_AT(A, "\\n")\n')
    code = ("import sys, lmq.cli; rc = lmq.cli.main(['check', sys.argv[1]]); "
            "assert rc == 0, rc; "
            "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; "
            "print('heavy:', heavy)")
    out = subprocess.run([sys.executable, "-c", code, str(program)], check=True,
                         capture_output=True, text=True).stdout
    assert "heavy: []" in out
