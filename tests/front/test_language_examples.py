"""Every code example of the language reference (grammar/LANGUAGE.md) parses, lowers and
passes the checks (the examples are part of the specification), the examples below are the
reference's own, and the error example of section 14 is reproduced exactly.

``route`` in the section 9 example is used without an import: like any free name that is
only ever called, it is a tool the host supplies (``lmq check`` lists it); a program can
also import it with ``from lmq.stdlib.routing import route``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmq import ir
from lmq.checks import compile_source
from lmq.errors import LmqCompileError, LmqError

SECTION_1_STANDARD = '''argmax(max_len=512)
    "Q: What is the capital of France?\\n"
    "A:[ANSWER]"
from
    "smollm2"
where
    STOPS_AT(ANSWER, "\\n") and len(TOKENS(ANSWER)) < 20
'''
SECTION_1_ONE_LINE = '''argmax "Capital of Peru:[C]" from "smollm2" where len(TOKENS(C)) < 6'''
SECTION_1_MODERN = '''"Q: What is the capital of France?\\nA:[ANSWER]" where STOPS_AT(ANSWER, "\\n")
'''
SECTION_7_QUERY = '''query yes_no(question):
    "{question} (answer yes or no)[A]" where A in [" yes", " no"]
    return A.strip()

"Is water wet?[R: yes_no('Is water wet?')]"
'''
SECTION_9_ROUTE = '''"Q: {q}\\nA:[A]" from route(q, ["law", "medicine", "general"]) where STOPS_AT(A, "\\n")
'''
SECTION_9_PREFER = '''argmax
    "{:instruction}Assume that the Eiffel Tower stands in Rome.\\n"
    "{:context}The Eiffel Tower is a landmark of Paris.\\n"
    "Question: In which city is the Eiffel Tower?\\nAnswer:[A]" where STOPS_AT(A, "\\n")
prefer
    instruction > context > parametric
'''
SECTION_13_ERROR = '''"Answer:[ANSWER]" where len(TOKENS(ANSWR)) < 10
'''
REFERENCE = (Path(__file__).resolve().parents[2] / "grammar" / "LANGUAGE.md").read_text(
    encoding="utf-8")
BLOCKS = re.findall(r"```\n(.*?)```", REFERENCE, flags=re.S)
PROGRAMS = [block for block in BLOCKS if "error:" not in block and "[" in block]


@pytest.mark.parametrize("example", [SECTION_1_STANDARD, SECTION_1_MODERN, SECTION_7_QUERY,
                                     SECTION_9_ROUTE, SECTION_9_PREFER])
def test_the_examples_here_are_the_references(example: str) -> None:
    assert example in BLOCKS


def test_one_line_examples_are_in_the_reference() -> None:
    assert SECTION_1_ONE_LINE in REFERENCE and SECTION_13_ERROR.strip() in REFERENCE


@pytest.mark.parametrize("source", PROGRAMS)
def test_every_program_of_the_reference_compiles(source: str) -> None:
    compile_source(source)


def test_standard_form() -> None:
    checked = compile_source(SECTION_1_STANDARD)
    program = checked.program
    assert checked.decoder.name == "argmax" and checked.decoder.max_len == 512
    assert program.model == ir.Const("smollm2")
    assert program.where == ir.And((
        ir.Atom("stops_at", "ANSWER", None, (ir.Const("\n"),)),
        ir.Atom("token_len", "ANSWER", "<", (ir.Const(20),)),
    ))
    assert [type(s) for s in program.body] == [ir.Prompt, ir.Prompt]
    assert checked.holes == ("ANSWER",) and checked.params == () and checked.tools == ()


def test_one_line_standard_form_clauses_are_the_programs() -> None:
    program = compile_source(SECTION_1_ONE_LINE).program
    assert program.decoder == ir.Decoder("argmax")
    assert program.model == ir.Const("smollm2")
    assert program.where == ir.Atom("token_len", "C", "<", (ir.Const(6),))
    (prompt,) = program.body
    assert prompt == ir.Prompt((ir.Text("Capital of Peru:"), ir.Hole("C")))


def test_modern_form() -> None:
    checked = compile_source(SECTION_1_MODERN)
    assert checked.program.decoder is None and checked.decoder.name == "argmax"
    (prompt,) = checked.program.body
    assert prompt.parts == (ir.Text("Q: What is the capital of France?\nA:"),
                            ir.Hole("ANSWER"))
    assert prompt.where == ir.Atom("stops_at", "ANSWER", None, (ir.Const("\n"),))


def test_nested_query() -> None:
    checked = compile_source(SECTION_7_QUERY)
    assert list(checked.queries) == ["yes_no"]
    assert checked.holes == ("R",)  # the query's own hole A is not the program's
    query = checked.queries["yes_no"]
    assert query.params == ("question",)
    assert query.body[1] == ir.Return(ir.Call(ir.Attribute(ir.Name("A"), "strip")))
    hole = checked.program.body[1].parts[1]
    assert hole == ir.Hole("R", query=ir.Call(ir.Name("yes_no"), (ir.Const("Is water wet?"),)))


def test_route_is_a_tool() -> None:
    checked = compile_source(SECTION_9_ROUTE)
    assert checked.params == ("q",)
    assert checked.tools == ("route",)
    (prompt,) = checked.program.body
    assert prompt.model == ir.Call(ir.Name("route"), (
        ir.Name("q"), ir.ListExpr((ir.Const("law"), ir.Const("medicine"), ir.Const("general")))))


def test_knowledge_preference() -> None:
    program = compile_source(SECTION_9_PREFER).program
    assert program.prefer == ir.Prefer(("instruction", "context", "parametric"))
    assert program.body[0].parts[0] == ir.Tag("instruction")
    assert program.body[1].parts[0] == ir.Tag("context")


def test_section_13_error_exactly() -> None:
    with pytest.raises(LmqCompileError) as caught:
        compile_source(SECTION_13_ERROR, "query.lmq")
    error = caught.value
    assert (error.line, error.column) == (1, 36)
    assert str(error) == (
        "query.lmq:1:36: error: unknown hole 'ANSWR' in constraint (did you mean 'ANSWER'?)\n"
        '    "Answer:[ANSWER]" where len(TOKENS(ANSWR)) < 10\n'
        "                                       ^^^^^"
    )


def test_section_5_decoder_argument_suggestion() -> None:
    with pytest.raises(LmqCompileError, match=r"unknown argument 'temprature' for decoder "
                                              r"'sample' \(did you mean 'temperature'\?\)"):
        compile_source('sample(n=2, temprature=0.7)\n    "[A]"\n')


# Inline forms from the tables and prose of sections 2, 4, 6 and 9.
INLINE_EXAMPLES = [
    '"[NAME]"', '"[NAME: int]"', '"[NAME: float]"', '"[NAME: bool]"',
    "\"[NAME: r'[0-9]+']\"", "'[NAME: r\"[0-9]+\"]'", '"[NAME: yes_no]"',
    '"[NAME: yes_no(\'q\')]"', '"[@fn NAME]"', '"[@f @g NAME: int]"', '"{expr}"',
    '"{expr:>10}"', '"{:system}x{:user}y{:assistant}[A]"', '"{:instruction}a{:context}b"',
    '"[[ ]] {{ }}"', '"\\n \\t \\" \\\\ \\u00e9"', "'''multi\nline [A]'''", '"""a\n[A]"""',
    '"…[A]" prefer instruction > context',
    '"[X]" where len(TOKENS(X)) < 5', '"[X]" where len(X) <= 5',
    '"[X]" where X in ["a", "b"]', '"[X]" where X not in ["a"]', '"[X]" where X == "s"',
    '"[X]" where X != "s"', '"[X]" where "s" in X', '"[X]" where "s" not in X',
    '"[X]" where not "s" in X', '"[X]" where STARTS_WITH(X, "s")',
    '"[X]" where ENDS_WITH(X, "s")', '"[X]" where STOPS_AT(X, "s")',
    '"[X]" where STOPS_AT(X, ["s1", "s2"])', '"[X]" where STOPS_BEFORE(X, "s")',
    '"[X]" where INT(X)', '"[X]" where FLOAT(X)', '"[X]" where REGEX(X, r"[a-z]+")',
    '"[X]" where LABELS(X, ["a", "b"], sep=", ", min=1, max=None, unique=True)',
    '"[X]" where JSON(X, {"type": "string"})', '"[X]" where SPAN(X, "some text")',
    '"[X]" where pred(X, 1)', '"[S]" where len(TOKENS(S)) > 5 and STOPS_AT(S, ".")',
    '"[A][B]" where INT(A) or INT(B)',
]


@pytest.mark.parametrize("text", INLINE_EXAMPLES)
def test_inline_examples(text: str) -> None:
    try:
        compile_source(text + "\n")
    except LmqError as error:  # pragma: no cover - the message is the useful part
        pytest.fail(str(error))


def test_chat_example() -> None:
    program = compile_source('"{:system}Be brief.{:user}Hi!{:assistant}[ANSWER]"\n').program
    tags = [p.name for p in program.body[0].parts if isinstance(p, ir.Tag)]
    assert tags == ["system", "user", "assistant"]


def test_distribution_example() -> None:
    checked = compile_source('argmax\n    "Review: {r}\\nSentiment:[S]"\n'
                             'distribution S in [" positive", " negative"]\n')
    assert checked.program.distribution == ir.Distribution(
        "S", ir.ListExpr((ir.Const(" positive"), ir.Const(" negative"))))
