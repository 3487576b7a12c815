"""Objects lmq itself puts in reach of a program: namespaces whose attributes it may read
and functions it may call (LANGUAGE.md section 3).

The sandbox (:mod:`lmq.runtime.interpreter.sandbox`) reaches attributes only on values of
the basic types, and calls only builtins, tools, stdlib names and methods of basic values;
these two classes are the one door beside them, for what lmq owns: a
:class:`Namespace` answers attribute reads itself (a module such as ``re``, a record
value, LMQL's ``context``), a :class:`ProgramCallable` may be called (the functions of
those namespaces, a ``def`` of the program, a record type). Neither ever hands out a host
object: every attribute and every result is a basic value or another of these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lmq.errors import LmqRuntimeError, LmqSandboxError, did_you_mean


class ProgramCallable:
    """A callable a program may call (``operations.is_callable``). Python exceptions it
    raises are reported as a builtin's (no "tool raised")."""

    lmq_builtin = True


class Native(ProgramCallable):
    """A function of an lmq-owned namespace."""

    __slots__ = ("function", "name")

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self.name = name
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<function {self.name}>"


class Namespace:
    """An object whose attributes a program may read; ``attributes`` maps each name to
    its value (a :class:`Native`, a basic value or another namespace)."""

    kind = "namespace"

    def __init__(self, name: str, attributes: Mapping[str, Any]) -> None:
        self.name = name
        self.attributes = dict(attributes)

    def attribute(self, name: str) -> Any:
        try:
            return self.attributes[name]
        except KeyError:
            raise LmqSandboxError(f"{self.kind} '{self.name}' has no attribute '{name}' in "
                                  "lmq programs",
                                  hint=did_you_mean(name, self.attributes)) from None

    def __repr__(self) -> str:
        return f"<{self.kind} '{self.name}'>"



def bind_call(owner: str, names: list[str], args: tuple, kwargs: dict,
              defaults: Mapping[str, Any], what: str = "argument") -> dict[str, Any]:
    """The values of ``names`` for the call ``owner(*args, **kwargs)`` (Python's rules for
    positional, keyword and default arguments); ``what`` names them in messages."""
    if len(args) > len(names):
        raise LmqRuntimeError(f"{owner}() takes {len(names)} {what}"
                              f"{'s' * (len(names) != 1)}, got {len(args)}")
    bound = dict(zip(names, args))
    for name, value in kwargs.items():
        if name not in names or name in bound:
            raise LmqRuntimeError(f"{owner}() got an unexpected or repeated {what} '{name}'")
        bound[name] = value
    for name in names:
        if name not in bound:
            if name not in defaults:
                raise LmqRuntimeError(f"{owner}() is missing the {what} '{name}'")
            bound[name] = defaults[name]
    return bound
