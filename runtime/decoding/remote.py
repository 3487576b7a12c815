"""Holes decoded by a serving engine (:mod:`lmq.runtime.backends.served`).

The decoding loop hands a hole on a :class:`ServedBackend` to :func:`decode_remote`, which
runs in one of the loop's worker threads (one request in flight per hole, up to the
backend's ``max_inflight`` holes at once) and drives the hole's :class:`HoleRun` with the
tokens the engine streams back, exactly as the local loop drives it with chosen tokens:

* each request continues the whole context (prompt ids plus the hole's tokens so far)
  under the hole's automaton from its current state, compiled into the engine's form;
* every token is checked against lmq's own mask before it is pushed (a token the
  constraint forbids is an error naming the hole and the engine, never a value), and
  stop phrases, token counts and the budget end the hole where :class:`HoleRun` says;
* ``argmax``: where the value is complete, the hole ends when the model's own top token
  (the engine's raw log-probabilities) is not the masked choice, as
  :func:`~lmq.runtime.decoding.choosing.greedy_batch` decides locally;
* ``sample``: where the value is complete, one token is drawn from the model's whole
  distribution (no constraint): a token the constraint does not allow ends the value,
  which is the local rule (end with the probability of those tokens) drawn in one step;
  elsewhere the engine samples under the constraint at the decoder's temperature;
* tokens the constraint leaves no choice about are appended without the engine, as
  :func:`~lmq.runtime.decoding.hole_constraint.forced` does locally, so their tokenization
  is lmq's canonical one; the next request continues after them;
* while a token count forbids an ending, requests ban end-of-sequence.

The score of a value that ends where the model leaves its constraint is the log of the
probability the engine reports for its top tokens outside the constraint (a lower bound:
locally it is every such token's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from lmq.decoders import DecoderSpec
from lmq.errors import LmqConstraintError
from lmq.runtime.automata.fsm import ByteDfa
from lmq.runtime.backends.served import Job, ServedBackend, Step
from lmq.runtime.decoding.context import RowContext
from lmq.runtime.decoding.hole_constraint import forced, forces_a_token
from lmq.runtime.decoding.holes import HoleRun
from lmq.runtime.decoding.model_runtime import ModelRuntime

MAX_REQUESTS = 10_000  # per hole: each request makes progress; a last-resort bound


def check_supported(hole: HoleRun, backend: ServedBackend, decoder: DecoderSpec) -> None:
    """Raise the error naming what this hole needs and the engine lacks."""
    features = backend.dialect.features
    if decoder.name == "beam":
        raise backend.unsupported_feature("beam search", "use argmax or sample(n)")
    if hole.guide is not None:
        if not isinstance(getattr(hole.guide, "dfa", None), ByteDfa):
            raise backend.unsupported_feature(
                f"the constraint of hole '{hole.spec.hole}' (a GRAMMAR, one too large to "
                "compile into one automaton, or a stop phrase cut from a constrained value)",
                "narrow the constraint, or decode it on a local model")
        if decoder.name == "sample" and (decoder.top_k or decoder.top_p is not None) and \
                decoder.top_p != 1.0:
            raise backend.unsupported_feature(
                "top_k/top_p sampling of a constrained hole",
                "sample with temperature alone on a serving engine")
        if decoder.name == "sample" and not features.sampling_with_constraint:
            raise backend.unsupported_feature(
                f"sampling the constrained hole '{hole.spec.hole}' (the engine's "
                "log-probabilities are taken after its own mask, so the value cannot end "
                "where the model leaves the constraint)", "use argmax, or llama-server")
        if decoder.name != "sample" and not features.raw_top:
            raise backend.unsupported_feature(
                f"the argmax ending of constrained hole '{hole.spec.hole}' (the model's own "
                "top token at each step)", "use llama-server")


@dataclass
class Outcome:
    """What a remote hole did: the tokens pushed (forced ones included) and the
    log-probability of its end (0 where it ended by a stop phrase or the budget)."""

    tokens: list[int] = field(default_factory=list)
    end_logprob: float = 0.0


def decode_remote(hole: HoleRun, context: RowContext, runtime: ModelRuntime,
                  decoder: DecoderSpec, rng: torch.Generator | None,
                  force_tokens: bool) -> Outcome:
    """Run ``hole`` to its end on the context's served backend; its tokens are pushed into
    the hole and the context."""
    backend = context.backend
    assert isinstance(backend, ServedBackend)
    outcome = Outcome()
    counters = context.counters
    for _ in range(MAX_REQUESTS):
        if force_tokens:
            outcome.tokens += forced(hole, runtime, [context], counters)
        if hole.ending is not None:
            return outcome
        backend.append(context.handle, context.take_feed())
        job, consume = _request(hole, backend.tokens(context.handle), decoder, rng,
                                runtime, backend.engine, outcome)
        job = dataclasses.replace(job, slot=backend.slot(context.handle))
        before = len(hole.tokens)
        generation = backend.generate(job, consume)
        for token in hole.tokens[before:]:
            context.push_generated(token)
            counters.generated_tokens += 1
            outcome.tokens.append(token)
        counters.forward_passes += 1
        counters.add_server_tokens(generation.computed, generation.cached)
        if hole.ending is not None:
            return outcome
        if generation.finish == "eos":
            _violation(hole, backend.engine, "ended the value where its constraints do not "
                       "accept it")
        if len(hole.tokens) == before and generation.finish != "closed":
            _violation(hole, backend.engine, f"stopped ({generation.finish}) without "
                       "a token the constraint allows")
    raise LmqConstraintError(f"hole '{hole.spec.hole}' took more than {MAX_REQUESTS} "
                             f"requests on {backend.engine}", hole.span)


def _request(hole: HoleRun, prompt: tuple[int, ...], decoder: DecoderSpec,
             rng: torch.Generator | None, runtime: ModelRuntime, engine: str,
             outcome: Outcome) -> tuple[Job, Callable[[Step], bool]]:
    """The next request for ``hole`` and the function that takes its tokens (it stops
    the request where lmq must act: the value ends, or the constraint forces a token)."""
    eos = runtime.eos_ids
    left = hole.budget - len(hole.tokens)
    counts_forbid = len(hole.tokens) <= hole.last_forbidden
    if counts_forbid:  # ban the end until the counts allow one, then ask again
        left = min(left, hole.last_forbidden + 1 - len(hole.tokens))
    sampling = decoder.name == "sample"
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng)) if sampling else None
    temperature = decoder.temperature if sampling else 0.0
    guide = hole.guide
    eos_set = set(eos.tolist())

    if guide is not None and sampling and hole.ends_on_leaving():
        # one token from the model's whole distribution: outside the constraint, it ends
        job = Job(prompt, 1, temperature=temperature, seed=seed)

        def consume_one(step: Step) -> bool:
            if step.token in eos_set or not _content(hole, step.token, eos):
                outcome.end_logprob = _end(hole, step, eos)
            else:
                _push(hole, step, engine, eos)
            return False

        return job, consume_one

    job = Job(prompt, left, guide.dfa if guide is not None else None,  # type: ignore[arg-type]
              hole.state if guide is not None else 0, allow_end=not counts_forbid,
              temperature=temperature, seed=seed,
              top_k=decoder.top_k if sampling and guide is None else None,
              top_p=decoder.top_p if sampling and guide is None else None,
              need_top=guide is not None and not sampling,
              stops=tuple(hole.spec.stops_at) if guide is None else ())

    def consume(step: Step) -> bool:
        if guide is not None and not sampling and hole.ends_on_leaving() and \
                (step.token in eos_set or step.top != step.token):
            outcome.end_logprob = _end(hole, step, eos)
            return False
        if step.token in eos_set:
            if not hole.can_end():
                _violation(hole, engine, "ended the value where its constraints do not "
                           "accept it")
            hole.end_of_sequence()
            outcome.end_logprob = step.logprob or 0.0
            return False
        _push(hole, step, engine, eos)
        if hole.ending is not None or (sampling and hole.ends_on_leaving()):
            return False
        return not (hole.guide is not None and forces_a_token(hole, runtime))

    return job, consume


def _content(hole: HoleRun, token: int, eos: np.ndarray) -> bool:
    """Whether ``token`` is a content token the hole allows here."""
    mask = hole.mask(len(hole.token_bytes))
    return bool(mask is None or (token < len(mask) and mask[token])) and token not in eos


def _push(hole: HoleRun, step: Step, engine: str, eos: np.ndarray) -> None:
    if not _content(hole, step.token, eos):
        _violation(hole, engine, f"returned token {step.token} "
                   f"({hole.token_bytes[step.token]!r}), which the constraint does not "
                   "allow here" if step.token < len(hole.token_bytes) else
                   f"returned token {step.token}, which the model does not have")
    hole.push(step.token, step.logprob if step.logprob is not None else 0.0)


def _end(hole: HoleRun, step: Step, eos: np.ndarray) -> float:
    """End the value here; returns the end's log-probability from the reported raw top
    tokens that are not content tokens (the chosen token's own if none is reported)."""
    leaving = [lp for token, lp in step.top_logprobs if not _content(hole, token, eos)]
    if not leaving and step.logprob is not None:
        leaving = [step.logprob]
    hole.end_of_sequence()
    return float(np.logaddexp.reduce(leaving)) if leaving else 0.0


def _violation(hole: HoleRun, engine: str, what: str) -> None:
    value = hole.value().decode("utf-8", "replace")
    raise LmqConstraintError(f"hole '{hole.spec.hole}': {engine} {what} (value so far "
                             f"{value!r})", hole.span)
