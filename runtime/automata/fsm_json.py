"""JSON schema -> :mod:`lmq.regular` tree for ``JSON(X, schema)`` (LANGUAGE.md section 4).

The value is compact JSON (no whitespace outside strings) valid against the schema.
Properties come out in the schema's order, required ones always, optional ones maybe;
only the listed properties are generated. Parts the schema leaves unbounded get the
bounds below. What a finite automaton cannot check exactly (``multipleOf``,
``uniqueItems``, overlapping ``oneOf`` alternatives, ``not``, recursive ``$ref`` …) is a
compile error naming the keyword, never a silently weaker check; ``format`` is enforced for
``date`` (calendar dates: no 30 February), ``time``, ``date-time`` and ``uuid`` and, being
an annotation in JSON Schema, ignored otherwise. A schema without constraints (``{}``,
``true``) generates a scalar (see :func:`_any`) and an object without ``properties``
generates ``{}``: valid, but not every valid value.

String escapes: ``\\uXXXX`` is allowed for non-surrogates only, so every escape decodes to
exactly one character and ``minLength``/``maxLength`` count exactly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from lmq import regular as rg
from lmq.errors import LmqCompileError
from lmq.runtime.automata.fsm_pattern import FORMATS, STRING_CHAR, safe_pattern
from lmq.runtime.automata.nfa import too_large

STRING_CHARS = 256  # default maxLength
ARRAY_ITEMS = 16  # default maxItems
DIGITS = 16  # integer and fraction digits of a number without bounds

_NATURAL = rf"(0|[1-9][0-9]{{0,{DIGITS - 1}}})"
_NUMBER = rf"{_NATURAL}(\.[0-9]{{1,{DIGITS}}})?([eE][-+]?[0-9]{{1,2}})?"

_ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "format",
                "contentMediaType", "contentEncoding"}
_KEYWORDS = {
    "string": {"minLength", "maxLength", "pattern"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "number": {"minimum"},
    "array": {"items", "minItems", "maxItems"},
    "object": {"properties", "required", "additionalProperties"},
    "boolean": set(), "null": set(),
}
_COMMON = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"}


def schema_regular(schema_text: str) -> rg.Regular:
    """The regular tree of compact JSON values valid against the schema (JSON text)."""
    schema = json.loads(schema_text)
    pattern = _Compiler(schema).value(schema)
    return rg.Regex(pattern) if pattern is not None else rg.OneOf(())


def _error(message: str) -> LmqCompileError:
    return LmqCompileError(f"JSON schema: {message}",
                           hint="lmq enforces a bounded subset of JSON Schema (LANGUAGE.md "
                           "section 4)")


def _literal(value: Any) -> str:
    return re.escape(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _alternatives(options: Sequence[str | None]) -> str | None:
    kept = list(dict.fromkeys(o for o in options if o is not None))
    return None if not kept else kept[0] if len(kept) == 1 else "(" + "|".join(kept) + ")"


class _Compiler:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.resolving: list[str] = []

    def value(self, schema: Any) -> str | None:
        """A regex for the schema's values, None when no value is valid."""
        if schema is True or schema == {}:
            return _any()
        if schema is False:
            return None
        if not isinstance(schema, dict):
            raise _error(f"a schema is an object or a boolean, not {schema!r}")
        if "$ref" in schema:
            return self.ref(schema)
        for combinator in ("anyOf", "oneOf", "allOf"):
            if combinator in schema:
                return self.combination(schema, combinator)
        if "enum" in schema or "const" in schema:
            return self.constants(schema)
        types = schema.get("type", self.implied_type(schema))
        if types is None:
            self.check_keywords(schema, set())
            return _any()
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not all(t in _KEYWORDS for t in types):
            raise _error(f"unknown type {schema['type']!r}")
        allowed = set().union(*(_KEYWORDS[t] for t in types))
        self.check_keywords(schema, allowed)
        return _alternatives([getattr(self, "type_" + t)(schema) for t in types])

    def check_keywords(self, schema: dict, allowed: set[str]) -> None:
        for keyword in schema:
            if keyword not in allowed | _COMMON | _ANNOTATIONS:
                raise _error(f"the keyword '{keyword}' is not supported here")

    @staticmethod
    def implied_type(schema: dict) -> str | None:
        implied = {t for t, keywords in _KEYWORDS.items() if keywords & set(schema)}
        if implied == {"integer", "number"}:
            return "number"
        if len(implied) > 1:
            raise _error(f"keywords of several types without a 'type': {sorted(implied)}")
        return implied.pop() if implied else None

    # -- combinators --------------------------------------------------------------------

    def ref(self, schema: dict) -> str | None:
        ref = schema["$ref"]
        if len(schema) > 1 and set(schema) - _ANNOTATIONS - {"$ref"}:
            raise _error("'$ref' next to other keywords is not supported")
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise _error(f"only local references are supported, not {ref!r}")
        if ref in self.resolving:  # unbounded nesting: past any automaton
            raise too_large(f"JSON schema: the recursive reference {ref!r} nests without "
                            "bound", hint="a JSON schema a finite automaton cannot hold "
                            "goes to the grammar engine")
        target = self.root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise _error(f"the reference {ref!r} does not resolve")
            target = target[part]
        self.resolving.append(ref)
        try:
            return self.value(target)
        finally:
            self.resolving.pop()

    def combination(self, schema: dict, combinator: str) -> str | None:
        options = schema[combinator]
        rest = {k: v for k, v in schema.items() if k != combinator and k not in _ANNOTATIONS}
        if not isinstance(options, list) or not options:
            raise _error(f"'{combinator}' needs a non-empty list of schemas")
        if rest:
            raise _error(f"'{combinator}' next to {sorted(rest)} is not supported")
        if combinator == "allOf":
            if len(options) > 1:
                raise _error("'allOf' with more than one schema is not supported")
            return self.value(options[0])
        if combinator == "oneOf" and len(options) > 1:  # exclusive: alternatives must be disjoint
            seen: set[str] = set()
            for option in options:
                types = self.types(option)
                if types & seen or ("number" in types | seen and "integer" in types | seen):
                    raise _error("'oneOf' is supported only when its schemas accept different "
                                 "JSON types (use 'anyOf' if a value may match several)")
                seen |= types
        return _alternatives([self.value(option) for option in options])

    def types(self, schema: Any) -> set[str]:
        """The JSON types a schema accepts (for the disjointness of ``oneOf``)."""
        if isinstance(schema, dict) and "$ref" in schema and schema["$ref"] not in self.resolving:
            self.resolving.append(schema["$ref"])
            try:
                self.ref(schema)  # resolves and validates
                target = self.root
                for part in filter(None, schema["$ref"][1:].split("/")):
                    target = target[part.replace("~1", "/").replace("~0", "~")]
                return self.types(target)
            finally:
                self.resolving.pop()
        if not isinstance(schema, dict) or schema == {}:
            return set(_KEYWORDS)
        if "enum" in schema or "const" in schema:
            values = schema.get("enum", []) + ([schema["const"]] if "const" in schema else [])
            return {_json_type(v) for v in values}
        for combinator in ("anyOf", "oneOf", "allOf"):
            if combinator in schema and isinstance(schema[combinator], list):
                return set().union(*(self.types(s) for s in schema[combinator]))
        types = schema.get("type", self.implied_type(schema))
        return set(_KEYWORDS) if types is None else {types} if isinstance(types, str) \
            else set(types)

    def constants(self, schema: dict) -> str | None:
        values = schema.get("enum", [schema.get("const")])
        if not isinstance(values, list):
            raise _error("'enum' needs a list")
        if "const" in schema:  # JSON equality: true is not 1
            values = [v for v in values if _canonical(v) == _canonical(schema["const"])]
        self.check_keywords(schema, set())
        types = schema.get("type")
        if types is not None:
            types = {types} if isinstance(types, str) else set(types)
            values = [v for v in values if _json_type(v) in types
                      or (_json_type(v) == "integer" and "number" in types)]
        return _alternatives([_literal(v) for v in values])

    # -- types --------------------------------------------------------------------------

    def type_null(self, schema: dict) -> str:
        return "null"

    def type_boolean(self, schema: dict) -> str:
        return "(true|false)"

    def type_string(self, schema: dict) -> str | None:
        fmt = schema.get("format")
        if fmt in FORMATS:
            if {"minLength", "maxLength", "pattern"} & set(schema):
                raise _error(f"'format': '{fmt}' next to length or pattern keywords is not "
                             "supported")
            return f'"{FORMATS[fmt]}"'
        if "pattern" in schema:
            if {"minLength", "maxLength"} & set(schema):
                raise _error("'pattern' next to 'minLength'/'maxLength' is not supported")
            return _pattern_string(schema["pattern"])
        low = _count(schema, "minLength", 0)
        high = _count(schema, "maxLength", max(STRING_CHARS, low))
        return None if high < low else f'"{STRING_CHAR}{{{low},{high}}}"'

    def type_integer(self, schema: dict) -> str | None:
        low, high = _lower(schema), _upper(schema)
        if low is None and high is None:
            return f"-?{_NATURAL}"
        limit = 10 ** DIGITS - 1
        return integer_range(-limit if low is None else low, limit if high is None else high)

    def type_number(self, schema: dict) -> str:
        if "minimum" not in schema:
            return f"-?{_NUMBER}"
        if schema["minimum"] != 0:
            raise _error("'minimum' for a number is supported only as 0 (use 'integer' "
                         "for other bounds)")
        return _NUMBER

    def type_array(self, schema: dict) -> str | None:
        items = schema.get("items", {})
        if not isinstance(items, (dict, bool)):
            raise _error("'items' must be a schema (tuple forms are not supported)")
        item = self.value(items)
        low = _count(schema, "minItems", 0)
        high = _count(schema, "maxItems", max(ARRAY_ITEMS, low))
        return _sequence(item, low, high, r"\[", r"\]")

    def type_object(self, schema: dict) -> str | None:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(properties, dict) or not isinstance(required, list):
            raise _error("'properties' must be an object and 'required' a list")
        missing = [name for name in required if name not in properties]
        if missing and schema.get("additionalProperties", True) is False:
            return None
        if missing:
            raise _error(f"required properties without a schema are not supported: {missing}")
        if not properties:
            return r"\{\}"
        items = []
        for name, sub in properties.items():
            value = self.value(sub)
            if value is None and name in required:
                return None
            if value is not None:
                items.append((_literal(name) + ":" + value, name in required))
        return r"\{" + _members(items) + r"\}"


def _members(items: list[tuple[str, bool]]) -> str:
    """Comma-separated members in order: required ones always, optional ones maybe. After a
    first member each later one is ``,item`` or ``(,item)?``; the first member is chosen
    among the optional ones before the first required one (or is that one)."""
    def tail(start: int) -> str:
        return "".join(f",{text}" if needed else f"(,{text})?" for text, needed in items[start:])

    options = []
    for i, (text, needed) in enumerate(items):
        options.append(text + tail(i + 1))
        if needed:
            break
    else:
        options.append("")
    return _alternatives(options) or ""


def _sequence(item: str | None, low: int, high: int, open_: str, close: str) -> str | None:
    if item is None or high == 0:
        return None if low > 0 or high < low else open_ + close
    if high < low:
        return None
    more = f"(,{item}){{{max(low - 1, 0)},{high - 1}}}"
    body = item + more
    return open_ + (body if low > 0 else f"({body})?") + close


def _any() -> str:
    """Any scalar (what ``{}``/``true`` generate: an automaton cannot nest without bound)."""
    return f'("{STRING_CHAR}{{0,{STRING_CHARS}}}"|-?{_NUMBER}|true|false|null)'


def _count(schema: dict, keyword: str, default: int) -> int:
    value = schema.get(keyword, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _error(f"'{keyword}' must be a non-negative integer")
    return value


def _lower(schema: dict) -> int | None:
    """The least integer that ``minimum``/``exclusiveMinimum`` allow."""
    bounds = [math.ceil(_number(schema, "minimum"))] if "minimum" in schema else []
    if "exclusiveMinimum" in schema:
        bounds.append(math.floor(_number(schema, "exclusiveMinimum")) + 1)
    return max(bounds, default=None)


def _upper(schema: dict) -> int | None:
    """The greatest integer that ``maximum``/``exclusiveMaximum`` allow."""
    bounds = [math.floor(_number(schema, "maximum"))] if "maximum" in schema else []
    if "exclusiveMaximum" in schema:
        bounds.append(math.ceil(_number(schema, "exclusiveMaximum")) - 1)
    return min(bounds, default=None)


def _number(schema: dict, keyword: str) -> float:
    value = schema[keyword]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _error(f"'{keyword}' must be a finite number")
    return value


def integer_range(low: int, high: int) -> str | None:
    """A regex for the canonical decimal integers ``low..high`` (None if empty)."""
    if low > high:
        return None
    parts = []
    if low < 0:
        parts += ["-" + p for p in _naturals(max(1, -high), -low)]
    if high >= 0:
        parts += _naturals(max(low, 0), high)
    return _alternatives(parts)


def _naturals(low: int, high: int) -> list[str]:
    out = []
    while low <= high:
        top = min(high, 10 ** len(str(low)) - 1)
        out += _same_length(str(low), str(top))
        low = top + 1
    return out


def _same_length(low: str, high: str) -> list[str]:
    """Regexes for the digit strings from ``low`` to ``high`` (equal lengths)."""
    if low == high:
        return [low]
    common = next(i for i, (a, b) in enumerate(zip(low, high)) if a != b)
    prefix, low, high = low[:common], low[common:], high[common:]
    rest = len(low) - 1
    if not rest:
        return [f"{prefix}[{low}-{high}]"]
    parts, first, last = [], int(low[0]), int(high[0])
    if low[1:] != "0" * rest:
        parts += [low[0] + p for p in _same_length(low[1:], "9" * rest)]
        first += 1
    tail = []
    if high[1:] != "9" * rest:
        tail = [high[0] + p for p in _same_length("0" * rest, high[1:])]
        last -= 1
    if first <= last:
        parts.append(f"[{first}-{last}][0-9]{{{rest}}}")
    return [prefix + p for p in parts + tail]


def _pattern_string(pattern: Any) -> str:
    """A JSON string whose (unescaped) text contains a match of ``pattern`` (JSON Schema
    patterns are unanchored); characters that would need escaping are left out."""
    if not isinstance(pattern, str):
        raise _error("'pattern' must be a string")
    try:
        return '"' + safe_pattern(pattern) + '"'
    except LmqCompileError as e:
        raise _error(f"pattern {pattern!r}: {e.message}") from None
