"""Host operations of lmq expressions, run under the sandbox and the limits.

:mod:`lmq.runtime.interpreter.evaluate` walks an expression; the operations that hand values
to Python go through here: a call (builtins, imported stdlib names, tools, methods of basic values),
a binary operator, a comparison, iteration. Each refuses, before Python starts, work that
would pass a limit, and notes the keys about to be hashed into a set or dict
(:class:`~lmq.runtime.interpreter.sizes.Collisions`).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from lmq import ir
from lmq.errors import (
    LmqError,
    LmqLimitError,
    LmqRuntimeError,
    LmqSandboxError,
    Span,
    is_out_of_memory,
)
from lmq.limits import Limits
from lmq.runtime.decoding.model_choices import Ensemble, Routed
from lmq.runtime.interpreter import boundary, sandbox, sizes
from lmq.runtime.interpreter.budget import Budget
from lmq.runtime.interpreter.namespaces import ProgramCallable

BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow, "@": operator.matmul,
    "&": operator.and_, "|": operator.or_, "^": operator.xor, "<<": operator.lshift,
    ">>": operator.rshift,
}
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, ">=": operator.ge, "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b, "is": operator.is_, "is not": operator.is_not,
}


def iterate(value: Any, expr: ir.Node) -> Iterator[Any]:
    if not isinstance(value, sandbox.ITERABLES) \
            or isinstance(value, (int, float, bool, type(None))):
        raise LmqRuntimeError(f"cannot iterate over a {boundary.describe(value)}", expr.span)
    return iter(value)


# ------------------------------------------------------------ operators

def binary(op: str, left: Any, right: Any, limits: Limits,
           collisions: sizes.Collisions) -> Any:
    """``left op right`` with the limits checked before and after."""
    _precheck_binop(op, left, right, limits, collisions)
    return sizes.check_size(BINARY[op](left, right), limits)


def _precheck_binop(op: str, left: Any, right: Any, limits: Limits,
                    collisions: sizes.Collisions) -> None:
    """Refuse operations whose result would blow past the limits before computing it."""
    if op == "*":
        sizes.check_repeat(left, right, limits)
        sizes.check_repeat(right, left, limits)
    elif op in ("**", "<<"):
        sizes.check_int_result(op, left, right, limits)
    elif op == "%":
        sizes.check_percent(left, right, limits)
    elif op in ("|", "&", "^", "-") and isinstance(left, (set, frozenset, dict)) \
            and isinstance(right, (set, frozenset, dict, *sizes.DICT_VIEWS)):
        collisions.note(left)
        collisions.note(right)


def compare(op: str, left: Any, right: Any, limits: Limits) -> Any:
    """``left op right`` for one link of a comparison chain, its walk bounded first. Two
    handles of one host object are the same object (``is``), as they are equal."""
    if op in ("is", "is not"):
        left, right = boundary.identity(left), boundary.identity(right)
    else:
        _precheck_compare(op, left, right, limits)
    return COMPARE[op](left, right)


def _precheck_compare(op: str, left: Any, right: Any, limits: Limits) -> None:
    """Comparing containers walks them: bound the walk before Python does it."""
    if op in ("in", "not in"):
        if isinstance(right, (list, tuple)):
            if isinstance(left, sizes.TEXT_TYPES):
                _check_search(left, right, limits)
            elif isinstance(left, sizes.CONTAINERS):
                sizes.check_extent(right, limits, "the searched value", work=True)
        sizes.check_extent(left, limits, "the compared value", work=True)
    elif isinstance(left, sizes.CONTAINERS) and isinstance(right, sizes.CONTAINERS):
        if op in ("==", "!=") and type(left) is type(right) and \
                not isinstance(left, tuple) and len(left) != len(right):
            return  # Python answers from the lengths
        sizes.check_extent(left, limits, "the compared value", work=True)
        sizes.check_extent(right, limits, "the compared value", work=True)


def _check_search(needle: Any, items: list[Any] | tuple[Any, ...], limits: Limits) -> None:
    """``text in items``: each item of the same length is compared character by
    character; bound the characters compared."""
    if len(needle) * len(items) <= 10 * limits.string_size:
        return
    same = sum(1 for item in items if isinstance(item, sizes.TEXT_TYPES)
               and len(item) == len(needle))
    if len(needle) * same > 10 * limits.string_size:
        raise LmqLimitError(f"searching the list would compare {len(needle) * same:,} "
                            f"characters (more than 10 x limits.string_size)")


# ------------------------------------------------------------ calls


class Callables:
    """What a program instance may call, by kind: its ``builtins`` (id to name: the table
    of :func:`~lmq.runtime.interpreter.sandbox.make_builtins`), the ``stdlib`` names it
    imported and the host's ``tools``; methods of basic values always."""

    def __init__(self, builtins_table: dict[str, Any], tools: Iterable[Any] = ()) -> None:
        self.builtins = {id(function): name for name, function in builtins_table.items()}
        self.stdlib: set[int] = set()
        self.tools = {id(tool) for tool in tools}

    def add(self, values: Iterable[Any], stdlib: bool = False) -> None:
        (self.stdlib if stdlib else self.tools).update(id(value) for value in values)

    def kind(self, function: Any) -> str | None:
        """``"method"``, ``"builtin"``, ``"native"`` (a function of an lmq-owned
        namespace), ``"stdlib"``, ``"tool"``, or None: not callable."""
        key = id(function)
        if key in self.builtins:
            return "builtin"
        if isinstance(function, ProgramCallable):
            return "native"
        if key in self.stdlib:
            return "stdlib"
        if key in self.tools:
            return "tool"
        return "method" if sandbox.is_basic_method(function) else None

    def copy(self) -> Callables:
        twin = copy.copy(self)
        twin.stdlib, twin.tools = set(self.stdlib), set(self.tools)
        return twin


class CallContext(Protocol):
    """What a call needs of the evaluator making it."""

    limits: Limits
    callables: Callables
    collisions: sizes.Collisions
    budget: Budget


def is_callable(function: Any, callables: Callables) -> bool:
    """Whether a program may call ``function`` (directly, as ``key=``, as a predicate)."""
    return callables.kind(function) is not None


def call(function: Any, args: tuple, kwargs: dict, expr: ir.Call, context: CallContext) -> Any:
    """Call ``function`` if the sandbox allows it; errors name the callee.

    Builtins and methods of basic values are checked before they run (their cost can
    depend on their arguments). Host code — a tool, an imported standard-library name —
    runs under the program's budget (:meth:`~lmq.runtime.interpreter.budget.Budget.hosting`:
    lmq programs it runs spend it), through the boundary: a tool gets its arguments
    handed out and its result admitted (:mod:`lmq.runtime.interpreter.boundary`); a
    standard-library function gets the program's values as they are (only lmq code reads
    them) and the callables among its arguments as callbacks that call through here."""
    limits, callables = context.limits, context.callables
    kind = callables.kind(function)
    if kind is None:
        raise LmqSandboxError(f"{_describe(expr.func)} is not callable in lmq programs "
                              "(only builtins, imported stdlib names, tools and methods "
                              "of basic values are)", expr.span)
    if kind == "method":
        sandbox.precheck_method(function, args, kwargs, limits)
        args = _note_method_keys(function, args, context.collisions)
    elif kind == "builtin":
        builtin = callables.builtins[id(function)]
        if builtin in ("str", "repr") and len(args) == 1 and not kwargs:
            return sizes.to_text(args[0], limits, f"the argument of {builtin}()",
                                 as_repr=builtin == "repr")
        if builtin in ("set", "dict") and args and not isinstance(
                args[0], (list, tuple, dict, set, frozenset, str)):
            args = (list(iterate(args[0], expr)), *args[1:])  # look before
        sandbox.precheck_builtin(builtin, args, kwargs, limits)
        if builtin in ("set", "dict") and args:
            context.collisions.note(sizes.keys_of(args[0], builtin == "dict"))
    if "key" in kwargs and kind in ("method", "builtin"):
        kwargs = {**kwargs, "key": _key_function(kwargs["key"], context, expr.span)}
    if kind == "tool":
        args, kwargs = boundary.hand_out(args), boundary.hand_out(kwargs)
    elif kind == "stdlib":
        args = tuple(_callback(a, context, expr.span) for a in args)
        kwargs = {name: _callback(value, context, expr.span) for name, value in kwargs.items()}
    try:
        if kind in ("tool", "stdlib"):
            with context.budget.hosting():
                result = function(*args, **kwargs)
        else:
            result = function(*args, **kwargs)
    except LmqError as error:
        if error.source is not None and kind in ("tool", "stdlib"):
            raise _nested(error, expr) from None
        raise
    except RecursionError:
        raise LmqRuntimeError(f"{_describe(expr.func)} recursed too deeply",
                              expr.span) from None
    except Exception as error:  # a host tool may raise anything: report it, keep going
        if is_out_of_memory(error):
            raise LmqLimitError(f"ran out of memory in {_describe(expr.func)} (lower "
                                "limits.memory or the size limits)", expr.span) from None
        who = {"tool": f"tool {_describe(expr.func)} raised ",
               "stdlib": f"{_describe(expr.func)} raised "}.get(kind, "")
        raise LmqRuntimeError(f"{who}{type(error).__name__}: {error}", expr.span) from None
    if kind == "method":
        sandbox.check_grown(function, limits)
    elif kind in ("tool", "stdlib"):
        return boundary.admit(result, limits, f"the result of {_describe(expr.func)}",
                              own=STDLIB_OBJECTS if kind == "stdlib" else ())
    return sizes.check_size(result, limits, f"result of {_describe(expr.func)}")


def _nested(error: LmqError, expr: ir.Call) -> LmqError:
    """An error of a program a host call ran (the stdlib's, a Query tool's), pointing at
    the call in this program; the message says where in that program it happened (the
    innermost one, when programs ran programs)."""
    if error.nested:
        error.span, error.source = expr.span, None
        return error
    where = f"{error.source.filename}:{error.span}" if error.source and error.span else \
        error.source.filename if error.source else ""
    outer = type(error)(f"{error.message} (in the program {_describe(expr.func)} ran, at "
                        f"{where})", expr.span, hint=error.hint)
    outer.nested = True
    return outer


# The objects of the standard library a program may hold as they are: model choices.
STDLIB_OBJECTS = (Ensemble, Routed)


def host_callback(function: Any, context: CallContext, name: str,
                  span: Span) -> Callable[..., Any]:
    """``function`` as Python code may call it on the program's behalf (a predicate, a
    ``key=``, a callback of a standard-library function): through :func:`call`, so what
    it returns is admitted (Python may compare it or take its truth value). Errors point
    at ``span``."""
    expr = ir.Call(ir.Name(name, span=span), (), span=span)
    return lambda *args, **kwargs: call(function, args, kwargs, expr, context)


def _key_function(key: Any, context: CallContext, span: Span) -> Any:
    kind = context.callables.kind(key)
    if key is not None and kind is None:
        raise LmqSandboxError(f"key={boundary.describe(key)} is not callable in lmq "
                              "programs (only builtins, imported stdlib names, tools and "
                              "methods of basic values are)")
    # Python compares what the key returns: a tool's result must be admitted first.
    return host_callback(key, context, "key", span) if kind in ("tool", "stdlib") else key


def _callback(value: Any, context: CallContext, span: Span) -> Any:
    kind = context.callables.kind(value) if callable(value) else None
    return host_callback(value, context, "callback", span) if kind in ("tool", "stdlib") \
        else value


def _note_method_keys(function: Any, args: tuple, collisions: sizes.Collisions) -> tuple:
    """Keys a set or dict method is about to hash into its owner (see
    :class:`~lmq.runtime.interpreter.sizes.Collisions`); lazy arguments are made lists first."""
    owner, name = function.__self__, function.__name__
    if isinstance(owner, (set, frozenset)) and name in (
            "add", "update", "union", "intersection", "difference",
            "symmetric_difference", "intersection_update", "difference_update",
            "symmetric_difference_update"):
        if name == "add":
            collisions.note(args[:1])
            return args
        args = tuple(a if isinstance(a, (list, tuple, dict, set, frozenset, str))
                     else list(iterate(a, ir.Const(None))) for a in args)
        for arg in args:
            collisions.note(sizes.keys_of(arg))
    elif isinstance(owner, dict) and name in ("setdefault", "update"):
        if name == "setdefault":
            collisions.note(args[:1])
        elif args:
            if not isinstance(args[0], (list, tuple, dict)):
                args = (list(iterate(args[0], ir.Const(None))), *args[1:])
            collisions.note(sizes.keys_of(args[0], as_pairs=True))
    return args


def _describe(func: ir.Expr) -> str:
    if isinstance(func, ir.Name):
        return f"'{func.id}'"
    if isinstance(func, ir.Attribute):
        return f"'.{func.attr}'"
    return "this expression"
