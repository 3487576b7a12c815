"""Host operations of lmq expressions, run under the sandbox and the limits.

:mod:`lmq.runtime.interpreter.evaluate` walks an expression; the operations that hand values
to Python go through here: a call (builtins, imported stdlib names, tools, methods of basic values),
a binary operator, a comparison, iteration. Each refuses, before Python starts, work that
would pass a limit, and notes the keys about to be hashed into a set or dict
(:class:`~lmq.runtime.interpreter.sizes.Collisions`).
"""

from __future__ import annotations

import builtins
import functools
import operator
from collections.abc import Callable, Iterator
from typing import Any

from lmq import ir
from lmq.errors import LmqError, LmqLimitError, LmqRuntimeError, LmqSandboxError
from lmq.limits import Limits
from lmq.runtime.interpreter import sandbox, sizes
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
_BUILTIN_NAMES = {id(getattr(builtins, name)): name for name in sandbox.ALLOWED_BUILTIN_NAMES}


def is_callable(function: Any, callables: set[int]) -> bool:
    """Whether a program may call ``function``: ``callables`` holds the ids of the
    builtins, tools and stdlib names; methods of basic values are always allowed."""
    return id(function) in callables or sandbox.is_basic_method(function) or \
        isinstance(function, ProgramCallable)


def iterate(value: Any, expr: ir.Node) -> Iterator[Any]:
    if not isinstance(value, sandbox.ITERABLES) \
            or isinstance(value, (int, float, bool, type(None))):
        raise LmqRuntimeError(f"cannot iterate over a {type(value).__name__}", expr.span)
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
    """``left op right`` for one link of a comparison chain, its walk bounded first."""
    _precheck_compare(op, left, right, limits)
    return COMPARE[op](left, right)


def _precheck_compare(op: str, left: Any, right: Any, limits: Limits) -> None:
    """Comparing containers walks them: bound the walk before Python does it."""
    if op in ("is", "is not"):
        return
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

def call(function: Any, args: tuple, kwargs: dict, expr: ir.Call, limits: Limits,
         callables: set[int], collisions: sizes.Collisions) -> Any:
    """Call ``function`` if the sandbox allows it; errors name the callee."""
    is_method = sandbox.is_basic_method(function)
    if not is_method and not is_callable(function, callables):
        raise LmqSandboxError(f"{_describe(expr.func)} is not callable in lmq programs "
                              "(only builtins, imported stdlib names, tools and methods "
                              "of basic values are)", expr.span)
    builtin = _BUILTIN_NAMES.get(id(function))
    allowed = functools.partial(is_callable, callables=callables)
    if is_method:
        sandbox.precheck_method(function, args, kwargs, limits)
        args = _note_method_keys(function, args, collisions)
        sandbox.check_key_function(function, kwargs, allowed)
    elif builtin is not None:
        if builtin in ("str", "repr") and len(args) == 1 and not kwargs:
            return sizes.to_text(args[0], limits, f"the argument of {builtin}()",
                                 as_repr=builtin == "repr")
        if builtin in ("set", "dict") and args and not isinstance(
                args[0], (list, tuple, dict, set, frozenset, str)):
            args = (list(iterate(args[0], expr)), *args[1:])  # look before
        sandbox.precheck_builtin(builtin, args, kwargs, limits)
        if builtin in ("set", "dict") and args:
            collisions.note(sizes.keys_of(args[0], builtin == "dict"))
        sandbox.check_key_function(function, kwargs, allowed)
    try:
        result = function(*args, **kwargs)
    except LmqError:
        raise
    except RecursionError:
        raise LmqRuntimeError(f"{_describe(expr.func)} recursed too deeply",
                              expr.span) from None
    except MemoryError:
        raise LmqLimitError(f"the host ran out of memory in {_describe(expr.func)} "
                            "(lower limits.memory or the size limits)", expr.span) from None
    except Exception as error:  # a host tool may raise anything: report it, keep going
        if is_method or _is_builtin(function):
            raise LmqRuntimeError(f"{type(error).__name__}: {error}", expr.span) from None
        raise LmqRuntimeError(f"tool {_describe(expr.func)} raised "
                              f"{type(error).__name__}: {error}", expr.span) from None
    if is_method:
        sandbox.check_grown(function, limits)
    return sizes.check_size(result, limits, f"result of {_describe(expr.func)}")


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


def _is_builtin(function: Any) -> bool:
    return (getattr(function, "__module__", None) == "builtins" or isinstance(function, type)
            or getattr(function, "lmq_builtin", False))
