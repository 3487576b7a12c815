"""Knowledge preference in the decoding loop: the three modes of ``prefer`` (LANGUAGE.md 9).

A hole under ``prefer a > b > … [with mode=M, …]`` is decoded under a
:class:`~lmq.runtime.decoding.plans.Plan`. Sources are the ``{:instruction}`` and
``{:context}`` sections of the prompt (``parametric`` is the model's own knowledge):

* ``contrastive`` (the default; options ``strength=1.0``, ``plausibility=0.1``): one
  companion row per ranked source present, without that source's sections; the hole is
  decoded from ``log p + sum_i w_i (log p - log p_without_i)`` with
  ``w_i = strength * (n - i) / n`` for the ``i``-th of ``n`` ranked sources (context-aware
  decoding, generalised to a hierarchy), under the adaptive plausibility constraint of
  contrastive decoding: only tokens with ``p >= plausibility * max p`` under the main
  (full-context) row stay eligible; a step where every row picks the same top token is
  decoded plainly. ``strength=0`` is plain decoding; ``plausibility=0`` turns the
  constraint off. See :class:`Contrastive`.
* ``prompt``: no extra rows; the main row sees the program's segments rewritten by
  :func:`~lmq.runtime.decoding.knowledge.section_inserts` — a sentence stating the precedence before
  the first section and a heading on each run of one source's sections, highest priority
  marked. The program's own prompt (``result.prompt``) is unchanged; the rewritten text is
  the ``prompt`` of the hole's decision.
* ``cascade`` (options ``margin=0.0``, ``sentinel="unanswerable"``): one attempt per source
  in order (sources without sections are skipped), each decoded under the hole's
  constraints from a view that keeps only that source's sections, introduced by
  :func:`~lmq.runtime.decoding.knowledge.source_preamble` ("using only …, or reply unanswerable");
  ``parametric`` keeps no section at all. A finished value and the sentinel are scored
  exactly at the hole's start in one batched pass and
  :func:`~lmq.runtime.decoding.knowledge.source_answered` decides with ``margin``; a declined value
  is discarded and the hole is decoded again from the next source's view. ``parametric``
  always answers; the last source's value stands even when it declines (a hole always gets
  a value), which its step records as ``answered: false``. Each attempt is a step of the
  hole's decision: ``source``, ``answer``, ``answer_score``, ``sentinel_score`` (mean
  log-probability per token) and ``answered``.

Options that do not belong to the mode are ignored. The loop keeps a row's KV cache across
attempts up to the first segment where two views differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from lmq import ir
from lmq.errors import LmqCompileError, did_you_mean
from lmq.runtime.decoding.instance import Segment
from lmq.runtime.decoding.knowledge import (
    DEFAULT_MARGIN,
    SENTINEL,
    mean_logprob,
    section_inserts,
    source_answered,
    source_preamble,
)
from lmq.runtime.decoding.plans import Attempt, Companion, Plan, stable_segment

PREFER_MODES = ("contrastive", "prompt", "cascade")
DEFAULT_PLAUSIBILITY = 0.1
SOURCES = ("instruction", "context")


def prefer_plan(prefer: ir.Prefer, options: Mapping[str, Any],
                segments: list[Segment]) -> Plan | None:
    """The plan of a ``prefer`` clause with its evaluated ``with`` ``options`` for a hole
    whose context is ``segments``, or None when there is nothing to prefer (no ranked
    source has a section, and for a cascade no ``parametric`` either)."""
    mode = options.get("mode", "contrastive")
    if mode not in PREFER_MODES:  # a mode from a variable (literals are checked earlier)
        raise LmqCompileError(f"unknown prefer mode {mode!r}", _span(prefer, "mode"),
                              hint=did_you_mean(str(mode), PREFER_MODES)
                              or "the modes are 'contrastive', 'prompt' and 'cascade'")
    present = {s.knowledge for s in segments if s.knowledge}
    if mode == "cascade":
        steps = tuple(s for s in prefer.order if s == "parametric" or s in present)
        return cascade_plan(steps, _number(prefer, options, "margin", DEFAULT_MARGIN),
                            str(options.get("sentinel", SENTINEL))) if steps else None
    ranked = [source for source in prefer.order if source in SOURCES and source in present]
    if not ranked:
        return None
    if mode == "prompt":
        return prompt_plan(prefer.order, segments)
    plausibility = _number(prefer, options, "plausibility", DEFAULT_PLAUSIBILITY)
    if not 0.0 <= plausibility <= 1.0:
        raise LmqCompileError(f"prefer option 'plausibility' is a share between 0 and 1, "
                              f"not {plausibility!r}", _span(prefer, "plausibility"))
    return contrastive_plan(ranked, _number(prefer, options, "strength", 1.0), plausibility)


def _number(prefer: ir.Prefer, options: Mapping[str, Any], name: str,
            default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LmqCompileError(f"prefer option '{name}' takes a number, not {value!r}",
                              _span(prefer, name))
    return float(value)


def _span(prefer: ir.Prefer, name: str) -> Any:
    """The span of option ``name``'s value, else of the clause."""
    return next((kw.value.span for kw in prefer.options if kw.name == name), prefer.span)


# ------------------------------------------------------------------ contrastive


def contrastive_plan(ranked: Sequence[str], strength: float,
                     plausibility: float = DEFAULT_PLAUSIBILITY) -> Plan:
    weights = tuple(strength * (len(ranked) - i) / len(ranked) for i in range(len(ranked)))
    companions = [Companion(("without", source), without=source) for source in ranked]
    return Plan(companions, Contrastive(weights, plausibility, SKIP_AGREEMENT))


# A finite stand-in for -inf: implausible tokens rank below every plausible one (and get no
# probability mass next to one), but a constraint that forbids every plausible token still
# leaves a choice, ranked as without the plausibility constraint.
IMPLAUSIBLE = 1e4
# Whether new plans skip the amplification at steps where every row agrees (see
# :class:`Contrastive`); an ablation switch for bench/eval_knowledge.py, not a language option.
SKIP_AGREEMENT = True


@dataclass(frozen=True)
class Contrastive:
    """The combine of the contrastive mode: rank-weighted amplification of each source's
    contribution, restricted to the tokens the main row finds plausible.

    ``main`` holds the logits of the row that sees every source, ``others[i]`` those of the
    row without the ``i``-th ranked source. With ``logp = log_softmax(main)`` and
    ``logq_i = log_softmax(others[i])`` the scores are
    ``logp + sum_i weights[i] * (logp - logq_i)`` on the plausible tokens
    ``{x : logp[x] >= log(plausibility) + max logp}`` (the adaptive plausibility constraint
    of contrastive decoding, Li et al. 2023, as in context-aware decoding); any other token
    gets that score minus ``IMPLAUSIBLE``. ``plausibility=0`` keeps every token; all weights
    zero (``strength=0``) give ``logp`` itself.

    With ``skip_agreement`` (the default) a step where every row's top token is the main
    row's is decoded from ``logp`` alone: leaving a source out does not change the model's
    choice there, so there is no conflict to resolve, and amplifying the small differences
    in the rest of the distribution only pulls the answer off course (on the dev set it
    turned one-word answers into sentences, "Swiss Franc" into "The Swiss franc is the
    official currency of Switzerland."). The contrast acts where a source changes the
    choice."""

    weights: tuple[float, ...]
    plausibility: float = DEFAULT_PLAUSIBILITY
    skip_agreement: bool = True

    def __call__(self, main: torch.Tensor,
                 others: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        logp = torch.log_softmax(main, dim=-1)
        if not any(self.weights):  # strength=0: plain decoding, scores included
            return logp, {}
        if self.skip_agreement:
            top = torch.argmax(main, dim=-1)
            if all(bool((torch.argmax(other, dim=-1) == top).all()) for other in others):
                return logp, {}
        out = logp.clone()
        for weight, other in zip(self.weights, others):
            if weight:
                out += weight * (logp - torch.log_softmax(other, dim=-1))
        if self.plausibility > 0:
            floor = logp.max(dim=-1, keepdim=True).values + math.log(self.plausibility)
            out = torch.where(logp >= floor, out, out - IMPLAUSIBLE)
        return out, {}


# ------------------------------------------------------------------ prompt


def prompt_plan(order: Sequence[str], segments: list[Segment]) -> Plan:
    view = partial(sectioned, tuple(order))
    shown = "".join(segment.text for segment in view(segments))
    return Plan(view=view, decisions=[{"mode": "prompt", "order": list(order),
                                       "prompt": shown}])


def sectioned(order: tuple[str, ...], segments: list[Segment]) -> list[Segment]:
    """``segments`` with the prompt mode's precedence sentence and section headings."""
    inserts = section_inserts([(s.text, s.knowledge) for s in segments], order)
    out: list[Segment] = []
    for i, segment in enumerate(segments):
        for slot, (text, knowledge) in enumerate(inserts.get(i, ())):
            out.append(stable_segment(text, segment.role, knowledge, (segment.serial, slot)))
        out.append(segment)
    return out


# ------------------------------------------------------------------ cascade


def cascade_plan(steps: tuple[str, ...], margin: float, sentinel: str,
                 done: tuple[dict, ...] = ()) -> Plan:
    """The attempt for ``steps[0]``; ``done`` are the decisions of the earlier attempts."""
    return Plan(view=partial(source_view, steps[0], sentinel), decisions=list(done),
                review=partial(review_step, steps, margin, sentinel, done))


def source_view(source: str, sentinel: str, segments: list[Segment]) -> list[Segment]:
    """What the cascade's attempt for ``source`` sees: the program's text without the
    other sources' sections, the source's own introduced by its preamble."""
    if source == "parametric":
        return [s for s in segments if not s.knowledge]
    kept = [s for s in segments if s.knowledge in (None, source)]
    first = next((i for i, s in enumerate(kept) if s.knowledge == source and s.text.strip()),
                 None)
    if first is None:
        return kept
    anchor = kept[first]
    preamble = stable_segment(source_preamble(source, sentinel), anchor.role, None,
                              (anchor.serial, 0))
    return [*kept[:first], preamble, *kept[first:]]


def review_step(steps: tuple[str, ...], margin: float, sentinel: str, done: tuple[dict, ...],
                attempt: Attempt) -> Plan:
    """Decide on the value of the attempt for ``steps[0]``: the plan that keeps it (no
    review) or the next source's attempt."""
    source, last = steps[0], len(steps) == 1
    step = {"mode": "cascade", "source": source, "answer": attempt.value.strip(),
            "raw": attempt.value, "answer_score": None, "sentinel_score": None,
            "answered": True}
    if source != "parametric":
        space = "" if attempt.before[-1:].isspace() else " "  # as the model would write it
        scores = attempt.score([attempt.tokens, attempt.encode(space + sentinel)])
        step["answer_score"], step["sentinel_score"] = (mean_logprob(s) for s in scores)
        step["answered"] = source_answered(attempt.value, step["answer_score"],
                                           step["sentinel_score"], margin, sentinel)
    if step["answered"] or last:
        return Plan(view=partial(source_view, source, sentinel), decisions=[*done, step])
    return cascade_plan(steps[1:], margin, sentinel, (*done, step))

