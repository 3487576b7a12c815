"""Checks of definitions, imports and LMQL's runtime names, part of :mod:`lmq.checks`
(LANGUAGE.md section 3).

* a ``def`` body sees its parameters, its own names, the names of the functions around it
  and the program's; it holds no prompt statement (a call never waits for the model);
* a record's field types are ``str``, ``int``, ``float``, ``bool``, ``list[T]`` or a record
  defined before; a hole typed with a record (``[P: Person]``) is not a query;
* imports: ``lmq.stdlib`` modules, and the lmq-owned modules of
  :mod:`lmq.runtime.interpreter.modules` (``re``, ``json``, ``math``, ``lmql``, ``typing``,
  ``dataclasses``), each only with the names it exports;
* LMQL's runtime names ``lmql`` and ``context`` are defined where their attributes are
  read, with only the attributes lmq gives them (a plain ``context`` is a parameter, as
  lmq's knowledge building blocks use it); a free name whose attribute no plain value has
  (``ctx.prompt``) can never be a parameter, which is an error here, not at run time.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from lmq import ir
from lmq.errors import did_you_mean
from lmq.imports import check_import
from lmq.names import bound_names

if TYPE_CHECKING:
    from lmq.checks import _Checker, _Scope

STDLIB = "lmq.stdlib."
RUNTIME_NAMES = frozenset(("lmql", "context"))
FIELD_SCALARS = ("str", "int", "float", "bool")
BASIC_ATTRIBUTES = frozenset(
    name for kind in (str, int, float, bool, list, tuple, dict, set, frozenset, type(None))
    for name in dir(kind) if not name.startswith("_"))
# What LMQL's runtime names offer in lmq, and what to say about the rest.
RUNTIME_ATTRIBUTES = {"lmql": ("model",), "context": ("prompt",)}
RUNTIME_HINTS = {
    "lmql": "inside a program, lmql.model(\"NAME\") names a model; lmql.F, lmql.run and "
    "the other lmql functions run queries from Python (in a program, a prompt statement or "
    "a nested query does that)",
    "context": "context.prompt is the prompt so far; the rest of LMQL's context is not "
    "available",
}


@functools.cache
def module_exports() -> dict[str, frozenset[str]]:
    """The lmq-owned modules and their names (loaded when a program imports one)."""
    from lmq.runtime.interpreter.modules import EXPORTS

    return EXPORTS


def function_def(checker: _Checker, stmt: ir.FunctionDef, scope: _Scope) -> None:
    from lmq.checks import _Scope

    checker.private(stmt.name, stmt)
    for param in stmt.params:
        checker.private(param.name, param)
        if param.default is not None:
            checker.expr(param.default, scope)
    outer = scope.bound if scope.kind == "function" else set()
    inner = _Scope(stmt.name, {p.name for p in stmt.params} | bound_names(stmt.body) | outer,
                   {}, kind="function")
    checker.block(stmt.body, inner)


def lambda_(checker: _Checker, node: ir.Lambda, scope: _Scope) -> None:
    for param in node.params:
        checker.private(param.name, param)
    checker.comprehension.append({param.name for param in node.params})
    checker.expr(node.body, scope)
    checker.comprehension.pop()


def record_def(checker: _Checker, stmt: ir.RecordDef, scope: _Scope) -> None:
    checker.private(stmt.name, stmt)

    def field_type(kind: ir.FieldType) -> None:
        if kind.item is not None:
            field_type(kind.item)
        elif kind.name not in FIELD_SCALARS and kind.name not in checker.records:
            known = (*FIELD_SCALARS, *checker.records)
            raise checker.error(f"unknown field type '{kind.name}'", kind,
                                did_you_mean(kind.name, known) or
                                "field types are str, int, float, bool, list[T] and "
                                "records defined before")

    for field in stmt.fields:
        checker.private(field.name, field)
        field_type(field.type)
        if field.default is not None:
            checker.expr(field.default, scope)
    checker.records.add(stmt.name)


def not_in_function(checker: _Checker, node: ir.Node, scope: _Scope) -> None:
    """Prompt statements and holes belong to the program or to queries."""
    if scope.kind == "function":
        raise checker.error(f"the function '{scope.name}' cannot hold prompt statements",
                            node, "a def runs to completion without the model; a nested "
                            "query (query NAME(params): or @lmql.query) prompts it")


def import_(checker: _Checker, stmt: ir.Import, scope: _Scope) -> None:
    module = stmt.module
    exports = module_exports().get(module)
    if exports is not None:
        for name, alias in stmt.names:
            checker.private(alias, stmt)
            if name not in exports:
                raise checker.error(f"lmq's '{module}' has no name '{name}'", stmt,
                                    did_you_mean(name, exports) or
                                    f"it offers {', '.join(sorted(exports))}")
        return
    if not stmt.names:
        raise checker.error(f"'import {module}' is not allowed in lmq programs (sandbox)",
                            stmt, "lmq provides the modules " +
                            ", ".join(sorted(module_exports())) + "; standard-library "
                            "building blocks: from lmq.stdlib.MODULE import NAME",
                            sandbox=True)
    if not module.startswith(STDLIB) or module.count(".") != 2:
        raise checker.error(f"importing from '{module}' is not allowed in lmq programs "
                            "(sandbox)", stmt, "only lmq.stdlib modules (from "
                            "lmq.stdlib.MODULE import NAME) and lmq's " +
                            ", ".join(sorted(module_exports())) + " can be imported",
                            sandbox=True)
    for name, alias in stmt.names:
        checker.private(name, stmt)
        checker.private(alias, stmt)
        if scope is checker.top:
            checker.imports[alias] = (module, name)
    check_import(stmt, checker.source)


def attribute(checker: _Checker, node: ir.Attribute, scope: _Scope) -> bool:
    """``name.attr`` where ``name`` is a free name: LMQL's runtime name (``context.prompt``:
    True, the name is not a parameter), or one whose attribute no plain value has (an
    error). A plain ``context`` (no attribute) is a parameter like any free name."""
    value = node.value
    if not isinstance(value, ir.Name) or checker.resolves(value.id, scope):
        return False
    name = value.id
    if name in RUNTIME_NAMES:
        if node.attr not in RUNTIME_ATTRIBUTES[name]:
            raise checker.error(f"'{name}.{node.attr}' is not available in lmq programs",
                                node, RUNTIME_HINTS[name])
        return True
    if node.attr not in BASIC_ATTRIBUTES:
        raise checker.error(f"'{name}' is not defined, and it cannot be a parameter: no "
                            f"plain value has the attribute '.{node.attr}'", value,
                            did_you_mean(name, checker.visible(scope) - {name}))
    return False
