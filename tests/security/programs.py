"""Running a program in the interpreter alone (no model), for the security tests."""

from __future__ import annotations

from lmq.checks import compile_source
from lmq.limits import Limits
from lmq.runtime.interpreter.program import ProgramState


def interpret(source: str, params=None, tools=None, limits=None,
              fill: str = "x") -> ProgramState:
    """Run ``source`` to its end, each hole filled with ``fill``."""
    checked = compile_source(source, "attack.lmq")
    state = ProgramState(checked.program, params or {}, tools or {}, limits or Limits(),
                         output=lambda text: None)
    while state.run() is not None:
        state.fill(fill)
    return state
