"""The grammar and the parser: both program forms, the contextual keywords, prompt-string
bodies, and the named messages for typical syntax errors."""

from __future__ import annotations

import pytest
from lark import Token, Tree

from lmq.errors import LmqSyntaxError, Source
from lmq.parser import get_parser, parse, parse_body


def rules(tree: Tree) -> list[str]:
    return [t.data for t in tree.iter_subtrees_topdown()]


def test_parser_is_built_once() -> None:
    assert get_parser() is get_parser()


def test_standard_form_tree() -> None:
    tree = parse(Source('argmax(max_len=5)\n    "a[A]"\nfrom "m"\nwhere\n    INT(A)\n'))
    program = tree.children[0]
    assert program.data == "standard_program"
    assert [c.data for c in program.children] == [
        "decoder", "prompt_stmt", "model_clause", "where_clause"]


def test_one_line_standard_form_tree() -> None:
    tree = parse(Source('sample(n=2) "a[A]" from "m" where INT(A)'))
    program = tree.children[0]
    assert [c.data for c in program.children] == ["decoder", "oneline_body"]
    assert "inline_where" in rules(program)


def test_modern_form_and_empty_program() -> None:
    assert parse(Source('"a[A]" where INT(A)\n')).children[0].data == "modern_program"
    assert parse(Source("")).children[0].data == "modern_program"
    assert parse(Source("# only a comment")).children[0].children == []


def test_keywords_are_contextual() -> None:
    # Decoder names and clause words are ordinary names where a clause cannot start.
    tree = parse(Source("x = 1\nsample = argmax + beam\nwhere = prefer = distribution = 2\n"))
    assert rules(tree).count("assign") == 3


@pytest.mark.parametrize("text", [
    "a, b = c = 1, 2", "x[1] = 2", "x += 1", "x **= 2", ("if a:\n    pass\nelif b:\n    pass\n"
    "else:\n    pass"), "for a, b in c:\n    break", "while x:\n    continue", "return",
    "return 1, 2", "query q(a, b,):\n    return a", "from lmq.stdlib.x import a as b, c",
    "from lmq.stdlib.x import (a,\n    b,\n)", "x = [i for i in y if i for j in z]",
    "x = {k: v for k, v in y}", "x = {a for a in b}", "x = sum(a for a in b)",
    "x = a if b else c", "x = 1 < y <= 3", "x = a not in b and c is not d",
    "f(1, k=2)", "x = a.b.c(d)[1:2, ::3]", "x = (1,)", "x = ()", "x = {}",
    "x = f'{a:>3} {{b}}'", "x = '''a\nb'''", "x = r'\\d' 'b'", "x = 0x1F + 0o7 + 0b1 + 1_000",
    "x = 1.5e-3 + .5 + 5.", "x = -a ** -b", "x = ~a << 2 >> 1 & 3 | 4 ^ 5", "a; b; c",
    "x = [\n    1,\n    2,\n]", "x = 1 \\\n    + 2",
])
def test_statements_parse(text: str) -> None:
    parse(Source(text + "\n"))


def test_prompt_body_positions_are_relative_to_the_body() -> None:
    source = Source('"ab[X: int]{y:>3}{:user}"\n')
    tree = parse_body(source, 1, len(source.text) - 2)
    hole = next(tree.find_data("hole"))
    assert hole.meta.start_pos == 2 and hole.meta.end_pos == 10
    assert [c.data if isinstance(c, Tree) else c.type for c in tree.children] == [
        "TEXT", "hole", "interpolation", "tag"]


@pytest.mark.parametrize("body, expected", [
    ("plain text # not a comment\n  with newline", ["TEXT"]),
    ("[[x]] {{y}}", ["LITERAL_BRACKET", "TEXT", "LITERAL_BRACKET", "TEXT",
                     "LITERAL_BRACE", "TEXT", "LITERAL_BRACE"]),
    ("a\\nb\\u00e9", ["TEXT", "ESCAPE", "TEXT", "ESCAPE"]),
    ("a]b}c", ["TEXT"]),
    ("[@f @g.h X: r'[a-z]']", ["hole"]),
    ("[X: q(1, k='v')]", ["hole"]),
])
def test_prompt_body_tokens(body: str, expected: list[str]) -> None:
    source = Source(body)
    tree = parse_body(source, 0, len(body))
    assert [c.data if isinstance(c, Tree) else c.type for c in tree.children] == expected


def test_fstring_body_treats_brackets_as_text() -> None:
    tree = parse_body(Source("[a] {x} [b]"), 0, 11, fstring=True)
    kinds = [c.data if isinstance(c, Tree) else c.type for c in tree.children]
    assert kinds == ["FTEXT", "fstring_interpolation", "FTEXT"]
    assert isinstance(tree.children[0], Token)


# (program, message, line, column, caret width)
SYNTAX_ERRORS = [
    ('x = "abc\n', "unterminated string literal", 1, 5, 4),
    ('x = """abc\n', "unterminated triple-quoted string", 1, 5, 3),
    ('"Answer:[ANSWER" where INT(ANSWER)\n', "unclosed hole '[' (write '[[' for a literal '[')",
     1, 9, 1),
    ('"Hello {name"\n', "unclosed '{' in prompt string (write '{{' for a literal '{')", 1, 8, 1),
    ('"[]"\n', "empty hole '[]' (write '[[' for a literal '[')", 1, 2, 2),
    ('"{}"\n', "empty interpolation '{}' (write '{{' for a literal '{')", 1, 2, 2),
    ('"{x!r}"\n', ("conversions such as '!r' are not available in interpolations; call repr() "
     "or str() instead"), 1, 4, 2),
    ('"[A: \'x\']"\n', "the pattern of a regex hole is a raw string: [NAME: r'...']", 1, 6, 3),
    ("if x\n    pass\n", "expected ':' after the 'if' condition", 1, 5, 1),
    ("for x in y\n    pass\n", "expected ':' after the 'for' header", 1, 11, 1),
    ("while x\n    pass\n", "expected ':' after the 'while' condition", 1, 8, 1),
    ("query q(a)\n    pass\n", "expected ':' after the query header", 1, 11, 1),
    ("query q:\n    pass\n", "a query needs a parameter list: query NAME(PARAMS):", 1, 8, 1),
    ("if x:\npass\n", "expected an indented block after line 1", 2, 1, 4),
    ('"[A]" where A = "x"\n', "use '==' to compare in a constraint, not '='", 1, 15, 1),
    ("argmax\n    \"[A]\"\nwhere\n    A = 'x'\n",
     "use '==' to compare in a constraint, not '='", 4, 7, 1),
    ("if x = 1:\n    pass\n", "'=' assigns; use '==' to compare", 1, 6, 1),
    ("x = 1\n    y = 2\n", "unexpected indent", 2, 5, 1),
    ("  x = 1\n", "unexpected indent", 1, 3, 1),
    ("if a:\n        x = 1\n    y = 2\n", ("unindent does not match any outer indentation "
     "level"), 3, 5, 1),
    ("x = (1 +\ny = 2\n", "'(' was never closed", 1, 5, 1),
    ("x = [1 2]\n", "missing ',' between items", 1, 8, 1),
    ("x = f(a b)\n", "missing ',' between items", 1, 9, 1),
    ("for x y:\n    pass\n", "a 'for' loop needs 'in': for NAME in ITERABLE:", 1, 7, 1),
    ("else:\n    pass\n", "'else' without a matching 'if'", 1, 1, 4),
    ("sampel(n=2)\n    \"[A]\"\n", "unknown decoder 'sampel' (did you mean 'sample'?)", 1, 1, 6),
    ('argmx "[A]"\n', "unknown decoder 'argmx' (did you mean 'argmax'?)", 1, 1, 5),
    ("greedy\n    \"[A]\"\n", ("unknown decoder 'greedy' (the decoders are argmax, sample and "
     "beam)"), 1, 1, 6),
    ('argmax\n    "[A]"\nx = 1\n', ("expected a clause (from, where, distribution, prefer) at "
     "column 1; the program's statements belong in the indented body of the decoder clause"),
     3, 1, 1),
    ('"[A]"\nwhere INT(A)\n', ("a 'where' clause at column 1 needs the standard form (a decoder "
     "clause such as 'argmax' first); in the modern form put it after the prompt string on "
     "the same line"), 2, 1, 5),
    ('"[A]" where\n', "expected a constraint after 'where'", 1, 12, 1),
    ('"[A]" from\n', "expected a model after 'from'", 1, 11, 1),
    ('"a" prefer instruction context\n', ("prefer takes knowledge sources separated by '>': "
     "prefer instruction > context"), 1, 24, 7),
    ("x = f(*a)\n", "unexpected '*'", 1, 7, 1),
    ("x = 1 $ 2\n", "unexpected '$'", 1, 7, 1),
    ('x = b"abc"\n', "bytes literals are not available in lmq programs", 1, 5, 2),
    ("x = )\n", "unexpected ')'", 1, 5, 1),
    ('x = f"{a"\n', "unclosed '{' in f-string (write '{{' for a literal '{')", 1, 7, 1),
    ('"[A B]"\n', ("invalid hole: expected [NAME], [NAME: TYPE], [NAME: r'REGEX'], "
     "[NAME: QUERY(...)] or [@DECORATOR NAME] (write '[[' for a literal '[')"), 1, 5, 1),
]


@pytest.mark.parametrize("text, message, line, column, width", SYNTAX_ERRORS,
                         ids=[e[1][:40] for e in SYNTAX_ERRORS])
def test_named_syntax_errors(text: str, message: str, line: int, column: int,
                             width: int) -> None:
    from lmq.checks import compile_source  # body errors surface while lowering

    with pytest.raises(LmqSyntaxError) as caught:
        compile_source(text, "t.lmq")
    error = caught.value
    assert error.message + (f" ({error.hint})" if error.hint else "") == message
    assert (error.line, error.column) == (line, column)
    caret = str(error).splitlines()[-1]
    assert caret.strip() == "^" * width
    assert str(error).startswith(f"t.lmq:{line}:{column}: error: ")


def test_error_lines_split_on_newlines_only():
    """A form feed or a lone carriage return inside a line must not shift the quoted line."""
    from lmq.errors import Source

    source = Source('x = "a\x0cb"\r\ny = 1\n', "f.lmq")
    assert source.line_text(1) == 'x = "a\x0cb"'
    assert source.line_text(2) == "y = 1"
    assert source.position(source.text.index("y")) == (2, 1)
