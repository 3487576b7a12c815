"""The checks before any model loads: names, parameters and tools, the sandbox, constraint
typing, queries, the distribution variable and the decoder clause."""

from __future__ import annotations

import dataclasses

import pytest

from lmq import ir
from lmq.checks import CheckedProgram, compile_source
from lmq.decoders import DecoderSpec, NotConstant, constant_value, decoder_spec
from lmq.errors import LmqCompileError, LmqError, LmqSandboxError, LmqSyntaxError, Span


def compile_(text: str) -> CheckedProgram:
    return compile_source(text + "\n", "t.lmq")


def error_of(text: str) -> LmqError:
    with pytest.raises(LmqError) as caught:
        compile_(text)
    return caught.value


# ------------------------------------------------------------------ the result

def test_checked_program_fields() -> None:
    checked = compile_(
        'from lmq.stdlib.labels import classify as cls\n'
        'query ask(q):\n    "{q}[X]"\n    return X\n'
        'argmax_tokens = 3\n'
        '"{city} {cls(city)}[A][B: ask(topic)]" from pick(city) where A in options')
    assert checked.params == ("city", "topic", "options")
    assert checked.tools == ("pick",)
    assert checked.holes == ("A", "B")
    assert list(checked.queries) == ["ask"]
    assert dict(checked.imports) == {"cls": ("lmq.stdlib.labels", "classify")}
    assert checked.decoder == DecoderSpec()
    assert isinstance(checked.program, ir.Program)
    with pytest.raises(dataclasses.FrozenInstanceError):
        checked.params = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        checked.queries["x"] = None  # type: ignore[index]


@pytest.mark.parametrize("text, params, tools", [
    ('"{a}{b}{a}[X]"', ("a", "b"), ()),
    ('x = 1\n"{x}{y}[X]"', ("y",), ()),
    ('for i in items:\n    "{i}[X]"', ("items",), ()),
    ('"{[w for w in words if w != stop]}"', ("words", "stop"), ()),
    ('"{f(x)}{f}"', ("f", "x"), ()),
    ('"{g(x)}"\ny = g(1)', ("x",), ("g",)),
    ('n -= 1', ("n",), ()),
    ('"[A]"\n"{A}{len(A)}[B]"', (), ()),
    ('"[@clean W]" where is_ok(W, limit)', ("limit",), ("clean", "is_ok")),
    ('"[R: helper(1)]"', (), ("helper",)),
    ('x = {k: v for k, v in pairs}', ("pairs",), ()),
    ('argmax\n    "[A]"\nfrom model_name\nwhere A in labels', ("model_name", "labels"), ()),
    ('print(repr(sorted(xs)))', ("xs",), ()),
])
def test_params_and_tools(text: str, params: tuple, tools: tuple) -> None:
    checked = compile_(text)
    assert (checked.params, checked.tools) == (params, tools)


def test_query_sees_params_own_names_and_program_names() -> None:
    checked = compile_('base = "x"\nquery q(a):\n    b = a + base + city\n    "{b}[X]"\n'
                       '    return X\n"{city}[R: q(1)]"')
    assert checked.params == ("city",)


@pytest.mark.parametrize("text, message, hint", [
    ('query q(name):\n    "{nme}[X]"\n"[R: q(1)]"', "unknown name 'nme' in query 'q'",
     "did you mean 'name'?"),
    ('query q(a):\n    "{b}[X]"\n"[R: q(1)]"', "unknown name 'b' in query 'q'", None),
    ('query q(a):\n    "[X]"\n"[R: q()]"', "query 'q' needs the argument a", None),
    ('query q(a):\n    "[X]"\n"[R: q(1, 2)]"', "query 'q' takes 1 argument, got 2", None),
    ('query q(a):\n    "[X]"\n"[R: q(b=1)]"', "query 'q' has no parameter 'b'", None),
    ('query q(a):\n    "[X]"\n"[R: q(1, a=1)]"', "argument 'a' given twice", None),
    ('query q(a):\n    "[X]"\n"[R: q]"', "query 'q' needs the argument a", None),
    ('query q(a):\n    "[X]"\nx = q()', "query 'q' needs the argument a", None),
    ('query yes_no(a):\n    "[X]"\n"[R: yes_n(1)]"', "unknown query 'yes_n'",
     "did you mean 'yes_no'?"),
    ('query q():\n    "[X]"\nquery q():\n    "[Y]"', "query 'q' is defined twice", None),
    ('"[R: len]"', "'len' is not a hole type or a query",
     "the hole types are int, float, bool, str and @dataclass records"),
    ("break", "'break' outside a loop", None),
    ("if x:\n    continue", "'continue' outside a loop", None),
    ('query q():\n    break', "'break' outside a loop", None),
])
def test_name_and_query_errors(text: str, message: str, hint: str | None) -> None:
    error = error_of(text)
    assert isinstance(error, LmqCompileError)
    assert (error.message, error.hint) == (message, hint)


# ------------------------------------------------------------------ sandbox

@pytest.mark.parametrize("text, message, column", [
    ('x = open("f")', "'open' is not available in lmq programs (sandbox)", 5),
    ("x = eval", "'eval' is not available in lmq programs (sandbox)", 5),
    ('exec("1")', "'exec' is not available in lmq programs (sandbox)", 1),
    ("x = getattr(a, 'b')", "'getattr' is not available in lmq programs (sandbox)", 5),
    ("x = type(a)", "'type' is not available in lmq programs (sandbox)", 5),
    ("x = vars()", "'vars' is not available in lmq programs (sandbox)", 5),
    ("x = globals()", "'globals' is not available in lmq programs (sandbox)", 5),
    ("x = compile('1', 'f', 'eval')", "'compile' is not available in lmq programs (sandbox)", 5),
    ('"{input}[A]"', "'input' is not available in lmq programs (sandbox)", 3),
    ("x = __import__('os')", "'__import__' is not available in lmq programs (sandbox)", 5),
    ("x = a.__class__", "'__class__' is not available in lmq programs (sandbox)", 5),
    ("x = a._private", "'_private' is not available in lmq programs (sandbox)", 5),
    ("_x = 1", "'_x' is not available in lmq programs (sandbox)", 1),
    ('"[_A]"', "'_A' is not available in lmq programs (sandbox)", 2),
    ("query _q():\n    pass", "'_q' is not available in lmq programs (sandbox)", 1),
    ("x = '{}'.format(1)", "'.format' is not available in lmq programs (sandbox)", 5),
    ("x = '{a}'.format_map(d)", "'.format_map' is not available in lmq programs (sandbox)", 5),
    ("x.y = 1", ("assignment to an attribute ('.y = ...') is not allowed in lmq programs "
     "(sandbox)"), 1),
    ("import os", "'import os' is not allowed in lmq programs (sandbox)", 1),
    ("from os import system", "importing from 'os' is not allowed in lmq programs (sandbox)", 1),
    ("from lmq.stdlib import labels", ("importing from 'lmq.stdlib' is not allowed in lmq "
     "programs (sandbox)"), 1),
    ("from lmq.stdlib.labels import _hidden", ("'_hidden' is not available in lmq programs "
     "(sandbox)"), 1),
])
def test_sandbox(text: str, message: str, column: int) -> None:
    error = error_of(text)
    assert isinstance(error, LmqSandboxError)
    assert error.message == message
    assert error.column == column


def test_allowed_builtins_and_shadowing() -> None:
    compile_("x = len(range(3)) + sum([1]) + abs(-1) + round(1.5) + min(1, 2)\n"
             "print(repr(sorted(reversed([1]))), isinstance(x, int), any([]), all([]))\n"
             "type = 'noun'\n\"{type}[A]\"")


# ------------------------------------------------------------------ constraints

@pytest.mark.parametrize("text, message, where", [
    ('"[C]" where len(C) < "5"', "'len(C) < n' needs an integer, not a str", '"5"'),
    ('"[C]" where len(TOKENS(C)) < 2.5', "'len(TOKENS(C)) < n' needs an integer, not a float",
     "2.5"),
    ('"[C]" where len(C) >= True', "'len(C) >= n' needs an integer, not a bool", "True"),
    ('"[A]" where A == 3', "'A == s' needs a string, not an int", "3"),
    ('"[A]" where A in [1, "a"]', "'A in ...' needs strings, not an int", "1"),
    ('"[A]" where A in "ab"', "'A in ...' needs a list of strings, not a str", '"ab"'),
    ('"[A]" where 1 in A', "'s in A' needs a string, not an int", "1"),
    ('"[A]" where STARTS_WITH(A, 1)', "STARTS_WITH needs a string, not an int", "1"),
    ('"[A]" where STOPS_AT(A, "")', "STOPS_AT needs a non-empty stop phrase", '""'),
    ('"[A]" where STOPS_AT(A, ["a", None])', "STOPS_AT needs strings, not None", "None"),
    ('"[A]" where STOPS_BEFORE(A, 5)', "STOPS_BEFORE needs a string or a list of strings, not "
     "an int", "5"),
    ('"[A]" where REGEX(A, 5)', "REGEX needs a pattern string, not an int", "5"),
    ('"[A]" where REGEX(A, r"[0-9")', "invalid regular expression: unterminated character set",
     "["),
    ('"[A]" where REGEX(A, "a\\\\d(")', ("invalid regular expression: missing ), unterminated "
     "subpattern"), "("),
    ("\"[A: r'x(']\"", "invalid regular expression: missing ), unterminated subpattern", "("),
    ('"[A]" where LABELS(A, ["a"], sep="")', ("the LABELS option 'sep' must be a non-empty "
     "string, not ''"), '""'),
    ('"[A]" where LABELS(A, ["a"], min=-1)', ("the LABELS option 'min' must be an integer "
     ">= 0, not -1"), "-1"),
    ('"[A]" where JSON(A, 3)', "JSON needs a schema (a dict), not an int", "3"),
    ('"[A]" where STOPS_AT(A, open)', "'open' is not available in lmq programs (sandbox)",
     "open"),
    ('"[A]" where eval(A)', "'eval' is not available in lmq programs (sandbox)", "eval(A)"),
])
def test_constraint_typing(text: str, message: str, where: str) -> None:
    error = error_of(text)
    assert error.message == message
    assert error.span is not None
    assert (text + "\n")[error.span.start:error.span.end] == where


def test_regex_literal_offsets_follow_escapes() -> None:
    error = error_of('"[A]" where REGEX(A, "\\u00e9\\t(")')
    assert error.column == 31  # the "(" after two escapes


@pytest.mark.parametrize("text", [
    '"[A]" where len(A) < n', '"[A]" where A in options', '"[A]" where REGEX(A, pattern)',
    '"[A]" where STOPS_AT(A, ["\\n", "."])', '"[A]" where LABELS(A, ["x"], unique=False, max=None)',
    '"[A]" where JSON(A, {"type": "object"})', '"[A]" where len(A) < -(-3)',
])
def test_valid_constraints(text: str) -> None:
    compile_(text)


def test_distribution_must_be_the_last_hole() -> None:
    error = error_of('argmax\n    "[A] [B]"\ndistribution A in ["x"]')
    assert error.message == ("the distribution variable 'A' must be the program's last hole "
                             "(the last hole is 'B')")
    assert (error.line, error.column) == (3, 14)
    error = error_of('argmax\n    "[A]"\ndistribution A in []')
    assert error.message == "distribution values must be a non-empty list of strings"
    compile_('argmax\n    "[A] [B]"\ndistribution B in values')


# ------------------------------------------------------------------ decoders

def dec(name: str, *args: object, **keywords: object) -> ir.Decoder:
    return ir.Decoder(name, tuple(ir.Const(a) for a in args),
                      tuple(ir.Keyword(k, ir.Const(v)) for k, v in keywords.items()))


def test_decoder_defaults() -> None:
    assert decoder_spec(None) == DecoderSpec("argmax", 1, 1.0, None, None, None, None, 256)
    assert decoder_spec(dec("sample")).n == 1
    assert decoder_spec(dec("beam")).n == 2
    assert decoder_spec(dec("argmax", max_tokens=10)).max_tokens == 10


def test_decoder_positional_arguments_in_parameter_order() -> None:
    spec = decoder_spec(dec("sample", 4, 0.5, 10, 0.9, 7, 100, 20))
    assert spec == DecoderSpec("sample", 4, 0.5, 10, 0.9, 7, 100, 20)
    assert decoder_spec(dec("beam", 3, 64)) == DecoderSpec("beam", n=3, max_len=64)


@pytest.mark.parametrize("decoder, message, hint", [
    (dec("sampel"), "unknown decoder 'sampel'", "did you mean 'sample'?"),
    (dec("sample", n=2, temprature=0.7), "unknown argument 'temprature' for decoder 'sample'",
     "did you mean 'temperature'?"),
    (dec("argmax", temperature=0.5), "unknown argument 'temperature' for decoder 'argmax'",
     "'argmax' takes max_len, max_tokens, seed"),
    (dec("sample", 2, n=3), "argument 'n' given twice", None),
    (dec("beam", 1, 2, 3, 4, 5), ("decoder 'beam' takes at most 4 positional arguments "
     "(n, max_len, max_tokens, seed)"), None),
    (dec("sample", n=0), "'n' must be a positive integer, not 0", None),
    (dec("sample", n=True), "'n' must be a positive integer, not True", None),
    (dec("sample", temperature=-1), "'temperature' must be a number >= 0, not -1", None),
    (dec("sample", top_p=1.5), "'top_p' must be a number in (0, 1] or None, not 1.5", None),
    (dec("sample", top_k=0), "'top_k' must be a positive integer or None, not 0", None),
    (dec("argmax", seed=-2), "'seed' must be an integer from 0 to 2**63 - 1, or None, not -2",
     None),
    (dec("argmax", seed=2**63), "'seed' must be an integer from 0 to 2**63 - 1, or None, "
     "not 9223372036854775808", None),
    (dec("argmax", max_len="x"), "'max_len' must be a positive integer or None, not 'x'", None),
])
def test_decoder_errors(decoder: ir.Decoder, message: str, hint: str | None) -> None:
    with pytest.raises(LmqCompileError) as caught:
        decoder_spec(decoder)
    assert (caught.value.message, caught.value.hint) == (message, hint)


def test_decoder_arguments_must_be_constants() -> None:
    error = error_of('sample(n=k)\n    "[A]"')
    assert error.message == "the argument 'n' of decoder 'sample' must be a constant"
    assert (error.line, error.column) == (1, 10)
    assert compile_('sample(temperature=-0.0, seed=-(-1))\n    "[A]"').decoder.seed == 1


def test_constant_value() -> None:
    assert constant_value(ir.UnaryOp("-", ir.Const(2))) == -2
    assert constant_value(ir.ListExpr((ir.Const("a"),))) == ["a"]
    with pytest.raises(NotConstant):
        constant_value(ir.Name("x"))


# ------------------------------------------------------------------ errors render

def test_every_error_renders_with_file_line_and_caret() -> None:
    error = error_of('x = 1\n"[A]" where STOPS_AT(A, 5)')
    assert str(error) == ("t.lmq:2:25: error: STOPS_AT needs a string or a list of strings, not an int\n"
                          '    "[A]" where STOPS_AT(A, 5)\n'
                          "                            ^")
    assert isinstance(error.span, Span)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    error = error_of("x = " + "-" * 5000 + "1")
    assert isinstance(error, LmqSyntaxError)
    assert error.message == "the program is nested too deeply"
