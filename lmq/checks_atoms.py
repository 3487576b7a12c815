"""Typing of constraint atoms (LANGUAGE.md section 4), part of :mod:`lmq.checks`.

An atom's arguments are evaluated when its hole starts, so only constant arguments can be
checked here: ``len(C) < "5"`` compares a length with a string, ``X in [1, 2]`` can never
hold for a text, a ``REGEX`` pattern must be one lmq can enforce (the error points at the
position inside the pattern).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmq import ir
from lmq.decoders import NotConstant, constant_value
from lmq.errors import LmqCompileError
from lmq.lower_expr import decode_literal, literal_parts
from lmq.regular import check_regex

if TYPE_CHECKING:
    from lmq.checks import _Checker

ATOM_NAMES = {"starts_with": "STARTS_WITH", "ends_with": "ENDS_WITH", "span": "SPAN",
              "stops_at": "STOPS_AT", "stops_before": "STOPS_BEFORE", "labels": "LABELS",
              "regex": "REGEX", "contains": "'in'"}


def type_name(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _constant(expr: ir.Expr) -> tuple[bool, Any]:
    try:
        return True, constant_value(expr)
    except NotConstant:
        return False, None


def _elements(expr: ir.Expr) -> list[ir.Expr]:
    return list(expr.elts) if isinstance(expr, (ir.ListExpr, ir.TupleExpr, ir.SetExpr)) \
        else []


def check_atom(checker: _Checker, atom: ir.Atom) -> None:
    """Raise :class:`LmqCompileError` if a constant argument of ``atom`` has the wrong
    type or value."""
    error = checker.error
    kind = atom.kind
    if kind in ("token_len", "char_len"):
        known, n = _constant(atom.args[0])
        if known and (not isinstance(n, int) or isinstance(n, bool)):
            raise error(f"comparison of a length with {type_name(n)}", atom.args[0])
    elif kind == "eq":
        known, value = _constant(atom.args[0])
        if known and not isinstance(value, str):
            raise error(f"comparison of a hole's text with {type_name(value)}", atom.args[0])
    elif kind == "in":
        _strings(checker, atom, atom.args[0], f"'{atom.hole} in ...'", allow_single=False)
    elif kind in ("contains", "starts_with", "ends_with", "span"):
        known, value = _constant(atom.args[0])
        if known and not isinstance(value, str):
            raise error(f"{ATOM_NAMES[kind]} needs a string, not {type_name(value)}",
                        atom.args[0])
    elif kind in ("stops_at", "stops_before"):
        _strings(checker, atom, atom.args[0], ATOM_NAMES[kind], allow_single=True,
                 nonempty=True)
    elif kind == "regex":
        known, pattern = _constant(atom.args[0])
        if known and not isinstance(pattern, str):
            raise error(f"REGEX needs a pattern string, not {type_name(pattern)}",
                        atom.args[0])
        if known:
            start, offsets = _literal_offsets(checker, atom.args[0])
            check_pattern(checker, pattern, start, atom.args[0], offsets)
    elif kind == "labels":
        _labels(checker, atom)
    elif kind == "json":
        known, schema = _constant(atom.args[0])
        if known and not isinstance(schema, (str, bool)):
            raise error(f"JSON needs a schema (a dict), not {type_name(schema)}", atom.args[0])


def _strings(checker: _Checker, atom: ir.Atom, expr: ir.Expr, what: str,
             allow_single: bool, nonempty: bool = False) -> None:
    known, value = _constant(expr)
    if not known and not _elements(expr):
        return
    if known and isinstance(value, str) and allow_single:
        items: list[tuple[Any, ir.Expr]] = [(value, expr)]
    elif known and not isinstance(value, (list, tuple)):
        raise checker.error(f"{what} needs a list of strings, not {type_name(value)}", expr)
    else:
        items = []
        for element in _elements(expr):
            element_known, element_value = _constant(element)
            if element_known:
                items.append((element_value, element))
    for item, where in items:
        if not isinstance(item, str):
            raise checker.error(f"{what} needs strings, not {type_name(item)}", where)
        if nonempty and item == "":
            raise checker.error(f"{what} needs a non-empty stop phrase", where)


def _labels(checker: _Checker, atom: ir.Atom) -> None:
    _strings(checker, atom, atom.args[0], "LABELS", allow_single=False)
    for keyword in atom.keywords:
        known, value = _constant(keyword.value)
        if not known:
            continue
        name = keyword.name
        valid = {"sep": isinstance(value, str) and value != "",
                 "unique": isinstance(value, bool),
                 "min": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                 "max": value is None or (isinstance(value, int) and
                                          not isinstance(value, bool) and value >= 1)}[name]
        if not valid:
            wanted = {"sep": "a non-empty string", "unique": "True or False",
                      "min": "an integer >= 0", "max": "an integer >= 1 or None"}[name]
            raise checker.error(f"the LABELS option '{name}' must be {wanted}, not {value!r}",
                                keyword.value)


def _literal_offsets(checker: _Checker, expr: ir.Expr) -> tuple[int, list[int] | None]:
    """File offset of the first character of a one-literal string constant and the
    offset of each of its value's characters relative to it (None when unknown)."""
    text = checker.source.text[expr.span.start:expr.span.end]
    try:
        prefix, _, start, end = literal_parts(text)
    except (AttributeError, IndexError):
        return expr.span.start, None
    if "f" in prefix or end <= start:
        return expr.span.start, None
    value, offsets = decode_literal(text[start:end], raw="r" in prefix)
    if not isinstance(expr, ir.Const) or value != expr.value:
        return expr.span.start, None  # concatenated literals
    return expr.span.start + start, offsets


def check_pattern(checker: _Checker, pattern: str, start: int, where: ir.Node,
                  offsets: list[int] | None = None) -> None:
    """Check a regex whose first character is at file offset ``start`` (``offsets``: the
    file offset of each pattern character, for a literal with escapes); an error points
    at the position inside the pattern."""
    try:
        check_regex(pattern)
    except LmqCompileError as error:
        offset = getattr(error, "offset", 0)
        if offsets is not None:
            offset = offsets[offset] if offset < len(offsets) else (
                offsets[-1] + 1 if offsets else 0)
        position = start + offset
        span = checker.source.span(position, position + 1)
        if not (where.span.start <= position < where.span.end):
            span = where.span
        raise LmqCompileError(error.message, span, checker.source) from None
