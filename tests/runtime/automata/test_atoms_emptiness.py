"""Compile-time emptiness (lmq.emptiness): constant regular constraints that no value can
satisfy are compile errors at their ``where``; anything not constant is left alone."""

import subprocess
import sys

import pytest

from lmq.emptiness import check_not_empty
from lmq.errors import LmqCompileError, Source
from lmq.lower import lower_source


def check(text: str) -> None:
    check_not_empty(lower_source(Source(text)))


@pytest.mark.parametrize("text, where", [
    ('"[X]" where INT(X) and X in ["a"]', 'INT(X) and X in ["a"]'),
    ('"[X: int]" where X in ["a", "b"]', 'X in ["a", "b"]'),
    ('"[X: bool]" where STARTS_WITH(X, "yes")', 'STARTS_WITH(X, "yes")'),
    ('"[X]" where LABELS(X, ["a", "b"], min=3)', 'LABELS(X, ["a", "b"], min=3)'),
    ('"[X]" where LABELS(X, ["a"], min=2)', 'LABELS(X, ["a"], min=2)'),
    ('"[X]" where JSON(X, {"enum": [1, 2]}) and X == "3"', 'JSON(X, {"enum": [1, 2]}) and X == "3"'),
    ('"[X]" where SPAN(X, "abc") and ENDS_WITH(X, "x")', 'SPAN(X, "abc") and ENDS_WITH(X, "x")'),
    ('"[X]" where len(X) < 3 and X in ["long"] and len(TOKENS(X)) < 9',
     'len(X) < 3 and X in ["long"] and len(TOKENS(X)) < 9'),
    ('"[X]" where (X == "a" or X == "b") and not X in ["a", "b"]',
     '(X == "a" or X == "b") and not X in ["a", "b"]'),
    ('"[X]" where REGEX(X, r"[0-9]+") and REGEX(X, r"[a-z]+")',
     'REGEX(X, r"[0-9]+") and REGEX(X, r"[a-z]+")'),
    ('query f():\n    "[Y]" where len(Y) < 0\n"[X]"', "len(Y) < 0"),
    ('argmax\n    "[X]" where INT(X)\nfrom "m"\nwhere X in ["a"]', 'X in ["a"]'),
])
def test_empty_constraints_are_compile_errors(text, where):
    with pytest.raises(LmqCompileError, match="no value of '[XY]' can satisfy") as error:
        check(text)
    span = error.value.span
    assert text[span.start:span.end] == where


@pytest.mark.parametrize("text", [
    '"[X]" where INT(X) and X in ["1", "a"]',
    '"[X]" where INT(X) and X in options',  # not a constant: evaluated when X starts
    '"[X]" where INT(X) and is_odd(X)',
    '"[X: int]"',
    '"[X]" where len(TOKENS(X)) < 1',  # token counts are not regular
    '"[X]" where LABELS(X, ["a", "b"], min=2) and STOPS_AT(X, ".")',
    '"[X]" where JSON(X, {"type": "object"})',
    '"[X]" where INT(X) or X in ["a"]',
    '"[X][Y]" where X in ["a"] and INT(Y)',
    'argmax\n    "[X]" where INT(X)\n    "[Z]"\nfrom "m"\nwhere Z in ["a"]',
])
def test_satisfiable_or_unknown_constraints_pass(text):
    check(text)


def test_compile_problems_point_at_the_where():
    text = '"[X]" where JSON(X, {"type": "integer", "multipleOf": 3})'
    with pytest.raises(LmqCompileError, match="multipleOf") as error:
        check(text)
    assert text[error.value.span.start:] == 'JSON(X, {"type": "integer", "multipleOf": 3})'


def test_checking_a_program_without_constraints_does_not_load_numpy():
    code = ("import sys; from lmq.emptiness import check_not_empty; from lmq.lower import "
            "lower_source; from lmq.errors import Source; "
            "check_not_empty(lower_source(Source('\"[X: int] [Y]\" where len(TOKENS(Y)) < 3'))); "
            "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
