"""Functions a program defines with ``def`` or ``lambda`` (LANGUAGE.md section 3).

A :class:`UserFunction` is made when its definition runs: the definition, the values of
its parameters' defaults (evaluated then, as in Python), the scope it closes over (None at
the top level: the running program's globals, read at call time) and the program instance
that runs its body. Calling it runs the body to completion on that instance's stack
machine (:meth:`lmq.runtime.interpreter.program.ProgramState.invoke`): the same statements,
sandbox, step, memory and size limits as the program, and a depth bounded by
``limits.depth``. A body never holds a prompt statement (checked at compile time), so a
call never waits for the model; Python code may call a function too (``sorted(key=f)``, a
predicate).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Protocol

from lmq import ir
from lmq.errors import LmqRuntimeError
from lmq.runtime.interpreter.evaluate import Scope
from lmq.runtime.interpreter.namespaces import ProgramCallable, bind_call


class Machine(Protocol):
    def invoke(self, function: UserFunction, args: tuple, kwargs: dict) -> Any: ...


class UserFunction(ProgramCallable):
    def __init__(self, name: str, params: tuple[ir.Param, ...], body: tuple[ir.Stmt, ...],
                 defaults: dict[str, Any], closure: Scope | None, machine: Machine,
                 span: Any) -> None:
        self.name = name
        self.params = params
        self.body = body
        self.defaults = defaults
        self.closure = closure
        self._machine = weakref.ref(machine)  # the instance holds its functions: no cycle
        self.span = span

    @property
    def machine(self) -> Machine:
        machine = self._machine()
        if machine is None:
            raise LmqRuntimeError(f"function '{self.name}' belongs to a program instance "
                                  "that has ended", self.span)
        return machine

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.machine.invoke(self, args, kwargs)

    def bound_to(self, machine: Machine) -> UserFunction:
        """The same function run by another program instance (a fork)."""
        return UserFunction(self.name, self.params, self.body, self.defaults, self.closure,
                            machine, self.span)

    def bind(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """The parameters' values for a call (Python's rules for positional, keyword and
        default arguments)."""
        return bind_call(self.name, [param.name for param in self.params], args, kwargs,
                         self.defaults)

    def __repr__(self) -> str:
        return f"<function {self.name}>"


@dataclass
class FunctionCall:
    """The frame of a running call: where its body's ``return`` value goes."""

    scope: Scope
    function: UserFunction
    result: Any = None
