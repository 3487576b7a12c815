"""What the decoding loop needs of a program instance, and what an instance gives it.

The interpreter (:mod:`lmq.runtime.interpreter`) implements :class:`ProgramInstance`:
it runs a program to its next hole and hands over a :class:`HoleRequest`; its context is
a list of :class:`Segment` s, the text the model sees. The loop decodes the hole and gives
the value back with :meth:`ProgramInstance.fill`. The loop never sees program variables,
frames or the sandbox; the interpreter never sees a model.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lmq import ir
from lmq.constraints import HoleSpec
from lmq.errors import Source
from lmq.limits import Limits

_serials = itertools.count()


@dataclass(frozen=True)
class Segment:
    """A piece of the model's context: prompt text, or a hole's generated text.

    ``tokens`` holds the ids the model generated for a hole (on the model view
    ``model``), so that view's context is extended with exactly those tokens instead of
    re-encoded text.
    """

    text: str
    role: str | None = None
    knowledge: str | None = None
    hole: str | None = None
    tokens: tuple[int, ...] | None = None
    model: Any = None
    serial: int = field(default_factory=lambda: next(_serials))


@dataclass(frozen=True)
class HoleRequest:
    """The program needs the model to fill ``hole`` under ``spec``.

    ``model`` is the statement's inline ``from`` value (None: the run's model);
    ``distribution`` the values of a ``distribution`` clause on this hole; ``prefer`` the
    ``prefer`` clause in force, with its ``with`` options evaluated in ``prefer_options``.
    """

    hole: ir.Hole
    spec: HoleSpec
    model: Any
    distribution: tuple[str, ...] | None = None
    prefer: ir.Prefer | None = None
    prefer_options: Mapping[str, Any] = field(default_factory=dict)


class ProgramInstance(Protocol):
    """One running program instance: a batch row, a sample, or a beam branch."""

    context: list[Segment]  # what the model has been shown so far, in order
    role: str | None  # the chat role the next text belongs to
    finished: bool
    limits: Limits  # its run's bounds (the loop bounds what it allocates for the row)

    @property
    def source(self) -> Source:
        """The program's source, for errors that point into it."""

    @property
    def prompt(self) -> str:
        """The rendered prompt so far."""

    @property
    def variables(self) -> dict[str, Any]:
        """Each hole's last value."""

    def run(self) -> HoleRequest | None:
        """Run to the next hole (returned) or to the end (None)."""

    def fill(self, text: str, *, tokens: tuple[int, ...] | None = None, model: Any = None,
             logprobs: list[float] | None = None) -> None:
        """Give the pending hole its value; the program goes on at the next :meth:`run`."""

    def record_distribution(self, hole: str, probabilities: dict[str, float]) -> None:
        """Keep the probabilities of a distribution hole's values for the result."""

    def check_deadline(self) -> None:
        """Raise :class:`~lmq.errors.LmqLimitError` if the run is past its timeout."""

    def fork(self) -> ProgramInstance:
        """An independent copy at the same position (beam search)."""
