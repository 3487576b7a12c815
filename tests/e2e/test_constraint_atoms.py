"""LABELS, JSON and SPAN end to end on the seeded tiny random model: whatever the (noise)
model prefers, the value satisfies the constraint and has the documented type."""

from __future__ import annotations

import json

import pytest

import lmq

MODEL = "tiny-random"
TOPICS = ["business", "sports", "politics", "science", "technology", "health",
          "entertainment", "travel", "education", "environment"]


def run(source: str, **params):
    return lmq.query(source, model=MODEL)(**params)


@pytest.mark.parametrize("seed", [0, 1])
def test_labels_value_is_a_list_of_distinct_labels(seed):
    result = run(f'sample(seed={seed})\n    "Topics: [T]" where LABELS(T, topics, max=3)\n'
                 'from "tiny-random"', topics=TOPICS)
    value = result.variables["T"]
    assert isinstance(value, list) and 1 <= len(value) <= 3
    assert all(label in TOPICS for label in value) and len(set(value)) == len(value)
    assert result.prompt == "Topics: " + ", ".join(value)


def test_labels_options_and_overlapping_labels():
    labels = ["new", "new york", "york", "中文 ok"]
    result = run('"Cities:[C]" where LABELS(C, labels, sep="; ", min=2, max=4, unique=False)',
                 labels=labels)
    value = result.variables["C"]
    assert 2 <= len(value) <= 4 and all(label in labels for label in value)
    assert result.prompt == "Cities:" + "; ".join(value)


def test_json_value_is_parsed_and_valid():
    jsonschema = pytest.importorskip("jsonschema")
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0,
                                                             "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        "ok": {"type": "boolean"}}, "required": ["name", "age"]}
    result = run('"Person: [P]" where JSON(P, schema)', schema=schema)
    value = result.variables["P"]
    assert isinstance(value, dict)
    jsonschema.validate(value, schema)
    text = result.prompt[len("Person: "):]
    assert json.loads(text) == value and " " not in text.replace(value["name"], "")


def test_json_with_a_literal_schema():
    result = run('"[J]" where JSON(J, {"type": "array", "items": {"type": "integer"}, '
                 '"minItems": 1, "maxItems": 2})')
    value = result.variables["J"]
    assert isinstance(value, list) and 1 <= len(value) <= 2
    assert all(isinstance(v, int) for v in value)


def test_span_value_is_a_substring():
    text = "Oslo is the capital of Norway. Its population is about 700,000 — señor 中文."
    result = run('"Answer: [A]" where SPAN(A, text) and len(TOKENS(A)) < 8', text=text)
    value = result.variables["A"]
    assert value and value in text


def test_span_combines_with_other_constraints():
    result = run('"[A]" where SPAN(A, "red green blue") and STARTS_WITH(A, "gr")')
    assert result.variables["A"].startswith("gr") and result.variables["A"] in "red green blue"


def test_labels_inside_or_is_an_error():
    with pytest.raises(lmq.LmqError, match="top-level"):
        run('"[T]" where LABELS(T, ["a", "b"]) or T == "c"')


def test_unsatisfiable_labels_at_run_time_name_the_hole():
    with pytest.raises(lmq.LmqConstraintError, match="'T'"):
        run('"[T]" where LABELS(T, labels, min=3)', labels=["a", "b"])


def test_invalid_schema_is_reported():
    with pytest.raises(lmq.LmqError, match="multipleOf"):
        run('"[J]" where JSON(J, schema)', schema={"type": "integer", "multipleOf": 2})
