"""Checks of the arguments of standard-library functions, before any is used.

A program's values reach a stdlib function as exactly what they are (the sandbox admits
nothing else, :mod:`lmq.runtime.interpreter.boundary`), but a program may pass anything it
holds: an opaque object, a number where text belongs. Each function checks its arguments
by type first — by the type alone, so no method of the value runs — and bounds its work
by the limits of the program calling it (:func:`limits`; the defaults when host code
calls it): a bad argument is an ``LmqRuntimeError`` naming the function and the argument,
too much work an ``LmqLimitError``, never a Python exception from deep inside.

Host code calling these functions directly may pass subclasses of the basic types; the
checks return values of exactly the basic type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmq.errors import LmqLimitError, LmqRuntimeError
from lmq.limits import Limits
from lmq.runtime.backends.base import Backend, ModelView
from lmq.runtime.interpreter.boundary import describe
from lmq.runtime.interpreter.budget import Budget

__all__: list[str] = []  # nothing here is for programs


class ArgumentError(LmqRuntimeError, ValueError):
    """A bad argument of a standard-library function: an ``LmqRuntimeError`` like any
    other in a program, a ``ValueError`` to host code."""


def limits() -> Limits:
    """The limits of the program whose call is running (the defaults outside one)."""
    return Budget.current_limits()


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    return issubclass(type(value), kind)


def _wrong(function: str, name: str, wanted: str, value: Any) -> ArgumentError:
    return ArgumentError(f"{function}(): '{name}' must be {wanted}, not {describe(value)}")


def text(value: Any, name: str, function: str, optional: bool = False) -> Any:
    """A string (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not _is(value, str):
        raise _wrong(function, name, "a string" + (" or None" if optional else ""), value)
    return str.__str__(value)


def texts(value: Any, name: str, function: str, single: bool = False) -> list[str]:
    """A list or tuple of strings (a lone string too, when ``single``), at most
    ``limits.collection_size`` of them."""
    if single and _is(value, str):
        return [str.__str__(value)]
    if not _is(value, (list, tuple)):
        raise _wrong(function, name, "a list of strings", value)
    items = sequence(value, name, function)
    for item in items:
        if not _is(item, str):
            raise _wrong(function, f"{name}[...]", "a string", item)
    return [str.__str__(item) for item in items]


def sequence(value: Any, name: str, function: str) -> list[Any]:
    """A list or tuple, at most ``limits.collection_size`` items, as a list."""
    if not _is(value, (list, tuple)):
        raise _wrong(function, name, "a list", value)
    items = list(list.__iter__(value) if _is(value, list) else tuple.__iter__(value))
    count(len(items), name, function)
    return items


def integer(value: Any, name: str, function: str, low: int | None = None,
            optional: bool = False) -> Any:
    """An int (not a bool) of at least ``low``."""
    if value is None and optional:
        return None
    if not _is(value, int) or type(value) is bool:
        raise _wrong(function, name, "an integer", value)
    value = int.__index__(value)
    if low is not None and value < low:
        raise ArgumentError(f"{function}(): '{name}' must be at least {low}, not {value}")
    return value


def number(value: Any, name: str, function: str, optional: bool = False) -> Any:
    """An int or a float (not a bool), as a float."""
    if value is None and optional:
        return None
    if not _is(value, (int, float)) or type(value) is bool:
        raise _wrong(function, name, "a number", value)
    try:
        return float(int.__index__(value) if _is(value, int) else float.__float__(value))
    except OverflowError:
        raise ArgumentError(f"{function}(): '{name}' is too large a number") from None


def flag(value: Any, name: str, function: str) -> bool:
    if type(value) is not bool:
        raise _wrong(function, name, "True or False", value)
    return value


def choice(value: Any, name: str, function: str, options: Sequence[str]) -> str:
    if not _is(value, str) or value not in options:
        got = repr(value) if _is(value, str) else describe(value)
        raise ArgumentError(f"{function}(): '{name}' must be one of "
                            f"{', '.join(map(repr, options))}, not {got}")
    return str.__str__(value)


def model(value: Any, function: str) -> Any:
    """A model: a name or spec (None: the default), or — from host code — a backend
    object or a model view."""
    if value is None or _is(value, (str, Backend, ModelView)):
        return value
    raise _wrong(function, "model", "a model name or spec", value)


def count(items: int, name: str, function: str, most: int | None = None) -> None:
    """At most ``most`` items (default: ``limits.collection_size``)."""
    most = limits().collection_size if most is None else most
    if items > most:
        raise LmqLimitError(f"{function}(): '{name}' has {items:,} items; the limit is "
                            f"{most:,} (limits.collection_size)")


def characters(size: int, what: str, function: str) -> None:
    """A result of ``size`` characters fits ``limits.string_size``."""
    most = limits().string_size
    if size > most:
        raise LmqLimitError(f"{function}() would make {what} of {size:,} characters; the "
                            f"limit is {most:,} (limits.string_size)")


def work(steps: int, what: str, function: str) -> None:
    """Spend ``steps`` elementary steps of the calling program's ``limits.steps`` (the
    work it could do itself in as many statements), before doing them."""
    Budget.spend_current(steps, f"{function}() for {what}")
