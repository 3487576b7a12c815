"""Companion rows: holes decoded from several contexts or models at once.

Some holes are decoded from logits combined across extra batch rows that follow the main
row token for token:

* ``prefer a > b > ... with mode="contrastive"`` (LANGUAGE.md section 9): the same model
  with the sections of one knowledge source left out; each source's contribution
  ``z_full - z_without_source`` is amplified by a weight that grows with its rank
  (context-aware decoding, generalised to a hierarchy).
* ``fuse(large, base=small, experts=[...])`` (``lmq.stdlib.fusion``): other models on the
  same context, combined by Dynamic Logit Fusion.

A :class:`Companions` says which extra contexts a hole needs and how to combine their
logits; the decoding loop feeds them in the same forward pass per model as the main rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lmq import ir
from lmq.errors import LmqCompileError
from lmq.runtime.interpreter import Segment

PREFER_MODES = ("contrastive",)
SOURCES = ("instruction", "context")


@dataclass(frozen=True)
class Ensemble:
    """What ``lmq.stdlib.fusion.fuse`` returns: decode with ``main``'s tokens and masks,
    from logits combined with the ``others`` models' logits on the same context."""

    main: Any
    others: tuple[Any, ...]
    combine: Callable[[torch.Tensor, Sequence[torch.Tensor]], tuple[torch.Tensor, dict]]
    name: str = "fuse"


@dataclass
class Companion:
    """An extra context for the current hole: ``model`` (None = the main model) and the
    segment filter that defines what it sees (``without``: a knowledge source left out)."""

    key: tuple[str, str]
    model: Any = None
    without: str | None = None
    prefix: Segment | None = None  # text this companion sees before the program's

    def segments(self, segments: list[Segment]) -> list[Segment]:
        if self.without is not None:
            segments = [s for s in segments if s.knowledge != self.without]
        return segments if self.prefix is None else [self.prefix, *segments]


@dataclass
class Plan:
    """The companions of one hole and how to combine (main, companions) logits."""

    companions: list[Companion]
    combine: Callable[[torch.Tensor, Sequence[torch.Tensor]], tuple[torch.Tensor, dict]]
    decisions: list[dict] = field(default_factory=list)


def prefer_plan(prefer: ir.Prefer, segments: list[Segment],
                evaluate: Callable[[ir.Expr], Any]) -> Plan | None:
    """The contrastive plan for a ``prefer`` clause, or None when no ranked source has a
    section in the prompt (then there is nothing to prefer)."""
    options = {kw.name: evaluate(kw.value) for kw in prefer.options}
    mode = options.get("mode", "contrastive")
    if mode not in PREFER_MODES:
        raise LmqCompileError(f"prefer mode {mode!r} is not available in the decoding loop "
                              f"(modes: {', '.join(PREFER_MODES)}; for a source cascade use "
                              "lmq.stdlib.knowledge.cascade_answer)", prefer.span)
    strength = float(options.get("strength", 1.0))
    present = {s.knowledge for s in segments if s.knowledge}
    ranked = [source for source in prefer.order if source in SOURCES and source in present]
    if not ranked:
        return None
    weights = [strength * (len(ranked) - i) / len(ranked) for i in range(len(ranked))]
    companions = [Companion(("without", source), without=source) for source in ranked]

    def combine(main: torch.Tensor, others: Sequence[torch.Tensor]) -> tuple[torch.Tensor,
                                                                               dict]:
        logp = torch.log_softmax(main, dim=-1)
        out = logp.clone()
        for weight, other in zip(weights, others):
            out += weight * (logp - torch.log_softmax(other, dim=-1))
        return out, {}

    return Plan(companions, combine)


def ensemble_plan(ensemble: Ensemble) -> Plan:
    """Companions for the ``others`` of an ensemble; an entry may be a model spec or a
    ``(model, prefix)`` pair whose prefix text only that companion sees (prompt-as-expert)."""
    companions = []
    for i, other in enumerate(ensemble.others):
        model, prefix = other if isinstance(other, tuple) else (other, None)
        companions.append(Companion(("model", str(i)), model=model,
                                    prefix=_prefix_segment(prefix) if prefix else None))
    return Plan(companions, ensemble.combine)


_PREFIXES: dict[str, Segment] = {}


def _prefix_segment(text: str) -> Segment:
    """One segment per prefix text, so a companion's context stays in sync across holes."""
    if text not in _PREFIXES:
        _PREFIXES[text] = Segment(text)
    return _PREFIXES[text]
