"""Compile-time emptiness of constant regular constraints (LANGUAGE.md section 4).

``INT(X) and X in ["a"]`` can never hold; when a hole's regular constraints have constant
arguments this is known before any model loads, and :func:`check_not_empty` reports it as
a compile error pointing at the ``where``. Only conjuncts whose arguments are all
constants take part (the others are evaluated when the hole starts), and leaving a
conjunct out only grows the set of values, so an empty result is always a real error.
Holes without a ``where`` are not looked at, so the automaton compiler (and numpy) load
only for programs that have constant regular constraints.

The automata are compiled with the runtime's compiler and budget, and stay in its
cache for the run that follows; a constraint the runtime could not compile (too large, an
unsupported JSON schema) is reported here too, at its ``where``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lmq import grammars, ir, regular
from lmq.constraints import check_grammar_combination, conjuncts, hole_spec, holes_of
from lmq.decoders import NotConstant, constant_value
from lmq.errors import LmqCompileError, LmqError, Source


def check_not_empty(program: ir.Program) -> None:
    """Raise :class:`LmqCompileError` at the ``where`` whose constant regular constraints
    no value of a hole can satisfy."""
    for stmt, top_level in _prompts(program.body, True):
        for part in stmt.parts:
            if isinstance(part, ir.Hole):
                _check_hole(part, stmt.where, program.where if top_level else None,
                            program.source)


def _prompts(body: tuple[ir.Stmt, ...], top_level: bool) -> Iterator[tuple[ir.Prompt, bool]]:
    """Prompt statements and whether the program's ``where`` applies to them (it does not
    inside query definitions, as in the interpreter)."""
    for stmt in body:
        if isinstance(stmt, ir.Prompt):
            yield stmt, top_level
        elif isinstance(stmt, (ir.For, ir.While)):
            yield from _prompts(stmt.body, top_level)
        elif isinstance(stmt, ir.If):
            yield from _prompts(stmt.body + stmt.orelse, top_level)
        elif isinstance(stmt, ir.QueryDef):
            yield from _prompts(stmt.body, False)


def _check_hole(hole: ir.Hole, inline: ir.Constraint | None,
                program_where: ir.Constraint | None, source: Source) -> None:
    items = [item for where in (inline, program_where) for item in conjuncts(where)
             if hole.name in holes_of(item)]
    try:
        check_grammar_combination(hole, items, lambda node: source.text[
            node.span.start:node.span.end])
    except LmqCompileError as error:
        raise error.with_source(source) from None
    trees = []
    typed = _regular(hole, ())
    if typed is not None:
        trees.append(typed)
    for where in (inline, program_where):
        found = _constant_trees(hole, where)
        if not found:
            continue
        assert where is not None
        trees += found
        tree = trees[0] if len(trees) == 1 else regular.And(tuple(trees))
        if _is_empty(tree, where, source):
            raise LmqCompileError(f"no value of '{hole.name}' can satisfy this constraint",
                                  where.span, source, "its conditions contradict each other"
                                  if len(trees) > 1 else None)


def _constant_trees(hole: ir.Hole, where: ir.Constraint | None) -> list[regular.Regular]:
    trees = []
    for item in conjuncts(where):
        if holes_of(item) == {hole.name}:
            tree = _regular(ir.Hole(hole.name), (item,))
            if tree is not None:
                trees.append(tree)
    return trees


def _regular(hole: ir.Hole, items: tuple[ir.Constraint, ...]) -> regular.Regular | None:
    """The regular tree of ``items`` (and of the hole's type), None where an argument is not
    a constant or is invalid (the checks or the runtime report that)."""
    try:
        return hole_spec(hole, items, _constant).regular
    except (NotConstant, LmqError):
        return None


def _is_empty(tree: regular.Regular, where: ir.Constraint, source: Source) -> bool:
    from lmq.runtime.automata.fsm import AutomatonLimitError, compile_regular, is_empty

    tree = grammars.finite_form(tree)
    parts = tree.parts if isinstance(tree, regular.And) else (tree,)
    if any(isinstance(part, regular.Grammar) for part in parts):
        return False  # a grammar: Lark and llguidance have checked it
    try:
        return is_empty(compile_regular(tree))
    except LmqCompileError as error:
        if isinstance(error, AutomatonLimitError) and isinstance(tree, regular.Json):
            return False  # a JSON schema past the automaton goes to the grammar engine
        raise LmqCompileError(error.message, where.span, source, error.hint) from None


def _constant(expr: ir.Expr) -> Any:
    """Like ``constant_value``, with dicts and sets (JSON schemas, label sets)."""
    if isinstance(expr, ir.DictExpr):
        if any(key is None for key in expr.keys):  # ``**mapping``
            raise NotConstant
        return {_constant(key): _constant(value) for key, value in zip(expr.keys, expr.values)}
    if isinstance(expr, (ir.ListExpr, ir.TupleExpr, ir.SetExpr)):
        values = [_constant(item) for item in expr.elts]
        return tuple(values) if isinstance(expr, ir.TupleExpr) else \
            set(values) if isinstance(expr, ir.SetExpr) else values
    return constant_value(expr)
