"""Property tests: whatever the text, the front end fails only with an :class:`LmqError`
whose span lies inside the text (never a Lark exception, an AssertionError, a
RecursionError...)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
