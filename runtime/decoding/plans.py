"""Plans: how one hole is decoded beyond "the program's context, the main model".

A :class:`Plan` may give a hole

* **companion rows**: extra batch rows that follow the main row token for token, each with
  its own context or model, and a ``combine`` of their logits with the main row's —
  ``fuse(large, base=small, experts=[...])`` (an :class:`~lmq.runtime.decoding.features.
  Ensemble`, Dynamic Logit Fusion) and ``prefer … with mode="contrastive"``;
* a **view**: the segments the main row sees instead of the program's —
  ``prefer … with mode="prompt"`` and ``mode="cascade"``;
* a **review** of the finished value: it returns the next plan, whose own ``review`` is None
  when the value stands; otherwise the value is discarded and the hole is decoded again
  under the next plan (``mode="cascade"`` falling back down the hierarchy).

The plans of features are built by :func:`lmq.runtime.decoding.features.hole_plan` (the
knowledge-preference ones in :mod:`lmq.runtime.decoding.prefer`); the decoding loop feeds
companions in the same forward pass per model as the main rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from lmq.runtime.backends.served import ServedBackend
from lmq.runtime.decoding.context import RowContext, forward_logits
from lmq.runtime.decoding.instance import Segment
from lmq.runtime.decoding.model_choices import Combiner


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


@dataclass(frozen=True)
class Attempt:
    """A finished value offered to a plan's review.

    ``tokens`` are the value's tokens as they would stand in the context; ``before`` is the
    program text right before the hole; ``score(sequences)`` gives exact per-token
    log-probabilities of token sequences at the hole's start on the main row (one batched
    pass; it takes the value's tokens out of the row, which the loop puts back if the value
    stands)."""

    value: str
    tokens: list[int]
    before: str
    encode: Callable[[str], list[int]]
    score: Callable[[Sequence[Sequence[int]]], list[list[float]]]


def main_only(main: torch.Tensor, others: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """The combine of a plan without companions."""
    return main, {}


@dataclass
class Plan:
    """How one hole is decoded: companions and ``combine``, ``view`` and ``review`` (see the
    module docstring). ``decisions`` go into the trace when the hole ends."""

    companions: list[Companion] = field(default_factory=list)
    combine: Combiner = main_only
    decisions: list[dict] = field(default_factory=list)
    view: Callable[[list[Segment]], list[Segment]] | None = None
    review: Callable[[Attempt], Plan] | None = None
    start_score: float = 0.0  # the row's score when this plan's attempt began

    def segments(self, segments: list[Segment]) -> list[Segment]:
        """What the main row sees of the program's ``segments``."""
        return segments if self.view is None else self.view(segments)


def review(plan: Plan, context: RowContext, value: str, tokens: list[int],
           before: str) -> tuple[Plan, int]:
    """Offer a finished value to ``plan``'s review on the hole's main ``context``; returns
    the next plan and the forward passes its scoring took. Afterwards the context holds
    the value's tokens if the next plan keeps the value (no review), none of them if not."""
    assert plan.review is not None
    generated, passes = list(context.hole_tokens), 0

    def score(sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        nonlocal passes
        context.close_hole(0, [])
        first = None
        if context.pending and isinstance(context.backend, ServedBackend):
            context.backend.append(context.handle, context.take_feed())
        elif context.pending:  # the hole ended before its first forward pass
            first = context.last_logits = forward_logits(
                context.backend, {context.handle: context.take_feed()})[0]
            passes += 1
        passes += 1
        return context.backend.score(context.handle, sequences, first_logits=first)

    following = plan.review(Attempt(value, tokens, before, context.runtime.vocabulary.encode,
                                    score))
    context.counters.forward_passes += passes
    if following.review is not None:
        context.close_hole(0, [])
    elif generated and not context.hole_tokens:  # scoring took the value out: put it back
        for token in generated:
            context.push_generated(token)
    return following, passes


def text_before(segments: list[Segment], role: str | None) -> str:
    """The end of the text right before a hole in ``role``: a turn opened at the hole ends
    in its header (a newline or a space), counted as ``"\\n"``."""
    if not segments or segments[-1].role != role:
        return "\n"
    return segments[-1].text


@lru_cache(maxsize=4096)
def stable_segment(text: str, role: str | None = None, knowledge: str | None = None,
                   anchor: tuple[int, int] | None = None) -> Segment:
    """A segment that a plan adds to a context, the same object each time it is asked for
    with the same arguments (``anchor``: the serial of the segment it precedes and a slot),
    so a row that saw it at one hole does not encode it again at the next. The cache only
    saves work: a segment made again is encoded again, which is still correct."""
    return Segment(text, role, knowledge)
