"""Typing of constraint atoms (LANGUAGE.md section 4), part of :mod:`lmq.checks`.

An atom's arguments are evaluated when its hole starts, so only constant arguments can be
checked here, each with its :class:`~lmq.atoms.Argument`'s check (the message the runtime
gives for the evaluated value too): ``len(C) < "5"`` compares a length with a string,
``X in [1, 2]`` can never hold for a text, a ``REGEX`` pattern must be one lmq can enforce
(the error points at the position inside the pattern), and a ``GRAMMAR`` text one lmq
can enforce (the error points into the grammar, with its own line and column).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lmq import ir
from lmq.atoms import ATOMS, Argument, AtomKind
from lmq.decoders import NotConstant, constant_value
from lmq.errors import LmqCompileError
from lmq.grammars import check_grammar
from lmq.lower_expr import decode_literal, literal_parts
from lmq.regular import check_regex

if TYPE_CHECKING:
    from lmq.checks import _Checker


def _constant(expr: ir.Expr) -> tuple[bool, Any]:
    try:
        return True, constant_value(expr)
    except NotConstant:
        return False, None


def check_atom(checker: _Checker, atom: ir.Atom) -> None:
    """Raise :class:`LmqCompileError` if a constant argument of ``atom`` has the wrong
    type or value."""
    kind = ATOMS[atom.kind]
    for expr, argument in zip(atom.args, kind.arguments):
        _check(checker, kind, atom, expr, argument)
    for keyword in atom.keywords if kind.options else ():  # a predicate's are its own
        known, value = _constant(keyword.value)
        problem = kind.option_problem(keyword.name, value) if known else None
        if problem:
            raise checker.error(problem, keyword.value)
    if atom.kind in ("regex", "grammar"):
        known, text = _constant(atom.args[0])
        if known and isinstance(text, str):
            start, offsets = _literal_offsets(checker, atom.args[0])
            check_pattern(checker, text, start, atom.args[0], offsets,
                          check_regex if atom.kind == "regex" else check_grammar)


def _check(checker: _Checker, kind: AtomKind, atom: ir.Atom, expr: ir.Expr,
           argument: Argument) -> None:
    """A constant argument as a whole, else each constant element of a list literal."""
    title = kind.title(atom.hole, atom.op)
    if argument.element is not None and isinstance(expr, (ir.ListExpr, ir.TupleExpr,
                                                          ir.SetExpr)):
        for element in expr.elts:  # each constant element, pointing at it
            known, item = _constant(element)
            problem = argument.item_problem(item) if known else None
            if problem:
                raise checker.error(f"{title} {problem}", element)
        return
    known, value = _constant(expr)
    problem = argument.problem(value) if known else None
    if problem:
        raise checker.error(f"{title} {problem}", expr)


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
                  offsets: list[int] | None = None,
                  check: Callable[[str], None] = check_regex) -> None:
    """Check a regex (or with ``check``, a grammar) whose first character is at file
    offset ``start`` (``offsets``: the file offset of each pattern character, for a
    literal with escapes); an error points at the position inside the pattern."""
    try:
        check(pattern)
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
