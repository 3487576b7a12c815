"""Golden cases: each ``tests/cases/NAME.lmq`` compiles to the text in ``NAME.expected``.

The expected text is the checked program's summary and pretty IR (:func:`lmq.pretty.pretty`)
or, for a program that must be rejected, the exact error text (file, line, column, message
and caret). Run with ``LMQ_UPDATE_GOLDEN=1`` to rewrite the expectations after reviewing a
change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmq.checks import compile_source
from lmq.errors import LmqError
from lmq.pretty import pretty

CASES = Path(__file__).resolve().parent.parent / "cases"
UPDATE = os.environ.get("LMQ_UPDATE_GOLDEN") == "1"


def render(path: Path) -> str:
    try:
        checked = compile_source(path.read_text(encoding="utf-8"), path.name)
    except LmqError as error:
        return f"{type(error).__name__}: {error}\n"
    decoder = checked.decoder
    head = [
        (f"decoder: {decoder.name} n={decoder.n} temperature={decoder.temperature} "
        f"top_k={decoder.top_k} top_p={decoder.top_p} seed={decoder.seed} "
        f"max_len={decoder.max_len} max_tokens={decoder.max_tokens}"),
        f"params: {', '.join(checked.params)}",
        f"tools: {', '.join(checked.tools)}",
        f"holes: {', '.join(checked.holes)}",
        f"queries: {', '.join(checked.queries)}",
        "imports: " + ", ".join(f"{alias}={module}.{name}"
                                for alias, (module, name) in checked.imports.items()),
    ]
    return "\n".join(line.rstrip() for line in head) + "\n" + pretty(checked.program)


def test_enough_cases() -> None:
    names = [p.stem for p in CASES.glob("*.lmq")]
    assert len(names) >= 25
    assert sum(name.startswith("err_") for name in names) >= 10


@pytest.mark.parametrize("path", sorted(CASES.glob("*.lmq")), ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    expected_path = path.with_suffix(".expected")
    actual = render(path)
    if UPDATE or not expected_path.exists():
        expected_path.write_text(actual, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"wrote missing expectation {expected_path.name}; review it")
    assert actual == expected_path.read_text(encoding="utf-8")
    assert path.stem.startswith("err_") == actual.startswith("Lmq")
