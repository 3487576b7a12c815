"""Evaluation of lmq expressions inside the sandbox.

Expressions never contain holes, so evaluating one never needs the model: the interpreter
calls :meth:`Evaluator.evaluate` synchronously. Every name and attribute goes through
:mod:`lmq.runtime.interpreter.sandbox`, every call, operator, comparison and iteration through
:mod:`lmq.runtime.interpreter.operations`; every value that can grow is size-checked.

Memory (``limits.memory``): each value an operation creates is charged to the row's
memory pool (:class:`~lmq.runtime.interpreter.budget.MemoryPool`, shared by the rows of
one instance); once the charges since the last measurement pass a quarter of the bound
(at most 128 MB), the values the rows still hold (their variables and hole values, and the partial
results of the expressions being evaluated, kept on ``held``) are measured, and a program
holding more than the bound stops. Values that are only read (a variable, an item of a
list) are not charged: a fresh value is one nothing else refers to yet.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lmq import ir
from lmq.errors import (
    LmqError,
    LmqLimitError,
    LmqRuntimeError,
    LmqSandboxError,
    is_out_of_memory,
)
from lmq.runtime.interpreter import boundary, operations, sandbox, sizes
from lmq.runtime.interpreter.budget import Budget

UNARY: dict[str, Callable[[Any], Any]] = {
    "-": operator.neg, "+": operator.pos, "not": operator.not_, "~": operator.invert,
}
_UNDEFINED = object()
_HELD_FROM = 512  # a partial result with this many items or characters is kept on `held`
_FRESH_FROM = 4096  # bytes from which a value is charged only if fresh (smaller: always)
_CHARGE_EVERY = 1 << 16  # bytes charged locally before the pool hears of them


def _sizeable(value: Any) -> bool:
    kind = type(value)
    return (kind is str or kind is list or kind is dict or kind is tuple or kind is set) \
        and len(value) >= _HELD_FROM


def _refcount(value: Any) -> int:
    return sys.getrefcount(value)


# References a just-made value has when passed straight to Evaluator.charge (calibrated:
# the count differs between Python versions).
_FRESH_REFS = _refcount("".join(["fresh", "value"]))


class Scope:
    """Variables of one query activation; reads fall back to ``parent`` (the program's
    top-level scope) and then to the fixed names (builtins, imports, tools)."""

    def __init__(self, variables: dict[str, Any], parent: Scope | None,
                 names: dict[str, Any]) -> None:
        self.variables = variables
        self.parent = parent
        self.names = names

    def lookup(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            value = scope.variables.get(name, _UNDEFINED)
            if value is not _UNDEFINED:
                return value
            scope = scope.parent
        return self.names.get(name, _UNDEFINED)

    def child(self) -> Scope:
        """A scope for comprehension variables that writes nothing back."""
        return Scope({}, self, self.names)


class Evaluator:
    """Evaluates expressions of one row under its ``budget``, which is ticked once per
    loop iteration of a comprehension so step limits and timeouts also bound
    expressions; ``callables`` is what the program may call."""

    def __init__(self, budget: Budget, callables: operations.Callables) -> None:
        self.budget = budget
        self.limits = budget.limits
        self.callables = callables
        self.tick = budget.tick
        self.held: list[Any] = []  # partial results of the expressions being evaluated
        self.charged = 0  # bytes charged since the pool last heard
        self.collisions = sizes.Collisions()
        self.dispatch: dict[type, Callable[[Any, Scope], Any]] = {
            ir.Name: self._name, ir.Const: lambda e, s: e.value, ir.FString: self._fstring,
            ir.ListExpr: lambda e, s: self.charge(self._all(e.elts, s)),
            ir.TupleExpr: lambda e, s: self.charge(tuple(self._all(e.elts, s))),
            ir.SetExpr: self._set, ir.DictExpr: self._dict,
            ir.Comprehension: self._comprehension, ir.IfExp: self._ifexp,
            ir.BinOp: self._binop, ir.UnaryOp: self._unary, ir.BoolOp: self._boolop,
            ir.Compare: self._compare, ir.Call: self._call, ir.Attribute: self._attribute,
            ir.Subscript: self._subscript, ir.Slice: self._slice,
        }

    def evaluate(self, expr: ir.Expr, scope: Scope) -> Any:
        try:
            return self.dispatch[type(expr)](expr, scope)
        except LmqError as error:
            if error.span is None:
                error.span = expr.span
            raise
        except RecursionError:
            raise LmqRuntimeError("expression nested too deeply", expr.span) from None
        except Exception as error:  # a wrong type, say
            if is_out_of_memory(error):
                raise LmqLimitError("ran out of memory evaluating this expression (lower "
                                    "limits.memory or the size limits)", expr.span) from None
            raise LmqRuntimeError(f"{type(error).__name__}: {error}", expr.span) from None

    def is_callable(self, function: Any) -> bool:
        """Whether a program may call ``function`` (directly, as ``key=``, as a predicate)."""
        return operations.is_callable(function, self.callables)

    # ------------------------------------------------------------ memory

    def charge(self, value: Any) -> Any:
        """Account for a value an operation has just made; returns it. Pass the value
        straight from the call that made it: a value something else already refers to is
        not new memory and is not charged. Sizes are estimates (a container's items at
        24 bytes each): the check itself measures."""
        kind = type(value)
        if kind is str:
            size = 49 + len(value)
        elif kind is int:
            bits = value.bit_length()
            if bits <= 64:
                return value
            size = 28 + bits // 8
        elif kind is list or kind is tuple or kind is dict or kind is set:
            size = sys.getsizeof(value) + 24 * len(value)
        else:
            return value
        if size >= _FRESH_FROM and _refcount(value) > _FRESH_REFS + 1:
            return value
        self.charged += size
        if self.charged >= _CHARGE_EVERY:  # the pool hears of charges in batches
            charged, self.charged = self.charged, 0
            self.budget.pool.charge(charged, value)
        return value

    def _all(self, exprs: Iterable[ir.Expr], scope: Scope) -> list[Any]:
        """Evaluate ``exprs`` in order; once one of the values made so far is sizeable,
        they are kept on ``held`` while the others are evaluated."""
        values: list[Any] = []
        held = False
        try:
            for expr in exprs:
                value = self.evaluate(expr, scope)
                values.append(value)
                if not held and _sizeable(value):
                    self.held.append(values)
                    held = True
        finally:
            if held:
                self._release(values)
        return values

    # ------------------------------------------------------------ nodes

    def _name(self, expr: ir.Name, scope: Scope) -> Any:
        value = scope.lookup(expr.id)
        if value is _UNDEFINED:
            raise LmqRuntimeError(f"name '{expr.id}' is not defined", expr.span)
        return value

    def _fstring(self, expr: ir.FString, scope: Scope) -> str:
        pieces: list[str] = []
        self.held.append(pieces)
        try:
            for part in expr.parts:
                pieces.append(part if isinstance(part, str) else sizes.format_value(
                    self.evaluate(part.value, scope), part.spec, self.limits))
                if sum(len(piece) for piece in pieces) > self.limits.string_size:
                    raise LmqLimitError(f"f-string would exceed the string limit "
                                        f"{self.limits.string_size:,} (limits.string_size)")
        finally:
            self._release(pieces)
        return self.charge("".join(pieces))

    def _set(self, expr: ir.SetExpr, scope: Scope) -> set[Any]:
        items = self._all(expr.elts, scope)
        for item in items:
            sizes.check_extent(item, self.limits, "set item", work=True)
        self.collisions.note(items)
        return self.charge(set(items))

    def _dict(self, expr: ir.DictExpr, scope: Scope) -> dict[Any, Any]:
        items = self._all([part for pair in zip(expr.keys, expr.values) for part in pair],
                          scope)
        for key in items[::2]:
            sizes.check_extent(key, self.limits, "dict key", work=True)
        self.collisions.note(items[::2])
        return self.charge(dict(zip(items[::2], items[1::2])))

    def _ifexp(self, expr: ir.IfExp, scope: Scope) -> Any:
        branch = expr.body if self.evaluate(expr.test, scope) else expr.orelse
        return self.evaluate(branch, scope)

    def _binop(self, expr: ir.BinOp, scope: Scope) -> Any:
        left, right = self._all((expr.left, expr.right), scope)
        return self.charge(self.binary(expr.op, left, right))

    def binary(self, op: str, left: Any, right: Any) -> Any:
        """``left op right`` with the limits checked before and after."""
        return operations.binary(op, left, right, self.limits, self.collisions)

    def augment(self, op: str, left: Any, right: Any, node: ir.Node) -> Any:
        """``left op= right`` for an augmented assignment statement: a failure is an
        LmqError at ``node``."""
        try:
            return self.charge(self.binary(op, left, right))
        except LmqError as error:
            if error.span is None:
                error.span = node.span
            raise
        except Exception as error:  # noqa: BLE001 - as in evaluate
            raise LmqRuntimeError(f"{type(error).__name__}: {error}", node.span) from None

    def _unary(self, expr: ir.UnaryOp, scope: Scope) -> Any:
        return UNARY[expr.op](self.evaluate(expr.operand, scope))

    def _boolop(self, expr: ir.BoolOp, scope: Scope) -> Any:
        value: Any = expr.op == "and"
        for item in expr.values:
            value = self.evaluate(item, scope)
            if (expr.op == "and") != bool(value):
                return value
        return value

    def _compare(self, expr: ir.Compare, scope: Scope) -> bool:
        values: list[Any] = [self.evaluate(expr.left, scope)]
        self.held.append(values)
        try:
            for op, right_expr in zip(expr.ops, expr.comparators):
                right = self.evaluate(right_expr, scope)
                left = values[-1]
                if not operations.compare(op, left, right, self.limits):
                    return False
                values.append(right)
        finally:
            self._release(values)
        return True

    def _call(self, expr: ir.Call, scope: Scope) -> Any:
        exprs = (expr.func, *expr.args, *(kw.value for kw in expr.keywords)) \
            if expr.keywords else (expr.func, *expr.args)
        parts = self._all(exprs, scope)
        function, args = parts[0], tuple(parts[1:1 + len(expr.args)])
        kwargs = {kw.name: value for kw, value in zip(expr.keywords,
                                                       parts[1 + len(expr.args):])}
        return self.charge(operations.call(function, args, kwargs, expr, self))

    def _attribute(self, expr: ir.Attribute, scope: Scope) -> Any:
        return sandbox.get_attribute(self.evaluate(expr.value, scope), expr.attr)

    def _subscript(self, expr: ir.Subscript, scope: Scope) -> Any:
        value, index = self._all((expr.value, expr.index), scope)
        if sandbox.basic_type(value) is None:
            raise LmqSandboxError(f"{boundary.describe(value)} objects cannot be indexed in "
                                  "lmq programs", expr.span)
        if isinstance(value, dict):
            sizes.check_extent(index, self.limits, "dict key", work=True)
        if isinstance(index, slice):
            return self.charge(value[index])
        return value[index]

    def _slice(self, expr: ir.Slice, scope: Scope) -> slice:
        return slice(*(None if part is None else self.evaluate(part, scope)
                       for part in (expr.lower, expr.upper, expr.step)))

    def _comprehension(self, expr: ir.Comprehension, scope: Scope) -> Any:
        inner = scope.child()
        items: list[Any] = []
        limits = self.limits

        def body() -> None:
            if expr.kind == "dict":
                assert expr.value is not None
                key = self.evaluate(expr.elt, inner)
                sizes.check_extent(key, limits, "dict key", work=True)
                self.collisions.note((key,))
                items.append((key, self.evaluate(expr.value, inner)))
            else:
                item = self.evaluate(expr.elt, inner)
                if expr.kind == "set":
                    sizes.check_extent(item, limits, "set item", work=True)
                    self.collisions.note((item,))
                items.append(item)
            if len(items) > limits.collection_size:
                sizes.check_size(items, limits, "comprehension")

        entry = (items, inner.variables)
        self.held.append(entry)
        try:
            self._loop(expr.generators, 0, inner, body)
        finally:
            self._release(entry)
        if expr.kind == "dict":
            return self.charge(dict(items))
        return self.charge(set(items)) if expr.kind == "set" else self.charge(items)

    def _loop(self, generators: tuple[ir.Generator, ...], index: int, scope: Scope,
              body: Callable[[], None]) -> None:
        if index == len(generators):
            body()
            return
        generator = generators[index]
        iterable = self.evaluate(generator.iter, scope)
        self.held.append(iterable)
        try:
            for item in self.iterate(iterable, generator.iter):
                self.tick()
                self.assign(generator.target, item, scope)
                if all(self.evaluate(cond, scope) for cond in generator.ifs):
                    self._loop(generators, index + 1, scope, body)
        finally:
            self._release(iterable)

    def _release(self, entry: Any) -> None:
        """Take ``entry`` off ``held`` (the last occurrence, by identity)."""
        held = self.held
        for index in range(len(held) - 1, -1, -1):
            if held[index] is entry:
                del held[index]
                return

    # ------------------------------------------------------------ helpers

    def iterate(self, value: Any, expr: ir.Node) -> Iterator[Any]:
        return operations.iterate(value, expr)

    def assign(self, target: ir.Target, value: Any, scope: Scope) -> None:
        """Bind ``value`` to ``target``; a failure is an LmqError at the target."""
        try:
            self._assign(target, value, scope)
        except LmqError as error:
            if error.span is None:
                error.span = target.span
            raise
        except RecursionError:
            raise LmqRuntimeError("assignment nested too deeply", target.span) from None
        except Exception as error:  # noqa: BLE001 - list index of a wrong type, ...
            raise LmqRuntimeError(f"{type(error).__name__}: {error}", target.span) from None

    def _assign(self, target: ir.Target, value: Any, scope: Scope) -> None:
        if isinstance(target, ir.Name):
            scope.variables[target.id] = value
        elif isinstance(target, ir.TupleExpr):
            items = list(self.iterate(value, target))
            if len(items) != len(target.elts):
                raise LmqRuntimeError(f"cannot unpack {len(items)} values into "
                                      f"{len(target.elts)} names", target.span)
            for sub, item in zip(target.elts, items):
                self._assign(sub, item, scope)  # type: ignore[arg-type]
        elif isinstance(target, ir.Subscript):
            container = self.evaluate(target.value, scope)
            if type(container) not in (list, dict):
                raise LmqSandboxError("cannot assign items of a "
                                      f"{boundary.describe(container)}", target.span)
            index = self.evaluate(target.index, scope)
            if isinstance(container, dict):
                sizes.check_extent(index, self.limits, "dict key", work=True)
                self.collisions.note((index,))
            container[index] = value
            sizes.check_size(container, self.limits, "the assigned-to container")
        else:
            raise LmqSandboxError("this assignment target is not allowed", target.span)
