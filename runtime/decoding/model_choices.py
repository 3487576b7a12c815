"""What a program may use as a model besides a name, a backend or a view.

Both are made by the standard library and read by the runtime (:func:`lmq.runtime.
decoding.features.hole_plan`, :class:`lmq.runtime.specialists.ModelResolver`); this module
imports nothing heavy, so ``lmq.stdlib`` modules stay cheap to import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Combiner = Callable[[Any, Sequence[Any]], tuple[Any, dict]]
"""``combine(main_logits, [other_logits, ...]) -> (logits, decision)``: torch tensors
``[vocab]`` in, the logits to decode from and what the trace records of the step out."""


@dataclass(frozen=True)
class Ensemble:
    """Decode with ``main``'s tokens and masks, from logits combined with the ``others``
    models' logits on the same context: ``combine(main_logits, [other_logits, ...]) ->
    (logits, decision)``. An entry of ``others`` is a model, or a ``(model, prefix)`` pair
    whose prefix text only that model sees (prompt-as-expert)."""

    main: Any
    others: tuple[Any, ...]
    combine: Combiner
    name: str = "fuse"


class Routed(str):
    """A model name chosen by a router, with the decision: the chosen candidate ``name``,
    how it was chosen (``by``), every candidate's ``scores`` and the candidate's
    ``specialist`` settings (a configuration table as a dict; None: the name is a model
    or a configured specialist). Programs see a plain ``str`` (the sandbox reaches only
    ``str``'s own methods)."""

    name: str
    by: str
    scores: dict[str, float]
    specialist: dict[str, Any] | None

    def __new__(cls, spec: str, name: str, by: str, scores: Mapping[str, float],
                specialist: Mapping[str, Any] | None = None) -> Routed:
        self = super().__new__(cls, spec)
        self.name, self.by = name, by
        self.scores = dict(scores)
        self.specialist = None if specialist is None else dict(specialist)
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:  # copy and pickle
        return (str(self), self.name, self.by, self.scores, self.specialist)
