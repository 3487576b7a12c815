"""Names in IR blocks: the nodes directly inside a node, the names a block binds and the
query definitions it makes (used by :mod:`lmq.checks`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from lmq import ir


def children(node: Any) -> Iterator[ir.Node]:
    """The IR nodes directly inside ``node`` (in field order)."""
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, ir.Node):
            yield value
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, ir.Node):
                    yield item
                elif isinstance(item, tuple):
                    yield from (i for i in item if isinstance(i, ir.Node))


def bound_names(stmts: tuple[ir.Stmt, ...]) -> set[str]:
    """Names a block binds (not looking inside query definitions). An augmented
    assignment reads its target first, so it does not bind it."""
    names: set[str] = set()

    def targets(target: Any) -> None:
        if isinstance(target, ir.Name):
            names.add(target.id)
        elif isinstance(target, ir.TupleExpr):
            for item in target.elts:
                targets(item)

    for stmt in stmts:
        if isinstance(stmt, ir.Assign):
            for target in stmt.targets:
                targets(target)
        elif isinstance(stmt, ir.For):
            targets(stmt.target)
        elif isinstance(stmt, ir.Prompt):
            names.update(p.name for p in stmt.parts if isinstance(p, ir.Hole))
        elif isinstance(stmt, ir.Import):
            names.update(alias for _, alias in stmt.names)
            names.update((stmt.alias,) if stmt.alias else ())
        elif isinstance(stmt, (ir.QueryDef, ir.FunctionDef, ir.RecordDef)):
            names.add(stmt.name)

        if isinstance(stmt, (ir.If, ir.For, ir.While)):
            names |= bound_names(stmt.body)
        if isinstance(stmt, ir.If):
            names |= bound_names(stmt.orelse)
    return names


def query_defs(stmts: tuple[ir.Stmt, ...]) -> Iterator[ir.QueryDef]:
    """Query definitions of a block, including those in nested blocks (not in queries)."""
    for stmt in stmts:
        if isinstance(stmt, ir.QueryDef):
            yield stmt
        elif isinstance(stmt, (ir.If, ir.For, ir.While)):
            yield from query_defs(stmt.body)
            if isinstance(stmt, ir.If):
                yield from query_defs(stmt.orelse)
