"""JSON(X, schema): guided values are compact JSON valid against random small schemas, every
valid compact instance (within the bounds) is accepted and reachable by every tokenization,
bounds and unsupported keywords behave as documented."""

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmq import regular as rg
from lmq.errors import LmqCompileError
from lmq.runtime.automata.fsm import compile_regular, dfa_accepts
from lmq.runtime.automata.fsm_json import integer_range
from lmq.runtime.automata.guide import DfaGuide

jsonschema = pytest.importorskip("jsonschema")

TEXTS = ["", "a", "é", "中文", '"', "\\", "\n", "x y", "😀", "/", "\x01"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-50, 50), st.sampled_from(TEXTS),
                    st.sampled_from([0.5, -2.25, 1e20]))


@st.composite
def strings(draw):
    low = draw(st.integers(0, 3))
    schema = {"type": "string", "maxLength": draw(st.integers(low, 5))}
    if low:
        schema["minLength"] = low
    return schema


@st.composite
def integers(draw):
    schema: dict = {"type": "integer"}
    low = draw(st.one_of(st.none(), st.integers(-1000, 1000)))
    if low is not None:
        schema[draw(st.sampled_from(["minimum", "exclusiveMinimum"]))] = low
    if draw(st.booleans()):
        schema[draw(st.sampled_from(["maximum", "exclusiveMaximum"]))] = \
            (low or 0) + draw(st.integers(2, 3000))  # never an empty range
    return schema


LEAVES = st.one_of(
    strings(), integers(),
    st.sampled_from([{"type": "number"}, {"type": "number", "minimum": 0},
                     {"type": "boolean"}, {"type": "null"}, {"type": "string", "format": "date"},
                     {"type": ["integer", "null"]}, {"type": "string", "pattern": "^[a-c]+x$"},
                     {"type": "string", "pattern": "é[0-9]"},
                     {"oneOf": [{"type": "string", "maxLength": 2}, {"type": "integer"}]}]),
    st.lists(SCALARS, min_size=1, max_size=4, unique_by=json.dumps).map(lambda v: {"enum": v}),
    SCALARS.map(lambda v: {"const": v}))


def _containers(inner):
    arrays = st.builds(lambda item, low, extra: {"type": "array", "items": item,
                                                 "minItems": low, "maxItems": low + extra},
                       inner, st.integers(0, 1), st.integers(0, 2))
    objects = st.lists(st.tuples(st.sampled_from(["a", "b", "name", "é", "x y"]), inner,
                                 st.booleans()), min_size=1, max_size=3,
                       unique_by=lambda t: t[0]).map(
        lambda props: {"type": "object", "properties": {k: v for k, v, _ in props},
                       "required": [k for k, _, needed in props if needed]})
    return st.one_of(arrays, objects, st.lists(inner, min_size=2, max_size=2).map(
        lambda options: {"anyOf": options}))


SCHEMAS = st.recursive(LEAVES, _containers, max_leaves=4)


def instance(schema: dict, draw) -> object:
    """A random instance of a schema from ``SCHEMAS`` (within lmq's bounds)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    if "anyOf" in schema or "oneOf" in schema:
        return instance(draw(st.sampled_from(schema.get("anyOf") or schema["oneOf"])), draw)
    kind = schema["type"]
    if isinstance(kind, list):
        kind = draw(st.sampled_from(kind))
    if kind == "string":
        if "format" in schema:
            return draw(st.dates()).isoformat()
        if "pattern" in schema:
            return draw(st.from_regex(r"[a-c]+x" if "^" in schema["pattern"] else
                                      r"[ab ]*é[0-9][a\n]*", fullmatch=True)).replace("\n", "a")
        return draw(st.text(st.sampled_from("ab é中😀\"\\\n\x01/"), min_size=schema.get(
            "minLength", 0), max_size=schema.get("maxLength", 8)))
    if kind == "integer":
        low = max(schema.get("minimum", -10 ** 6), schema.get("exclusiveMinimum", -10 ** 6) + 1)
        high = min(schema.get("maximum", 10 ** 6), schema.get("exclusiveMaximum", 10 ** 6) - 1)
        return draw(st.integers(low, high))
    if kind == "number":
        return draw(st.floats(0 if "minimum" in schema else -1e6, 1e6).map(lambda x: round(x, 3)))
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "null":
        return None
    if kind == "array":
        count = draw(st.integers(schema["minItems"], schema["maxItems"]))
        return [instance(schema["items"], draw) for _ in range(count)]
    return {k: instance(v, draw) for k, v in schema["properties"].items()
            if k in schema["required"] or draw(st.booleans())}


def compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def assert_valid(text: str, schema: dict) -> None:
    value = json.loads(text)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    outside = re.sub(r'"(\\.|[^"\\])*"', '""', text)  # drop string contents
    assert not re.search(r"\s", outside), text


@settings(max_examples=200, deadline=None)
@given(SCHEMAS, st.data())
def test_valid_instances_are_accepted(schema, data):
    dfa = compile_regular(rg.json_node(schema))
    for _ in range(3):
        value = instance(schema, data.draw)
        jsonschema.validate(value, schema)
        assert dfa_accepts(dfa, compact(value).encode()), (schema, compact(value))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(SCHEMAS, st.randoms(use_true_random=False))
def test_guided_values_are_valid(guide_checks, schema, rnd):
    guide = DfaGuide(compile_regular(rg.json_node(schema)), guide_checks.index)
    for value in guide_checks.finished_values(guide, rnd, walks=3, steps=12):
        assert_valid(value, schema)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(SCHEMAS, st.data())
def test_every_tokenization_of_an_instance_is_reachable(guide_checks, schema, data):
    guide = DfaGuide(compile_regular(rg.json_node(schema)), guide_checks.index)
    guide_checks.assert_reachable(guide, compact(instance(schema, data.draw)))


@settings(max_examples=300, deadline=None)
@given(st.integers(-10 ** 5, 10 ** 5), st.integers(0, 10 ** 5), st.integers(-10 ** 5, 10 ** 5))
def test_integer_ranges(low, width, probe):
    high = low + width
    pattern = integer_range(low, high)
    for n in (probe, low, high, low - 1, high + 1, 0, -probe):
        assert (re.fullmatch(pattern, str(n)) is not None) == (low <= n <= high), (low, high, n)
    assert not re.fullmatch(pattern, "-0") and not re.fullmatch(pattern, "01")


def accepts(schema, text: str) -> bool:
    return dfa_accepts(compile_regular(rg.json_node(schema)), text.encode())


def test_default_bounds():
    assert accepts({"type": "string"}, f'"{"é" * 256}"')
    assert not accepts({"type": "string"}, f'"{"a" * 257}"')
    assert accepts({"type": "string", "maxLength": 300}, f'"{"a" * 300}"')
    many = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}}
    assert accepts(many, "[" + ",".join("7" * 16) + "]")
    assert not accepts(many, "[" + ",".join("7" * 17) + "]")
    assert accepts({"type": "integer"}, "-" + "9" * 16) and not accepts({"type": "integer"},
                                                                       "1" * 17)
    assert accepts({"type": "number"}, "1." + "5" * 16 + "e-12")
    assert not accepts({"type": "number"}, "1." + "5" * 17)


@pytest.mark.parametrize("text, ok", [
    ('"a\\n\\t\\"\\\\\\/\\u00e9"', True), ('"\\ud83d\\ude00"', False), ('"\\x"', False),
    ('"tab\there"', False), ('"é😀中"', True), ('"\x7f"', True)])
def test_string_escapes(text, ok):
    assert accepts({"type": "string", "minLength": 1}, text) == ok


def test_objects_keep_the_schema_order():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "null"},
                                               "c": {"type": "boolean"}}, "required": ["b"]}
    good = ['{"b":null}', '{"a":1,"b":null}', '{"b":null,"c":true}', '{"a":-3,"b":null,"c":false}']
    bad = ['{}', '{"a":1}', '{"b":null,"a":1}', '{"b":null,}', '{ "b":null}', '{"b": null}']
    assert all(accepts(schema, t) for t in good) and not any(accepts(schema, t) for t in bad)
    assert accepts({"type": "object"}, "{}") and not accepts({"type": "object"}, '{"a":1}')


def test_references_and_combinations():
    schema = {"$defs": {"age": {"type": "integer", "minimum": 0, "maximum": 150}},
              "type": "array", "items": {"$ref": "#/$defs/age"}, "maxItems": 3}
    assert accepts(schema, "[0,150]") and not accepts(schema, "[151]")
    nullable = {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]}
    assert accepts(nullable, "null") and accepts(nullable, '"abc"')
    assert accepts({"allOf": [{"type": "boolean"}]}, "true")
    assert accepts({"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$"}, '"AB-12"')
    assert not accepts({"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$"}, '"AB-"')
    assert accepts({"type": "string", "pattern": "x"}, '"abxcd"')
    assert accepts(True, "null") and not accepts(False, "null")


@pytest.mark.parametrize("schema, message", [
    ({"type": "integer", "multipleOf": 2}, "'multipleOf' is not supported"),
    ({"type": "array", "uniqueItems": True}, "'uniqueItems' is not supported"),
    ({"not": {"type": "null"}}, "'not' is not supported"),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "different JSON types"),
    ({"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"},
     "recursive"),
    ({"$ref": "#/$defs/missing"}, "does not resolve"),
    ({"type": "number", "maximum": 3}, "'maximum' is not supported"),
    ({"type": "strin"}, "unknown type"),
    ({"type": "string", "pattern": "(?<=a)b"}, "lookbehind"),
])
def test_unsupported_schemas(schema, message):
    with pytest.raises(LmqCompileError, match=re.escape(message)):
        compile_regular(rg.json_node(schema))


def test_too_large_schema_has_a_hint():
    huge = {"type": "array", "items": {"type": "string", "maxLength": 4000}}
    with pytest.raises(LmqCompileError) as error:
        compile_regular(rg.json_node(huge))
    assert "maxLength" in error.value.hint
    tags = {"type": "array", "items": {"type": "string"}}  # past the budget: lazy, exact
    assert dfa_accepts(compile_regular(rg.json_node(tags)), b'["a","b"]')


def test_node_from_text_and_errors():
    assert rg.json_node('{"type": "null"}') == rg.json_node({"type": "null"})
    for bad in ("{", 3, {"a": {1, 2}}):
        with pytest.raises((TypeError, ValueError)):
            rg.json_node(bad)


def test_the_date_format_admits_exactly_the_calendar_dates():
    import datetime

    from lmq.runtime.automata.fsm_pattern import FORMATS

    pattern = re.compile(FORMATS["date"])
    for year in ("0000", "0001", "0004", "0100", "0400", "1900", "2000", "2023", "2024", "9999"):
        for month in range(0, 14):
            for day in range(0, 33):
                text = f"{year}-{month:02d}-{day:02d}"
                try:
                    datetime.date.fromisoformat(text)
                    valid = True
                except ValueError:
                    valid = False
                assert bool(pattern.fullmatch(text)) == valid, text
