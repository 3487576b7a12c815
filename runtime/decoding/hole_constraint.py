"""A hole's constraint beyond the per-token mask.

The decoding loop (:mod:`lmq.runtime.decoding.loop`) masks logits with the hole's guide at every
step; the constraint also acts where no logits are involved: opening the hole under it
(token budget, token healing, guide), appending the tokens it leaves no choice about
without sampling, checking the finished value against the hole's predicates, and weighing
the values of a distribution hole (scored as whole continuations, not token by token).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from lmq.errors import LmqConstraintError, LmqError, Source
from lmq.runtime.decoding.context import Counters, RowContext
from lmq.runtime.decoding.healing import heal
from lmq.runtime.decoding.holes import HoleRun
from lmq.runtime.decoding.instance import HoleRequest
from lmq.runtime.decoding.model_runtime import ModelRuntime


def open_hole(request: HoleRequest, context: RowContext, runtime: ModelRuntime,
              max_tokens: int, may_heal: bool, source: Source) -> HoleRun:
    """The hole ``request`` asks for, at the end of ``context``: at most ``max_tokens``
    (and the hole's own bound) within the room left in the context, token healing where
    ``may_heal``, its guide. A hole that can take no token ends at once."""
    spec = request.spec
    budget = min(max_tokens, context.max_len - context.length)
    if spec.max_tokens is not None:
        budget = min(budget, spec.max_tokens)
    budget = max(budget, 0)  # `len(TOKENS(X)) < 0`, a prompt already past max_len
    healed = ""
    try:
        if budget and may_heal:  # token healing (lmq.runtime.decoding.healing)
            healed = heal(context, runtime, spec, budget)
        guide = runtime.guide(spec.generation(healed))
    except LmqError as error:  # a schema or pattern known only now: name the hole
        if error.span is None:
            error.span = request.hole.span
        raise error.with_source(source) from None
    hole = HoleRun(spec, guide, runtime.text_bytes, runtime.eos_ids, budget,
                   request.hole.span, prefix=healed.encode())
    if hole.exhausted() or budget == 0:
        if not hole.can_end():
            hole.fail("no token can start the value")
        hole.end_of_sequence()
    return hole


def forces_a_token(hole: HoleRun, runtime: ModelRuntime) -> bool:
    """Whether :func:`forced` would push a token now (it may force bytes and still push
    none: a last token that could merge with what follows is held back)."""
    data, complete = hole.forced_bytes()
    text = data.decode("utf-8", errors="ignore")
    if not text or hole.ending is not None:
        return False
    ids = runtime.vocabulary.encode(text)[:hole.budget - len(hole.tokens)]
    if not ids or not hole.guide.mask(hole.state)[ids[0]]:
        return False
    return len(ids) > 1 or (complete and text.encode() == data) or \
        not _may_merge(hole, ids[0], runtime.text_bytes)


def forced(hole: HoleRun, runtime: ModelRuntime, contexts: list[RowContext],
           counters: Counters) -> Iterator[int]:
    """The tokens the constraint leaves no choice about, each appended to ``hole`` and
    ``contexts`` (the hole's main context and companions), counted in ``counters`` and then
    yielded. The forced text is tokenized canonically; its last token is held back unless
    the value is complete, since it could merge with what follows. Forced tokens get
    log-probability 0 (probability 1 under the mask)."""
    data, complete = hole.forced_bytes()
    text = data.decode("utf-8", errors="ignore")
    if not text:
        return
    ids = runtime.vocabulary.encode(text)[:hole.budget - len(hole.tokens)]
    for i, token in enumerate(ids):
        if hole.ending is not None or not hole.guide.mask(hole.state)[token]:
            return
        last = i == len(ids) - 1
        if last and not (complete and text.encode() == data) and \
                _may_merge(hole, token, runtime.text_bytes):
            return
        hole.push(token, 0.0)
        for context in contexts:
            context.push_generated(token)
        counters.generated_tokens += 1
        counters.forced_tokens += 1
        yield token


def _may_merge(hole: HoleRun, token: int, text_bytes: list[bytes]) -> bool:
    """Could an allowed longer token start with ``token``'s bytes (so that forcing
    ``token`` would cut the canonical tokenization of what follows)?"""
    allowed = hole.guide.allowed(hole.state)
    if len(allowed) > 4096:
        return True
    own = text_bytes[token]
    return any(t != token and text_bytes[t].startswith(own) for t in allowed.tolist())


def check_predicates(hole: HoleRun, text: str) -> None:
    """Raise unless ``text``, the finished value of ``hole``, passes its predicates."""
    for predicate in hole.spec.predicates:
        try:
            ok = bool(predicate.function(text, *predicate.args, **dict(predicate.kwargs)))
        except LmqError as error:  # the program's sandbox reporting the predicate's failure
            raise LmqConstraintError(f"predicate '{predicate.name}' failed: {error.message}",
                                     hole.span) from None
        except Exception as error:  # noqa: BLE001 - a host predicate may raise anything
            raise LmqConstraintError(f"predicate '{predicate.name}' raised "
                                     f"{type(error).__name__}: {error}") from None
        if not ok:
            raise LmqConstraintError(f"hole '{hole.spec.hole}' value {text!r} fails "
                                     f"predicate '{predicate.name}'", hole.span)


def weigh(values: Sequence[str], scores: Sequence[Sequence[float]],
          ) -> tuple[dict[str, float], int]:
    """A distribution hole's values (its constraint: the value is one of them), weighed by
    the log-probabilities ``scores`` of their tokens as continuations: each value's
    probability among them, and the index of the likeliest."""
    totals = [sum(lps) for lps in scores]
    top = max(totals)
    weights = [math.exp(t - top) for t in totals]
    norm = sum(weights)
    probabilities = {value: w / norm for value, w in zip(values, weights)}
    return probabilities, max(range(len(values)), key=lambda i: totals[i])
