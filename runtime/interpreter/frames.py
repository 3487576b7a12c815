"""The interpreter's data: the frames of its explicit stack, and the helpers that bind
nested-query calls (:mod:`lmq.runtime.interpreter.program` runs them). What it emits,
:class:`~lmq.runtime.decoding.instance.Segment` s and
:class:`~lmq.runtime.decoding.instance.HoleRequest` s, is the decoding loop's contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmq import ir
from lmq.errors import LmqRuntimeError
from lmq.lower_defs import with_program_where
from lmq.runtime.interpreter.evaluate import Scope
from lmq.runtime.interpreter.functions import FunctionCall


@dataclass
class QueryFunction:
    """A ``query NAME(params):`` definition bound in a scope."""

    definition: ir.QueryDef


# ------------------------------------------------------------------------ frames


@dataclass
class Block:
    stmts: tuple[ir.Stmt, ...]
    scope: Scope
    pc: int = 0


@dataclass
class ForLoop:
    stmt: ir.For
    scope: Scope
    items: Any
    index: int = 0


@dataclass
class WhileLoop:
    stmt: ir.While
    scope: Scope


@dataclass
class PromptRun:
    stmt: ir.Prompt
    scope: Scope
    index: int = 0
    knowledge: str | None = None


@dataclass
class QueryCall:
    """An activation of a nested query filling ``hole`` of the enclosing prompt."""

    scope: Scope
    hole: ir.Hole
    context_mark: int
    prompt_mark: int
    depth: int


Frame = Block | ForLoop | WhileLoop | PromptRun | QueryCall | FunctionCall
LOOPS = (ForLoop, WhileLoop)


def host_query_definition(target: Any, checked: Any, name: str) -> ir.QueryDef:
    """A host query's program as a query definition: its parameters, its body with the
    program's ``where`` joined to each prompt statement's own (a nested query's holes see
    only inline constraints), and the Query's own ``model``, if it names one, as each
    prompt statement's inline ``from`` where it has none (its ``from`` clause, like any
    program's, yields to the caller: here the enclosing run)."""
    program = checked.program
    model = getattr(target, "model", None)
    body = with_program_where(program.body, program.where,
                              ir.Const(model) if model is not None else None)
    return ir.QueryDef(name, tuple(checked.params), body, span=program.span)


def bind_arguments(definition: ir.QueryDef, args: list[Any], kwargs: dict[str, Any],
                    hole: ir.Hole) -> dict[str, Any]:
    params = definition.params
    if len(args) > len(params):
        raise LmqRuntimeError(f"query '{definition.name}' takes {len(params)} arguments, "
                              f"got {len(args)}", hole.span)
    bound = dict(zip(params, args))
    for name, value in kwargs.items():
        if name not in params or name in bound:
            raise LmqRuntimeError(f"query '{definition.name}' got an unexpected or repeated "
                                  f"argument '{name}'", hole.span)
        bound[name] = value
    missing = [p for p in params if p not in bound]
    if missing:
        raise LmqRuntimeError(f"query '{definition.name}' is missing argument "
                              f"'{missing[0]}'", hole.span)
    return bound
