"""Every program in the language reference (grammar/LANGUAGE.md) runs on the tiny random model (the examples are part of
the specification; tests/front/test_language_examples.py checks how they compile).

The examples are read from the reference itself, so a changed example is tested as it
stands. Fenced blocks that are not programs (the error example of section 14) are
recognised by their text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lmq

REFERENCE = Path(__file__).resolve().parents[2] / "grammar" / "LANGUAGE.md"


def program_blocks() -> list[str]:
    text = REFERENCE.read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    return [b for b in blocks if "error:" not in b and "[" in b]


def test_reference_has_examples():
    assert len(program_blocks()) >= 5


@pytest.mark.parametrize("source", program_blocks())
def test_example_runs(source):
    tools = {"route": lambda text, names: "tiny-random"}
    q = lmq.query(source, model="tiny-random", tools=tools)
    params = {name: "What is a contract?" for name in q.params}
    result = q(**params)
    for name in q.checked.holes:
        assert name in result.variables
    assert all(isinstance(v, list) for v in result.values.values())
