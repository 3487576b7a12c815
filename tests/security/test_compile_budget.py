"""Compiling is bounded and linear, reads nothing executable from disk, and checks the
names a program imports from the standard library before anything runs."""

from __future__ import annotations

import functools
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmq import parser
from lmq.checks import compile_source
from lmq.errors import LmqCompileError, Source


@pytest.mark.parametrize("source, rule, column", [
    ("x = " + "+".join(["1"] * 60_000) + "\n",
     "the program has more than 100,000 tokens (the compile budget)", 100_003),
    ("x = [" + ", ".join(["1"] * 60_000) + "]\n", "more than 100,000 tokens", 150_001),
    ('"' + "{x}" * 40_000 + '[A]"\n', "more than 100,000 tokens", None),
    ('x = "' + "a" * 1_000_000 + '"\n', "the program has 1,000,007 characters; the compile "
     "budget is 1,000,000", 1_000_001),
])
def test_the_compile_budget(source, rule, column):
    with pytest.raises(LmqCompileError) as info:
        compile_source(source, "big.lmq")
    assert rule in info.value.message
    assert info.value.line == 1 and (column is None or info.value.column == column)
    snippet = str(info.value).splitlines()
    assert len(snippet) == 3 and max(map(len, snippet)) < 300  # a window, not the line


def test_a_long_program_within_the_budget_compiles_in_one_pass_over_its_lines(monkeypatch):
    """Positions come from one index of line starts per source (compiling was quadratic:
    every node's position counted newlines from the start)."""
    built = []
    original = Source.line_starts.func

    def counting(self):
        built.append(len(self.text))
        return original(self)

    counted = functools.cached_property(counting)
    counted.__set_name__(Source, "line_starts")
    monkeypatch.setattr(Source, "line_starts", counted)
    lines = 5000
    checked = compile_source("".join(f"x{i} = {i}\n" for i in range(lines)) + '"[A]"\n')
    assert checked.holes == ("A",)
    source = checked.program.source
    assert source.position(len(source.text) - 1) == (lines + 1, 6)
    assert built == [len(source.text)]  # once, for the whole program


@given(st.text(alphabet="ab\n\r", max_size=30), st.integers(-2, 40))
def test_positions_and_lines(text, offset):
    source = Source(text)
    clipped = max(0, min(offset, len(text)))
    assert source.position(offset) == (text.count("\n", 0, clipped) + 1,
                                       clipped - (text.rfind("\n", 0, clipped) + 1) + 1)
    lines = text.split("\n")
    for number in range(-1, len(lines) + 2):
        expected = lines[number - 1].rstrip("\r") if 0 < number <= len(lines) else ""
        assert source.line_text(number) == expected


def test_the_parser_cache_holds_no_pickle(tmp_path, monkeypatch):
    """A payload planted where a pickle cache would be is never run: the tables are JSON
    and a file that is not valid tables is rebuilt."""
    monkeypatch.setenv("LMQ_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LMQ_NO_CACHE", raising=False)
    canary = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(canary), "w"))

    monkeypatch.setattr(parser, "_parser", None)
    compile_source('"[A]"\n')
    (path,) = tmp_path.glob("grammar-*.json")
    for name in (path.name, path.name.replace(".json", ".lark-cache")):
        (tmp_path / name).write_bytes(pickle.dumps(Payload()))
        (tmp_path / name).chmod(0o600)
    monkeypatch.setattr(parser, "_parser", None)
    assert compile_source('"[B]"\n').holes == ("B",)
    assert not canary.exists()
    assert parser._load_tables(path) is not None  # rebuilt as JSON


@pytest.mark.parametrize("source, rule, column, hint", [
    ("from lmq.stdlib.routing import importlib\n", "'lmq.stdlib.routing' has no name "
     "'importlib'", 32, "it exports route, decision, specialists, embed, similarity"),
    ("from lmq.stdlib.labels import classify, clasify as c\n", "'lmq.stdlib.labels' has no "
     "name 'clasify'", 41, "did you mean 'classify'?"),
    ("from lmq.stdlib.routng import route\n", "no standard-library module "
     "'lmq.stdlib.routng'", 6, "did you mean 'routing'?"),
    ("from lmq.stdlib.arguments import limits\n", "no standard-library module", 6,
     "the modules are fusion, hierarchical, knowledge, labels, notes, posix, routing"),
    ("from lmq.stdlib.labels import LEVELS\n", "has no name 'LEVELS'", 31, None),
])
def test_stdlib_names_are_checked_at_compile_time(source, rule, column, hint):
    with pytest.raises(LmqCompileError) as info:
        compile_source(source, "q.lmq")
    assert rule in info.value.message
    assert (info.value.line, info.value.column) == (1, column)
    if hint:
        assert info.value.hint == hint
    assert "^" in str(info.value)


def test_checking_imports_loads_neither_torch_nor_the_module():
    import subprocess
    import sys

    code = ("import sys\nfrom lmq.checks import compile_source\n"
            "compile_source('from lmq.stdlib.posix import posix\\n')\n"
            "print('torch' in sys.modules, 'lmq.stdlib.posix' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr
