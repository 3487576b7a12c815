"""How features reach the decoding loop: one call, :func:`hole_plan`, per hole.

A hole's inline ``from`` value and its ``prefer`` clause may ask for more than "the
program's context on one model". This module turns them into what the loop runs — the
model that answers, the :class:`~lmq.runtime.decoding.plans.Plan` the hole is decoded
under (companion rows and how their logits combine, a view of the context, a review of
the finished value) and a decision for the trace — so the loop itself knows no feature:

* an :class:`~lmq.runtime.decoding.model_choices.Ensemble` (what ``lmq.stdlib.fusion.fuse``
  returns): the main model answers, the other models run as companion rows, their logits
  combined by the ensemble's ``combine`` (Dynamic Logit Fusion);
* a :class:`~lmq.runtime.decoding.model_choices.Routed` model name (what
  ``lmq.stdlib.routing.route`` returns): that model answers (a specialist it names
  resolves with its settings), and the router's decision goes into the trace;
* a ``prefer`` clause: the knowledge-preference plan of its mode
  (:mod:`lmq.runtime.decoding.prefer`).

"""

from __future__ import annotations

from typing import Any

from lmq.runtime.decoding.instance import HoleRequest, Segment
from lmq.runtime.decoding.model_choices import Ensemble, Routed
from lmq.runtime.decoding.plans import Companion, Plan, stable_segment
from lmq.runtime.decoding.prefer import prefer_plan


def hole_plan(request: HoleRequest, segments: list[Segment],
              ) -> tuple[Any, Plan | None, dict[str, Any] | None]:
    """``(model, plan, decision)`` for a hole: the model that answers it (an inline
    ``from`` value, None for the run's model), the plan it is decoded under (None: plain
    decoding) and what the trace should record of the choice (None: nothing)."""
    model = request.model
    # by type alone: a host object's ``__class__`` could claim to be either
    if type(model) is Ensemble:
        return model.main, ensemble_plan(model), None
    decision = None
    if issubclass(type(model), Routed):
        decision = {"route": str(model), "by": model.by, "scores": dict(model.scores)}
    plan = None
    if request.prefer is not None and request.distribution is None:
        plan = prefer_plan(request.prefer, request.prefer_options, segments)
    return model, plan, decision


def ensemble_plan(ensemble: Ensemble) -> Plan:
    """Companions for the ``others`` of an ensemble."""
    companions = []
    for i, other in enumerate(ensemble.others):
        model, prefix = other if isinstance(other, tuple) else (other, None)
        companions.append(Companion(("model", str(i)), model=model,
                                    prefix=stable_segment(prefix) if prefix else None))
    return Plan(companions, ensemble.combine)
