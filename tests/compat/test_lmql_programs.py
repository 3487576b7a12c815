"""LMQL's documented constructs, each as a small program written after LMQL's public
documentation (the header of each file in ``programs/`` names the page), compiled and run
on the tiny random model: each must run with the meaning LMQL documents, or fail with the
one clear message lmq gives for it (the "Coming from LMQL" section of the language
reference lists every difference).

``EXPECTED`` holds, per program, either a check of its result or the error it must give
(its class, a part of its message and, for compile errors, its line).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lmq
from lmq.errors import LmqCompileError, LmqError, LmqRuntimeError, LmqSandboxError, LmqSyntaxError

PROGRAMS = Path(__file__).parent / "programs"


def person(r: Any) -> bool:
    p = r["PERSON_DATA"]
    return isinstance(p.name, str) and isinstance(p.age, int) and isinstance(p.job, str) \
        and r.return_value is None and repr(p).startswith("Person(name=")


RUNS: dict[str, Callable[[Any], bool]] = {
    "overview": lambda r: r["CLS"] in (" positive", " neutral", " negative")
    and "\n" not in r["ANALYSIS"],
    "distribution_clause": lambda r: abs(sum(r.distribution["CLS"].values()) - 1) < 1e-6
    and r["CLS"] in r.distribution["CLS"],
    "inline_distribution": lambda r: set(r.distribution["WHO"]) == {"Alice", "Bob"}
    and r.prompt.startswith("Greet Alice\n:Hello "),
    "unindented_decoder": lambda r: r.prompt.startswith("A few things"),
    "upper_case_clauses": lambda r: len(r["NAME"]) < 10,
    "model_object": lambda r: r.prompt.startswith("Hello"),
    "where_continued": lambda r: r["STORY"].count(".") <= 1,
    "set_constraint": lambda r: len(r.values["THING"]) == 4 and all(
        t in ("Volleyball", "Sunscreen", "Bathing Suit") for t in r.values["THING"]),
    "backpack": lambda r: r["ESSENTIAL_THING"] in [t.strip() for t in r.values["THING"]],
    "escaping_json": lambda r: '"' not in r["STRING_VALUE"] and isinstance(r["INT_VALUE"], int)
    and '{\n      "name": "' in r.prompt,
    "decorators": lambda r: r["TEST"] == r["TEST"].upper(),
    "decorator_arguments": lambda r: r["TEST"].startswith("PREFIX: "),
    "decorator_value_and_prompt": lambda r: isinstance(r["ANSWER"], list),
    "nested_query": lambda r: r["ANSWER"] == r["ANSWER"].strip()
    and "Let's think" not in r.prompt,
    "nested_query_params": lambda r: r["ANSWER"] in ("Paris", "London", "Berlin")
    and r.prompt.endswith(r["ANSWER"]),
    "nested_query_macro": lambda r: r["ITEMS"].startswith("-") and r["ITEMS"] in r.prompt,
    "dataclass_hole": person,
    "assert_holds": lambda r: isinstance(r["N"], int),
    "imports": lambda r: r.return_value == [True, True, True],
    "context_prompt": lambda r: r.return_value == r["ICON"],
    "decoder_options": lambda r: r.prompt.startswith("Hello "),
    "typed_holes": lambda r: isinstance(r["AGE"], int) and isinstance(r["WHO"], str),
}
# LMQL names models that do not exist here; the caller's model wins over the program's.
CALLER_MODEL = {"model_object": None}
FAILS: dict[str, tuple[type[LmqError], str, int | None]] = {
    "streaming_decorator": (LmqCompileError, "streaming decorators are not available", 2),
    "program_state_import": (LmqSandboxError, "importing from 'lmql.runtime.program_state' "
                             "is not allowed", 2),
    "assert_fails": (LmqRuntimeError, "assertion failed: W == \"never\" (W is not 'never')", 3),
    "beam_var": (LmqSyntaxError, "the decoder 'beam_var' is not available in lmq", 2),
    "eval_refused": (LmqSandboxError, "'eval' is not available in lmq programs", 2),
    "try_statement": (LmqSyntaxError, "'try' statements are not available", 2),
    "plain_class": (LmqCompileError, "classes are not available in lmq programs", 2),
    "keyword_prefix": (LmqSyntaxError, "invalid interpolation", 2),
}


def test_every_program_has_an_expectation() -> None:
    names = {path.stem for path in PROGRAMS.glob("*.lmq")}
    assert names == set(RUNS) | set(FAILS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_documented_program_runs(name: str) -> None:
    q = lmq.query(PROGRAMS / f"{name}.lmq", model=CALLER_MODEL.get(name, "tiny-random"))
    assert q.params == () and q.checked.tools == ()  # nothing LMQL defines is a parameter
    result = q()
    result = result[0] if isinstance(result, list) else result
    assert RUNS[name](result), result


@pytest.mark.parametrize("name", sorted(FAILS))
def test_documented_difference_has_one_clear_message(name: str) -> None:
    kind, message, line = FAILS[name]
    with pytest.raises(LmqError) as caught:
        lmq.query(PROGRAMS / f"{name}.lmq", model="tiny-random")()
    error = caught.value
    assert type(error) is kind, (type(error), str(error))
    assert message in str(error)
    assert error.line == line
