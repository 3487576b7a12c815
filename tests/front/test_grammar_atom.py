"""GRAMMAR(X, grammar) in the front end: the accepted subset and its errors at the grammar's
own line and column, grammar files next to the program (and only there), the combinations
that are compile errors, and the Lark texts made for the engine."""

from __future__ import annotations

import pytest

from lmq import regular as rg
from lmq.checks import compile_source
from lmq.errors import LmqCompileError, LmqError
from lmq.grammars import (
    GrammarError,
    check_grammar,
    engine_text,
    finite_form,
    grammar_parts,
    is_sentence,
    lark_text,
    parse_tree,
    renamed,
)

EXPR = r'''
%import common.INT
%import common.WS
%ignore WS
start: sum
?sum: INT | sum "+" INT
'''


def error_of(text: str, filename: str = "t.lmq") -> LmqError:
    with pytest.raises(LmqError) as caught:
        compile_source(text + "\n", filename)
    return caught.value


def test_a_program_with_a_grammar_compiles() -> None:
    compile_source('"A: [E]" where GRAMMAR(E, g) and len(TOKENS(E)) < 20 and '
                   'STOPS_AT(E, ";")\n')
    compile_source(f'"A: [E]" where GRAMMAR(E, {EXPR!r}, tree=True) and E in ["1", "x"]\n')


@pytest.mark.parametrize("grammar, line, column, words", [
    ('start: a\na: "x" | b\n', 2, 10, "unknown name"),
    ('start: "a"\nstart: "b"\n', 2, 8, "duplicate rule"),
    ('start: x\nx: %json {}\n', 2, 4, "unexpected input"),
    ('start: _sep{"a"}\n_sep{x}: x ("," x)*\n', 2, 10, "params"),
    ('start: /(?<=a)b/\n', 1, 8, "look-around"),
    ('%import .other (x)\nstart: x\n', 1, 9, "only '%import common.NAME'"),
    ('%import common.FOO\nstart: FOO\n', 1, 1, "common"),
    ('foo: "x"\n', 1, 1, "no start rule"),
    ('start: ""\n', 1, 1, "empty"),
])
def test_grammar_errors_name_the_grammar_line_and_column(grammar, line, column, words) -> None:
    with pytest.raises(GrammarError) as caught:
        check_grammar(grammar)
    error = caught.value
    assert words.lower() in error.message.lower()
    if line > 1 or column > 1:
        assert (error.grammar_line, error.grammar_column) == (line, column), error.message
        assert f"(line {line}, column {column})" in error.message


def test_an_inline_grammar_error_points_into_the_program_literal() -> None:
    error = error_of('"A: [E]" where GRAMMAR(E, "start: \\"a\\" | x")')
    assert isinstance(error, LmqCompileError)
    assert "unknown name" in error.message and "(line 1, column 14)" in error.message
    assert error.source.text[error.span.start:error.span.end] == "x"  # inside the literal


def test_priorities_are_kept_for_lark_and_left_out_for_the_engine() -> None:
    text = 'start: a | b\na.2: "x"\nb: B\nB.3: "x"\n'
    check_grammar(text)
    assert engine_text(text) == 'start: a | b\na: "x"\nb: B\nB: "x"\n'
    assert parse_tree(text, "x").children[0].data == "a"


def test_grammar_files_are_read_next_to_the_program(tmp_path) -> None:
    (tmp_path / "expr.lark").write_text(EXPR)
    program = tmp_path / "q.lmq"
    program.write_text('"A: [E]" where GRAMMAR(E, file="expr.lark")\n')
    checked = compile_source(program.read_text(), str(program))
    atom = checked.program.body[0].where
    assert atom.kind == "grammar" and atom.args[0].value == EXPR and not atom.keywords


def test_errors_in_a_grammar_file_point_into_the_file(tmp_path) -> None:
    (tmp_path / "bad.lark").write_text('start: a\na: "x" | b\n')
    program = tmp_path / "q.lmq"
    program.write_text("")
    error = error_of('"A: [E]" where GRAMMAR(E, file="bad.lark")', str(program))
    assert error.source.filename.endswith("bad.lark")
    assert (error.line, error.column) == (2, 10)
    assert "^" in str(error) and 'a: "x" | b' in str(error)


@pytest.mark.parametrize("name, words", [
    ("../secret.lark", "inside the program's folder"),
    ("/etc/passwd", "inside the program's folder"),
    ("notes.txt", ".lark file"),
    ("missing.lark", "cannot read"),
])
def test_grammar_files_stay_inside_the_program_folder(tmp_path, name, words) -> None:
    (tmp_path / "notes.txt").write_text("start: \"a\"\n")
    (tmp_path.parent / "secret.lark").write_text("start: \"a\"\n")
    (tmp_path / "q.lmq").write_text("")
    error = error_of(f'"A: [E]" where GRAMMAR(E, file={name!r})', str(tmp_path / "q.lmq"))
    assert isinstance(error, LmqCompileError) and words in error.message
    assert error.line == 1


@pytest.mark.parametrize("program, words", [
    ('"A: [E]" where GRAMMAR(E, file="a.lark", "start: \\"a\\"")', "positional"),
    ('"A: [E]" where GRAMMAR(E, "start: \\"a\\"", file="a.lark")', "not both"),
    ('"A: [E]" where GRAMMAR(E, file=name)', "string literal"),
    ('"A: [E]" where GRAMMAR(E, "start: \\"a\\"", tree="yes")', "True or False"),
    ('"A: [E]" where GRAMMAR(E, 3)', "needs Lark grammar text"),
    ('"A: [E]" where GRAMMAR(E)', "takes 2 arguments"),
])
def test_grammar_argument_errors(program, words) -> None:
    error = error_of(program)
    assert words in str(error)


@pytest.mark.parametrize("constraint, culprit", [
    ('GRAMMAR(E, g) and REGEX(E, "[0-9]+")', 'REGEX(E, "[0-9]+")'),
    ('GRAMMAR(E, g) and len(E) < 5', "len(E) < 5"),
    ('GRAMMAR(E, g) and STARTS_WITH(E, "a")', 'STARTS_WITH(E, "a")'),
    ('GRAMMAR(E, g) and GRAMMAR(E, h)', "another GRAMMAR"),
    ('GRAMMAR(E, g) and not E in ["a"]', 'not E in ["a"]'),
    ('GRAMMAR(E, g) and STOPS_BEFORE(E, ".") and len(TOKENS(E)) > 3',
     "len(TOKENS(E)) > 3"),
])
def test_combinations_that_cannot_stay_exact_are_compile_errors(constraint, culprit) -> None:
    error = error_of(f'"A: [E]" where {constraint}')
    assert isinstance(error, LmqCompileError)
    assert culprit in error.message or culprit in str(error)
    assert error.source.text[error.span.start:error.span.end] in (culprit, "GRAMMAR(E, g)") or \
        culprit == "another GRAMMAR"


def test_a_typed_hole_cannot_take_a_grammar() -> None:
    error = error_of('"A: [E: int]" where GRAMMAR(E, g)')
    assert "typed hole 'E'" in error.message


def test_finite_values_are_the_sentences_among_them() -> None:
    tree = rg.And((rg.Grammar(EXPR), rg.OneOf(("1+2", "x", "3", "1+"))))
    assert finite_form(tree) == rg.OneOf(("1+2", "3"))
    healed = rg.Concat((rg.Literal(" "), tree))
    assert finite_form(healed) == rg.Concat((rg.Literal(" "), rg.OneOf(("1+2", "3"))))
    assert is_sentence(EXPR, " 1 + 2 ") and not is_sentence(EXPR, "1 +")


def test_renaming_start_leaves_strings_regexes_and_comments_alone() -> None:
    text = 'start: "start" /start/ restart // start\nrestart: start_x\nstart_x: "a"\n'
    assert renamed(text, "start", "v") == \
        'v: "start" /start/ restart // start\nrestart: start_x\nstart_x: "a"\n'


def test_lark_text_of_a_generation_language() -> None:
    grammar = rg.Grammar('start: x\nx: "a" | "(" start ")"\n')
    tree = rg.StopsBefore(rg.Concat((rg.Literal(" "), grammar)), ("\n", ";"))
    assert grammar_parts(tree) == (" ", grammar, ("\n", ";"))
    text = lark_text(tree)
    assert text.startswith('%llguidance {"no_forcing": true}\n'
                           'start: " " lmq_value _LMQ_STOP?\nlmq_value: x\n')
    assert 'x: "a" | "(" lmq_value ")"' in text
    assert '_LMQ_STOP: ("\\n" | ";") /(?s:.*)/' in text
    check_grammar(text.split("\n", 1)[1].replace("/(?s:.*)/", '"x"'))  # Lark reads it too
    assert grammar_parts(rg.Regex("a")) is None


def test_lark_text_of_a_json_schema_closes_objects() -> None:
    text = lark_text(rg.json_node({"type": "object", "properties": {"a": {"type": "integer"}}}))
    assert '"additionalProperties": false' in text and '"whitespace_flexible": false' in text
    assert "start: lmq_value\nlmq_value: %json {" in text
