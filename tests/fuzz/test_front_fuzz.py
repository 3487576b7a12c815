"""Property tests: whatever the text, the front end fails only with an :class:`LmqError`
whose span lies inside the text (never a Lark exception, an AssertionError, a
RecursionError...), and quickly.

Inputs: random text and bytes, soups of tokens, programs drawn from the grammar
(``lmq_fuzz_programs.programs``: random ASTs of the lmq subset printed as source) and
random character edits of those. ``make fuzz`` runs the same properties for longer
(``bench/fuzz.py``)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lmq_fuzz_programs import mutants, programs

from lmq.checks import compile_source
from lmq.errors import LmqError

TOKENS = [
    "argmax", "sample(n=2)", "beam", "from", "where", "distribution", "prefer", "query",
    "import", "lmq.stdlib.x", "if", "elif", "else", "for", "in", "not", "and", "or", "is",
    "while", "return", "break", "continue", "pass", "with", ":", "=", "==", "+=", "(", ")",
    "[", "]", "{", "}", ",", ".", "<", ">", "*", "**", "-", "@", "x", "A", "_y", "len",
    "TOKENS", "STOPS_AT", "INT", "REGEX", "LABELS", "open", "1", "2.5", "0x1f", '"', "'",
    '"""', '"[A]"', '"{x}"', '"[A: int]"', "\"[A: r'[0-9']\"", '"{:system}"', '"[[ ]] {{"',
    "f\"{x}\"", "r'\\d'", '"\\n"', "\\", "#c", "\n", "\n    ", "\n  ", "\t", " ", ";",
]
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def assert_compiles_or_lmq_error(text: str) -> None:
    try:
        compile_source(text, "fuzz.lmq")
    except LmqError as error:
        str(error)  # renders
        if error.span is not None:
            assert 0 <= error.span.start <= error.span.end <= len(text) + 1
            assert error.line is not None and 1 <= error.line <= text.count("\n") + 2
            assert error.column is not None and error.column >= 1
            line = text.split("\n")[error.line - 1] if error.line <= text.count("\n") + 1 \
                else ""
            assert error.column <= len(line) + 2, (error.column, line)


@SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_random_text(text: str) -> None:
    assert_compiles_or_lmq_error(text)


@SETTINGS
@given(st.binary(max_size=60))
def test_random_bytes(data: bytes) -> None:
    assert_compiles_or_lmq_error(data.decode("utf-8", errors="replace"))


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join))
def test_token_soup(text: str) -> None:
    assert_compiles_or_lmq_error(text)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map("".join))
def test_glued_token_soup(text: str) -> None:
    assert_compiles_or_lmq_error(text)


@SETTINGS
@given(st.sampled_from([
    '"Q: {q}\\nA:[A]" where STOPS_AT(A, "\\n")\n',
    'argmax\n    "[A]"\nfrom "m"\nwhere INT(A)\n',
    'query q(a):\n    "{a}[X]"\n    return X\n"[R: q(1)]"\n',
]), st.integers(0, 60), st.sampled_from(TOKENS))
def test_mutated_programs(program: str, position: int, token: str) -> None:
    position = min(position, len(program))
    assert_compiles_or_lmq_error(program[:position] + token + program[position:])
    assert_compiles_or_lmq_error(program[:position] + program[position + 1:])


GENERATED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GENERATED
@given(programs())
def test_generated_programs(text: str) -> None:
    assert_compiles_or_lmq_error(text)


@GENERATED
@given(mutants())
def test_mutated_generated_programs(text: str) -> None:
    assert_compiles_or_lmq_error(text)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["(", "[", "{", "-", "not ", "f'{", '"{', "x if y else "]),
       st.integers(200, 3000))
def test_deep_nesting(opener: str, depth: int) -> None:
    closer = {"(": ")", "[": "]", "{": "}", "f'{": "}'", '"{': '}"'}.get(opener, "")
    assert_compiles_or_lmq_error("x = " + opener * depth + "1" + closer * depth + "\n")
    assert_compiles_or_lmq_error("x = " + " + ".join(["1"] * depth) + "\n")
