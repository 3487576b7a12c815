"""Evaluation of lmq expressions inside the sandbox.

Expressions never contain holes, so evaluating one never needs the model: the interpreter
calls :meth:`Evaluator.evaluate` synchronously. Every name, attribute and call goes through
:mod:`lmq.runtime.sandbox`; every value that can grow is size-checked.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

from lmq import ir
from lmq.errors import LmqError, LmqRuntimeError, LmqSandboxError
from lmq.limits import Limits
from lmq.runtime import sandbox

BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow, "@": operator.matmul,
    "&": operator.and_, "|": operator.or_, "^": operator.xor, "<<": operator.lshift,
    ">>": operator.rshift,
}
UNARY: dict[str, Callable[[Any], Any]] = {
    "-": operator.neg, "+": operator.pos, "not": operator.not_, "~": operator.invert,
}
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, ">=": operator.ge, "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b, "is": operator.is_, "is not": operator.is_not,
}
_UNDEFINED = object()


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
    """Evaluates expressions; ``tick`` is called once per loop iteration of a
    comprehension so step limits and timeouts also bound expressions."""

    def __init__(self, limits: Limits, callables: set[int], tick: Callable[[], None]) -> None:
        self.limits = limits
        self.callables = callables  # ids of the builtins, tools and stdlib names
        self.tick = tick
        self.dispatch: dict[type, Callable[[Any, Scope], Any]] = {
            ir.Name: self._name, ir.Const: lambda e, s: e.value, ir.FString: self._fstring,
            ir.ListExpr: lambda e, s: [self.evaluate(x, s) for x in e.elts],
            ir.TupleExpr: lambda e, s: tuple(self.evaluate(x, s) for x in e.elts),
            ir.SetExpr: lambda e, s: {self.evaluate(x, s) for x in e.elts},
            ir.DictExpr: lambda e, s: {self.evaluate(k, s): self.evaluate(v, s)
                                       for k, v in zip(e.keys, e.values)},
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
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as error:
            raise LmqRuntimeError(f"{type(error).__name__}: {error}", expr.span) from None

    # ------------------------------------------------------------ nodes

    def _name(self, expr: ir.Name, scope: Scope) -> Any:
        value = scope.lookup(expr.id)
        if value is _UNDEFINED:
            raise LmqRuntimeError(f"name '{expr.id}' is not defined", expr.span)
        return value

    def _fstring(self, expr: ir.FString, scope: Scope) -> str:
        pieces = [part if isinstance(part, str) else
                  sandbox.format_value(self.evaluate(part.value, scope), part.spec, self.limits)
                  for part in expr.parts]
        return sandbox.check_size("".join(pieces), self.limits, "f-string")

    def _ifexp(self, expr: ir.IfExp, scope: Scope) -> Any:
        branch = expr.body if self.evaluate(expr.test, scope) else expr.orelse
        return self.evaluate(branch, scope)

    def _binop(self, expr: ir.BinOp, scope: Scope) -> Any:
        left = self.evaluate(expr.left, scope)
        right = self.evaluate(expr.right, scope)
        self._precheck_binop(expr.op, left, right)
        return sandbox.check_size(BINARY[expr.op](left, right), self.limits)

    def _precheck_binop(self, op: str, left: Any, right: Any) -> None:
        """Refuse operations whose result would blow past the limits before computing it."""
        if op == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    sandbox.check_size(range(len(seq) * max(times, 0)), self.limits,
                                       "repeated sequence")
        elif op in ("**", "<<") and isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() * right if op == "**" else left.bit_length() + right
            if bits > self.limits.int_digits * 3.33 and left not in (0, 1, -1):
                raise sandbox.LmqLimitError(
                    f"integer result would exceed {self.limits.int_digits:,} digits "
                    "(limits.int_digits)")

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
        left = self.evaluate(expr.left, scope)
        for op, right_expr in zip(expr.ops, expr.comparators):
            right = self.evaluate(right_expr, scope)
            if not COMPARE[op](left, right):
                return False
            left = right
        return True

    def _call(self, expr: ir.Call, scope: Scope) -> Any:
        function = self.evaluate(expr.func, scope)
        args = tuple(self.evaluate(arg, scope) for arg in expr.args)
        kwargs = {kw.name: self.evaluate(kw.value, scope) for kw in expr.keywords}
        is_method = sandbox.is_basic_method(function)
        if not is_method and id(function) not in self.callables:
            raise LmqSandboxError(f"{_describe(expr.func)} is not callable in lmq programs "
                                  "(only builtins, imported stdlib names, tools and methods "
                                  "of basic values are)", expr.span)
        if is_method:
            sandbox.precheck_method(function, args, kwargs, self.limits)
        try:
            result = function(*args, **kwargs)
        except LmqError:
            raise
        except RecursionError:
            raise LmqRuntimeError(f"{_describe(expr.func)} recursed too deeply",
                                  expr.span) from None
        except Exception as error:  # a host tool may raise anything: report it, keep going
            if is_method or _is_builtin(function):
                raise LmqRuntimeError(f"{type(error).__name__}: {error}", expr.span) from None
            raise LmqRuntimeError(f"tool {_describe(expr.func)} raised "
                                  f"{type(error).__name__}: {error}", expr.span) from None
        return sandbox.check_size(result, self.limits, f"result of {_describe(expr.func)}")

    def _attribute(self, expr: ir.Attribute, scope: Scope) -> Any:
        return sandbox.get_attribute(self.evaluate(expr.value, scope), expr.attr)

    def _subscript(self, expr: ir.Subscript, scope: Scope) -> Any:
        value = self.evaluate(expr.value, scope)
        if not isinstance(value, sandbox.BASIC_TYPES):
            raise LmqSandboxError(f"{type(value).__name__} objects cannot be indexed in lmq "
                                  "programs", expr.span)
        return value[self.evaluate(expr.index, scope)]

    def _slice(self, expr: ir.Slice, scope: Scope) -> slice:
        return slice(*(None if part is None else self.evaluate(part, scope)
                       for part in (expr.lower, expr.upper, expr.step)))

    def _comprehension(self, expr: ir.Comprehension, scope: Scope) -> Any:
        inner = scope.child()
        items: list[Any] = []
        for _ in self._generate(expr.generators, 0, inner):
            if expr.kind == "dict":
                assert expr.value is not None
                items.append((self.evaluate(expr.elt, inner), self.evaluate(expr.value, inner)))
            else:
                items.append(self.evaluate(expr.elt, inner))
            if len(items) > self.limits.collection_size:
                sandbox.check_size(items, self.limits, "comprehension")
        if expr.kind == "dict":
            return dict(items)
        return set(items) if expr.kind == "set" else items

    def _generate(self, generators: tuple[ir.Generator, ...], index: int,
                  scope: Scope) -> Iterator[None]:
        if index == len(generators):
            yield None
            return
        generator = generators[index]
        for item in self.iterate(self.evaluate(generator.iter, scope), generator.iter):
            self.tick()
            self.assign(generator.target, item, scope)
            if all(self.evaluate(cond, scope) for cond in generator.ifs):
                yield from self._generate(generators, index + 1, scope)

    # ------------------------------------------------------------ helpers

    def iterate(self, value: Any, expr: ir.Node) -> Iterator[Any]:
        if not isinstance(value, (*sandbox.BASIC_TYPES, range, enumerate, zip, reversed)) \
                or isinstance(value, (int, float, bool, type(None))):
            raise LmqRuntimeError(f"cannot iterate over a {type(value).__name__}", expr.span)
        return iter(value)

    def assign(self, target: ir.Target, value: Any, scope: Scope) -> None:
        if isinstance(target, ir.Name):
            scope.variables[target.id] = value
        elif isinstance(target, ir.TupleExpr):
            items = list(self.iterate(value, target))
            if len(items) != len(target.elts):
                raise LmqRuntimeError(f"cannot unpack {len(items)} values into "
                                      f"{len(target.elts)} names", target.span)
            for sub, item in zip(target.elts, items):
                self.assign(sub, item, scope)
        elif isinstance(target, ir.Subscript):
            container = self.evaluate(target.value, scope)
            if not isinstance(container, (list, dict)):
                raise LmqSandboxError(f"cannot assign items of a {type(container).__name__}",
                                      target.span)
            container[self.evaluate(target.index, scope)] = value
        else:
            raise LmqSandboxError("this assignment target is not allowed", target.span)


def _describe(func: ir.Expr) -> str:
    if isinstance(func, ir.Name):
        return f"'{func.id}'"
    if isinstance(func, ir.Attribute):
        return f"'.{func.attr}'"
    return "this expression"


def _is_builtin(function: Any) -> bool:
    return getattr(function, "__module__", None) == "builtins" or isinstance(function, type)
