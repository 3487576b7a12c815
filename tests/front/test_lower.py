"""Lowering: parse trees become IR nodes with spans that point into the file."""

from __future__ import annotations

import pytest

from lmq import ir
from lmq.errors import LmqCompileError, LmqSandboxError, LmqSyntaxError, Source
from lmq.lower import lower_source, program_holes
from lmq.lower_expr import decode_literal

C, N = ir.Const, ir.Name


def lower(text: str) -> ir.Program:
    return lower_source(Source(text, "t.lmq"))


def stmt(text: str) -> ir.Stmt:
    (result,) = lower(text + "\n").body
    return result


def expr(text: str) -> ir.Expr:
    return stmt("x = " + text).value  # type: ignore[union-attr]


def where(text: str, holes: str = "[A][B]") -> ir.Constraint:
    prompt = stmt(f'"{holes}" where {text}')
    assert isinstance(prompt, ir.Prompt) and prompt.where is not None
    return prompt.where


def text_at(source: str, node: ir.Node) -> str:
    return source[node.span.start:node.span.end]


# ------------------------------------------------------------------ expressions

@pytest.mark.parametrize("text, expected", [
    ("1", C(1)), ("1.5", C(1.5)), ("0x10", C(16)), ("1_000", C(1000)), ("None", C(None)),
    ("True", C(True)), ("'a' \"b\"", C("ab")), ("r'\\d' '\\t'", C("\\d\t")),
    ("'''a\nb'''", C("a\nb")), ("[1, 2]", ir.ListExpr((C(1), C(2)))),
    ("(1,)", ir.TupleExpr((C(1),))), ("()", ir.TupleExpr(())), ("{}", ir.DictExpr((), ())),
    ("{1}", ir.SetExpr((C(1),))), ("{1: 2}", ir.DictExpr((C(1),), (C(2),))),
    ("a + b * c", ir.BinOp("+", N("a"), ir.BinOp("*", N("b"), N("c")))),
    ("a - b - c", ir.BinOp("-", ir.BinOp("-", N("a"), N("b")), N("c"))),
    ("-a ** 2", ir.UnaryOp("-", ir.BinOp("**", N("a"), C(2)))),
    ("not a", ir.UnaryOp("not", N("a"))),
    ("a and b or c", ir.BoolOp("or", (ir.BoolOp("and", (N("a"), N("b"))), N("c")))),
    ("a < b <= c", ir.Compare(N("a"), ("<", "<="), (N("b"), N("c")))),
    ("a not in b", ir.Compare(N("a"), ("not in",), (N("b"),))),
    ("a is not b", ir.Compare(N("a"), ("is not",), (N("b"),))),
    ("a if b else c", ir.IfExp(N("b"), N("a"), N("c"))),
    ("f(1, k=2)", ir.Call(N("f"), (C(1),), (ir.Keyword("k", C(2)),))),
    ("a.b", ir.Attribute(N("a"), "b")), ("a[1]", ir.Subscript(N("a"), C(1))),
    ("a[1:]", ir.Subscript(N("a"), ir.Slice(C(1), None, None))),
    ("a[::2]", ir.Subscript(N("a"), ir.Slice(None, None, C(2)))),
    ("a[1, 2]", ir.Subscript(N("a"), ir.TupleExpr((C(1), C(2))))),
    ("[y for y in z if y]", ir.Comprehension(
        "list", N("y"), None, (ir.Generator(N("y"), N("z"), (N("y"),)),))),
    ("{k: v for k, v in z}", ir.Comprehension(
        "dict", N("k"), N("v"), (ir.Generator(ir.TupleExpr((N("k"), N("v"))), N("z")),))),
    ("sum(y for y in z)", ir.Call(N("sum"), (ir.Comprehension(
        "gen", N("y"), None, (ir.Generator(N("y"), N("z")),)),))),
    ("f'a{b:>3}c{{'", ir.FString(("a", ir.Interp(N("b"), ">3"), "c{"))),
    ("f'[x]' 'y'", C("[x]y")),
    ("rf'\\n{a}'", ir.FString(("\\n", ir.Interp(N("a"))))),
])
def test_expressions(text: str, expected: ir.Expr) -> None:
    assert expr(text) == expected


@pytest.mark.parametrize("escape, value", [
    ("\\n", "\n"), ("\\t", "\t"), ('\\"', '"'), ("\\\\", "\\"), ("\\u00e9", "é"),
    ("\\U0001F600", "😀"), ("\\x41", "A"), ("\\101", "A"), ("\\N{BULLET}", "•"),
    ("\\d", "\\d"), ("\\\n", ""),
])
def test_escapes(escape: str, value: str) -> None:
    assert decode_literal(escape, raw=False)[0] == value
    assert expr(f'"{escape}"') == C(value)
    assert stmt(f'"{escape}"') == ir.Prompt((ir.Text(value),) if value else ())


def test_spans_point_into_the_file() -> None:
    source = 'x = f(a, "{b}")  # c\n'
    call = stmt(source.rstrip("\n")).value  # type: ignore[union-attr]
    assert text_at(source, call) == 'f(a, "{b}")'
    assert text_at(source, call.args[0]) == "a"
    assert (call.span.line, call.span.column, call.span.end_column) == (1, 5, 16)


# ------------------------------------------------------------------ statements

def test_statements() -> None:
    program = lower("a, b[0] = c = 1\nx += 2\nf(x)\npass\nfor i in y:\n    break\n"
                    "while x:\n    continue\nreturn x\n")
    assign, aug, call, pass_, loop, while_, ret = program.body
    assert assign == ir.Assign((ir.TupleExpr((N("a"), ir.Subscript(N("b"), C(0)))), N("c")),
                               C(1))
    assert aug == ir.AugAssign(N("x"), "+", C(2))
    assert call == ir.ExprStmt(ir.Call(N("f"), (N("x"),)))
    assert pass_ == ir.Pass()
    assert loop == ir.For(N("i"), N("y"), (ir.Break(),))
    assert while_ == ir.While(N("x"), (ir.Continue(),))
    assert ret == ir.Return(N("x"))


def test_elif_chains_nest_in_orelse() -> None:
    result = stmt("if a:\n    pass\nelif b:\n    x = 1\nelse:\n    y = 2")
    assert result == ir.If(N("a"), (ir.Pass(),), (
        ir.If(N("b"), (ir.Assign((N("x"),), C(1)),), (ir.Assign((N("y"),), C(2)),)),))


def test_query_and_imports() -> None:
    program = lower("from lmq.stdlib.labels import a as b, c\nimport os\n"
                    "query q(x, y):\n    return x\n")
    assert program.body[0] == ir.Import("lmq.stdlib.labels", (("a", "b"), ("c", "c")))
    assert program.body[1] == ir.Import("os", (), "os")
    assert program.body[2] == ir.QueryDef("q", ("x", "y"), (ir.Return(N("x")),))


@pytest.mark.parametrize("text, error, message", [
    ("f(x) = 1", LmqSyntaxError, "cannot assign to a function call"),
    ("1 = x", LmqSyntaxError, "cannot assign to a literal"),
    ("x.a = 1", LmqSandboxError, ("assignment to an attribute ('.a = ...') is not allowed in "
     "lmq programs (sandbox)")),
    ("x.a += 1", LmqSandboxError, ("assignment to an attribute ('.a = ...') is not allowed in "
     "lmq programs (sandbox)")),
    ("a, b += 1", LmqSyntaxError, "cannot use '+=' with a tuple"),
    ("f(k=1, 2)", LmqSyntaxError, "positional argument follows keyword argument"),
    ("f(k=1, k=2)", LmqSyntaxError, "keyword argument 'k' repeated"),
    ("query q(a, a):\n    pass", LmqSyntaxError, "duplicate parameter 'a'"),
    ('"x" from "m" where x', LmqCompileError, "unknown hole 'x' in constraint"),
    ('r"[A]"', LmqSyntaxError, ("a prompt string has no prefix: prompt strings already "
     "interpolate {expr}, and holes need escapes to be processed")),
])
def test_statement_errors(text: str, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        lower(text + "\n")
    assert caught.value.message == message


# ------------------------------------------------------------------ prompt strings

def test_prompt_parts() -> None:
    source = ('"{:system}Hi {name:>5}!\\n[@strip W] [N: int] [F: float] [B: bool] '
              "[R: r'[0-9]+'] [Q: ask] [S: ask(1, k=2)] [[x]] {{y}}\"")
    parts = stmt(source).parts  # type: ignore[union-attr]
    assert parts == (
        ir.Tag("system"), ir.Text("Hi "), ir.Interp(N("name"), ">5"), ir.Text("!\n"),
        ir.Hole("W", decorators=(N("strip"),)), ir.Text(" "), ir.Hole("N", type="int"),
        ir.Text(" "), ir.Hole("F", type="float"), ir.Text(" "), ir.Hole("B", type="bool"),
        ir.Text(" "), ir.Hole("R", regex="[0-9]+"), ir.Text(" "), ir.Hole("Q", query=N("ask")),
        ir.Text(" "), ir.Hole("S", query=ir.Call(N("ask"), (C(1),), (ir.Keyword("k", C(2)),))),
        ir.Text(" [x] {y}"))
    for part in parts:
        assert source[part.span.start:part.span.end]
    hole = parts[4]
    assert text_at(source, hole) == "[@strip W]"
    assert text_at(source, parts[2]) == "{name:>5}"


def test_regex_hole_pattern_is_taken_literally() -> None:
    (hole,) = stmt('"[R: r\'\\d{2}[{]\']"').parts  # type: ignore[union-attr]
    assert hole == ir.Hole("R", regex="\\d{2}[{]")


def test_spans_inside_triple_quoted_prompt() -> None:
    source = '"""line one\n  [A] {x}\n"""\n'
    prompt = stmt(source.rstrip("\n"))
    hole = prompt.parts[1]  # type: ignore[union-attr]
    assert (hole.span.line, hole.span.column) == (2, 3)
    assert text_at(source, hole) == "[A]"


def test_adjacent_literals_make_one_prompt() -> None:
    prompt = stmt('"a[A]" \'b[B]\'')
    assert [type(p).__name__ for p in prompt.parts] == ["Text", "Hole", "Text", "Hole"]


def test_one_line_clauses_move_to_the_program() -> None:
    program = lower('argmax "[A]" from "m" where INT(A) prefer context > parametric\n')
    assert program.body == (ir.Prompt((ir.Hole("A"),)),)
    assert program.model == C("m") and program.where == ir.Atom("int", "A")
    assert program.prefer == ir.Prefer(("context", "parametric"))


@pytest.mark.parametrize("text, message", [
    ('argmax\n    "[A]"\nwhere INT(A)\nwhere INT(A)', "duplicate 'where' clause"),
    ('argmax "[A]" where INT(A)\nwhere INT(A)', "duplicate 'where' clause"),
    ('argmax\n    "[A]"\nprefer context\nfrom "m"', ("the 'from' clause must come before the "
     "'prefer' clause")),
    ('"{:sytem}"', "unknown tag '{:sytem}'"),
    ('"[A]" prefer contxt', "unknown knowledge source 'contxt'"),
    ('"[A]" prefer context > context', "'context' appears twice in the preference"),
    ('"[A]" prefer context with mod="x"', "unknown option 'mod' for prefer"),
    ('"[A]" prefer context with mode="cascad"', "unknown prefer mode 'cascad'"),
    ('"{:context}[A]"', "a hole cannot be inside a {:context} section"),
    ('"\\N{NOT A NAME}"', "unknown Unicode character name"),
])
def test_prompt_and_clause_errors(text: str, message: str) -> None:
    with pytest.raises((LmqSyntaxError, LmqCompileError)) as caught:
        lower(text + "\n")
    assert caught.value.message == message


def test_knowledge_section_ends_at_next_tag() -> None:
    prompt = stmt('"{:context}doc{:user}Q?[A]"')
    assert isinstance(prompt.parts[-1], ir.Hole)  # type: ignore[union-attr]


# ------------------------------------------------------------------ constraints

def atom(kind: str, hole: str, op: str | None = None, *args: ir.Expr,
         keywords: tuple = ()) -> ir.Atom:
    return ir.Atom(kind, hole, op, args, keywords)


@pytest.mark.parametrize("text, expected", [
    ("len(TOKENS(A)) < 5", atom("token_len", "A", "<", C(5))),
    ("5 > len(TOKENS(A))", atom("token_len", "A", "<", C(5))),
    ("len(A) >= 2", atom("char_len", "A", ">=", C(2))),
    ("1 < len(A) < 4", ir.And((atom("char_len", "A", ">", C(1)),
                               atom("char_len", "A", "<", C(4))))),
    ("A in L", atom("in", "A", None, N("L"))),
    ("A not in ['x']", ir.Not(atom("in", "A", None, ir.ListExpr((C("x"),))))),
    ("A == 'x'", atom("eq", "A", None, C("x"))),
    ("'x' == A", atom("eq", "A", None, C("x"))),
    ("A != 'x'", ir.Not(atom("eq", "A", None, C("x")))),
    ("'x' in A", atom("contains", "A", None, C("x"))),
    ("'x' not in A", ir.Not(atom("contains", "A", None, C("x")))),
    ("not 'x' in A", ir.Not(atom("contains", "A", None, C("x")))),
    ("STARTS_WITH(A, 's')", atom("starts_with", "A", None, C("s"))),
    ("ENDS_WITH(A, 's')", atom("ends_with", "A", None, C("s"))),
    ("STOPS_AT(A, ['a', 'b'])", atom("stops_at", "A", None,
                                     ir.ListExpr((C("a"), C("b"))))),
    ("STOPS_BEFORE(A, 's')", atom("stops_before", "A", None, C("s"))),
    ("INT(A)", atom("int", "A")), ("FLOAT(A)", atom("float", "A")),
    ("REGEX(A, r'\\d')", atom("regex", "A", None, C("\\d"))),
    ("LABELS(A, L, '; ', 2)", atom("labels", "A", None, N("L"), keywords=(
        ir.Keyword("sep", C("; ")), ir.Keyword("min", C(2))))),
    ("JSON(A, S)", atom("json", "A", None, N("S"))),
    ("SPAN(A, T)", atom("span", "A", None, N("T"))),
    ("check(A, 1, k=2)", ir.Atom("pred", "A", "check", (C(1),), (ir.Keyword("k", C(2)),))),
    ("INT(A) or INT(B) and not INT(A)", ir.Or((atom("int", "A"), ir.And((
        atom("int", "B"), ir.Not(atom("int", "A"))))))),
    ("(INT(A) or INT(B)) and INT(A)", ir.And((ir.Or((atom("int", "A"), atom("int", "B"))),
                                              atom("int", "A")))),
])
def test_constraint_atoms(text: str, expected: ir.Constraint) -> None:
    assert where(text) == expected


@pytest.mark.parametrize("text, message", [
    ("INT(ANSWR)", "unknown hole 'ANSWR' in constraint"),
    ("STOPS_AT(x, '.')", "unknown hole 'x' in constraint"),
    ("x in ['a']", "unknown hole 'x' in constraint"),
    ("'a' in x", "unknown hole 'x' in constraint"),
    ("len(x) < 3", "unknown hole 'x' in constraint"),
    ("A", "'A' alone is not a constraint"),
    ("True", ("not a constraint: expected an atom such as STOPS_AT(X, s), X in [...] or "
             "len(TOKENS(X)) < n")),
    ("A < 'b'", ("'<' is not a constraint on a hole's text; use len(X) or len(TOKENS(X)) to "
                "compare lengths, == or 'in' to compare text")),
    ("len(A) in [1]", "a length is compared with one of < <= == != > >=, not 'in'"),
    ("TOKENS(A)", "TOKENS(X) is only used as len(TOKENS(X)) OP n"),
    ("len(A)", "len(...) needs a comparison: len(X) OP n"),
    ("STOP_AT(A, '.')", "unknown constraint 'STOP_AT'"),
    ("INT(A, 1)", "INT takes 1 argument: INT(X)"),
    ("STOPS_AT(A)", "STOPS_AT takes 2 arguments: STOPS_AT(X, ...)"),
    ("STOPS_AT(A, s=1)", "STOPS_AT takes no keyword arguments"),
    ("LABELS(A, L, sepp=',')", "unknown argument 'sepp' for LABELS"),
    ("check()", "the predicate 'check' needs the hole as its first argument"),
    ("a.b(A)", "a predicate in a constraint must be a plain name: pred(X, ...)"),
    ("'a' == 'b'", "neither side of '==' is a hole"),
])
def test_constraint_errors(text: str, message: str) -> None:
    with pytest.raises(LmqCompileError) as caught:
        where(text)
    assert caught.value.message == message


def test_inline_where_sees_only_the_statements_holes() -> None:
    with pytest.raises(LmqCompileError, match="unknown hole 'A'"):
        lower('"[A]"\n"[B]" where INT(A)\n')


def test_program_where_sees_every_top_level_hole() -> None:
    program = lower('argmax\n    "[A]"\n    if x:\n        "[B]"\nwhere INT(A) and INT(B)\n')
    assert program.where == ir.And((atom("int", "A"), atom("int", "B")))
    assert program_holes(program.body) == ["A", "B"]


def test_unknown_hole_points_at_the_name() -> None:
    source = '"Answer:[ANSWER]" where len(TOKENS(ANSWR)) < 10\n'
    with pytest.raises(LmqCompileError) as caught:
        lower(source)
    span = caught.value.span
    assert source[span.start:span.end] == "ANSWR"
    assert caught.value.hint == "did you mean 'ANSWER'?"


def test_pretty_is_deterministic_and_can_leave_spans_out() -> None:
    from lmq.pretty import expression, pretty

    program = lower('argmax\n    "a[A: int]" where A in ["1"]\nfrom "m"\n')
    assert pretty(program) == pretty(lower('argmax\n    "a[A: int]" where A in ["1"]\nfrom "m"\n'))
    assert pretty(program, spans=False) == (
        "Program\n"
        "  decoder: argmax\n"
        "  body:\n"
        "    Prompt\n"
        "      Text 'a'\n"
        "      Hole A type=int\n"
        "      where:\n"
        "        Atom in A (['1'])\n"
        "  from: 'm'\n")
    assert expression(expr("-a ** 2 if b else {1: [c for c in d]}")) == \
        "((-(a ** 2)) if b else {1: [c for c in d]})"
