"""Programs with grammars, end to end: examples/grammar.lmq (arithmetic evaluated by a tool,
a SQL subset) and programs over an expression language, a JSON-like language and a command
language, on tiny-random and on SmolLM2; every value parses with Lark."""

from __future__ import annotations

from pathlib import Path

import pytest

import lmq
from lmq import grammars

pytest.importorskip("llguidance")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "grammar.lmq"
EXPR = (ROOT / "examples" / "expr.lark").read_text()
SQL = (ROOT / "examples" / "sql.lark").read_text()
JSONISH = (ROOT / "tests" / "cases" / "grammars" / "jsonish.lark").read_text()
COMMANDS = (ROOT / "tests" / "cases" / "grammars" / "commands.lark").read_text()
PROGRAMS = [
    ('"Compute 12 times 7 plus 3. As an expression: [E]" where GRAMMAR(E, g) and '
     'STOPS_BEFORE(E, "\\n") and len(TOKENS(E)) < 16', EXPR, "E"),
    ('"A JSON object describing a cat named Tom, aged 3: [J]" where GRAMMAR(J, g) and '
     'len(TOKENS(J)) < 32', JSONISH, "J"),
    ('"Robot commands to walk north 3 steps then say hello: [C]" where GRAMMAR(C, g) and '
     'len(TOKENS(C)) < 24', COMMANDS, "C"),
]


def _example(model: str) -> lmq.Result:
    from examples.tools import evaluate  # noqa: PLC0415  (the example's own tool)

    return lmq.query(str(EXAMPLE), model=model, tools={"evaluate": evaluate})()


@pytest.fixture(autouse=True)
def _importable_examples(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


@pytest.mark.parametrize("model", ["tiny-random", pytest.param("smollm2", marks=pytest.mark.smollm2)])
def test_the_grammar_example_gives_sentences(model):
    result = _example(model)
    expression = result.prompt.split("parentheses: ", 1)[1].split("\n", 1)[0]
    assert grammars.is_sentence(EXPR, expression)
    assert result["EXPR"] == grammars.parse_tree(EXPR, expression)
    assert grammars.is_sentence(SQL, result["QUERY"]), result["QUERY"]
    assert "It evaluates to " in result.prompt


@pytest.mark.parametrize("model", ["tiny-random", pytest.param("smollm2", marks=pytest.mark.smollm2)])
@pytest.mark.parametrize("source, grammar, hole", PROGRAMS, ids=["expr", "json", "commands"])
def test_held_out_programs_give_sentences(model, source, grammar, hole):
    result = lmq.query(source, model=model)(g=grammar)
    assert grammars.is_sentence(grammar, result[hole]), result[hole]


@pytest.mark.smollm2
def test_smollm2_writes_the_expression_it_was_asked_for():
    result = lmq.query(PROGRAMS[0][0], model="smollm2")(g=EXPR)
    assert "12" in result["E"] and "7" in result["E"]


def test_combination_errors_point_at_the_constraint():
    with pytest.raises(lmq.LmqCompileError) as caught:
        lmq.query('"E: [E]" where GRAMMAR(E, g) and len(TOKENS(E)) < 9 and ENDS_WITH(E, ")")')
    error = caught.value
    assert "ENDS_WITH" in error.message and error.column == 57
    assert 'ENDS_WITH(E, ")")' in str(error).split("\n")[1]
