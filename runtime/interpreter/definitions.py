"""What definitions and LMQL's statements do when they run (LANGUAGE.md section 3):
``def`` and ``lambda`` make a :class:`~lmq.runtime.interpreter.functions.UserFunction`,
a record definition a :class:`~lmq.runtime.interpreter.records.RecordType`, ``assert``
checks its condition, ``import`` binds standard-library names or an lmq-owned module
(:mod:`lmq.runtime.interpreter.modules`), and LMQL's read-only ``context`` shows the
running prompt. :class:`~lmq.runtime.interpreter.program.ProgramState` calls these.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from lmq import ir
from lmq.errors import LmqRuntimeError, LmqSandboxError, Source
from lmq.limits import Limits
from lmq.runtime.interpreter import modules
from lmq.runtime.interpreter.evaluate import Evaluator, Scope
from lmq.runtime.interpreter.namespaces import Namespace
from lmq.runtime.interpreter.operations import Callables
from lmq.runtime.interpreter.records import SCALARS, Kind, RecordType

STDLIB = "lmq.stdlib."


class Context(Namespace):
    """LMQL's ``context``: ``context.prompt`` is the prompt so far (read-only)."""

    kind = "context"

    def __init__(self, prompt: Callable[[], str]) -> None:
        super().__init__("context", {})
        self.prompt = prompt

    def attribute(self, name: str) -> Any:
        if name == "prompt":
            return self.prompt()
        raise LmqSandboxError(f"LMQL's context has only 'prompt' in lmq programs (the prompt "
                              f"so far), not '{name}'")


def defaults(params: tuple[ir.Param, ...], scope: Scope, evaluator: Evaluator
             ) -> dict[str, Any]:
    """The values of the parameters' defaults, evaluated when the definition runs."""
    return {param.name: evaluator.evaluate(param.default, scope) for param in params
            if param.default is not None}


def record(stmt: ir.RecordDef, scope: Scope, evaluator: Evaluator) -> RecordType:
    def kind(field_type: ir.FieldType) -> Kind:
        if field_type.name in SCALARS:
            return field_type.name
        if field_type.name == "list":
            assert field_type.item is not None
            return ("list", kind(field_type.item))
        found = scope.lookup(field_type.name)
        if not isinstance(found, RecordType):
            raise LmqRuntimeError(f"the field type '{field_type.name}' is not a record",
                                  field_type.span)
        return found

    fields = tuple((field.name, kind(field.type)) for field in stmt.fields)
    values = {field.name: evaluator.evaluate(field.default, scope) for field in stmt.fields
              if field.default is not None}
    return RecordType(stmt.name, fields, values)


def check_assert(stmt: ir.Assert, scope: Scope, evaluator: Evaluator, source: Source) -> None:
    if evaluator.evaluate(stmt.test, scope):
        return
    condition = source.text[stmt.test.span.start:stmt.test.span.end]
    message = f"assertion failed: {condition}"
    if stmt.message is not None:
        detail = evaluator.evaluate(stmt.message, scope)
        message += f" ({detail if isinstance(detail, str) else repr(detail)})"
    raise LmqRuntimeError(message, stmt.span)


def bind_imports(stmt: ir.Import, scope: Scope, limits: Limits, tick: Callable[[], None],
                 callables: Callables) -> None:
    """Bind what an import names: an lmq-owned module (``import re``, ``from json import
    loads``) or names of a standard-library module."""
    name = stmt.module
    if name in modules.EXPORTS:
        space = modules.module(name, limits, tick)
        if not stmt.names:
            scope.variables[stmt.alias or name] = space
        for item, alias in stmt.names:
            scope.variables[alias] = space.attribute(item)
        return
    if not name.startswith(STDLIB):
        raise LmqSandboxError(f"only lmq.stdlib modules can be imported, not '{name}'",
                              stmt.span)
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise LmqRuntimeError(f"no standard-library module '{name}'", stmt.span) from None
    exported = getattr(module, "__all__", ())
    for item, alias in stmt.names:
        if item not in exported:
            raise LmqRuntimeError(f"'{name}' has no name '{item}'", stmt.span)
        value = getattr(module, item)
        scope.variables[alias] = value
        callables.add([value], stdlib=True)
