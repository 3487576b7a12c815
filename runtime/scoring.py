"""Scoring continuations of a program's prompt: the runtime's public API for the stdlib.

A stdlib building block that compares texts by their probability (``posix``'s response
matrix, label scores) needs what a hole would see: the tokens the runtime feeds before a
program's first hole, on the model a run would use, and exact log-probabilities of
continuations after them. :func:`prompt_ids` rebuilds that prompt with the runtime's own
pieces (interpreter, chat format, context), so a continuation scored here gets exactly the
log-probability it would get as that hole's value; :func:`score_after` scores many
continuations of many prompts with one forward pass for the prompts and one batched
scoring pass per prompt, under the engine's lock (a stdlib function running inside a
program takes it again: it is re-entrant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmq.runtime.backends.base import ModelView
from lmq.runtime.decoding.context import Counters, RowContext, forward_logits
from lmq.runtime.engine import Engine, shared_engine
from lmq.runtime.interpreter.budget import Budget


def model_view(model: Any = None, engine: Engine | None = None) -> ModelView:
    """The view a run would decode ``model`` on: a specialist, alias, name or spec
    resolved like a run does (``None``: ``LMQ_MODEL``, the configuration, ``smollm2``);
    a backend object or view as it is."""
    from lmq.config import default_model_name, load_config
    from lmq.runtime.specialists import ModelResolver

    config = load_config()
    default = model if model is not None else default_model_name(config)
    return ModelResolver(config, default, engine or shared_engine())()


def prompt_ids(source: str, params: Mapping[str, Any], model: Any = None,
               tools: Mapping[str, Any] | None = None,
               engine: Engine | None = None) -> tuple[ModelView, list[int]]:
    """``(view, ids)``: the tokens the runtime feeds before the program's first hole (chat
    headers and the start token included), on the model it would decode that hole with.
    The program runs on the host's side up to that hole, within the budget of the program
    that called the stdlib function asking (:mod:`lmq.runtime.interpreter.budget`); the
    hole's inline ``from`` picks the model unless ``model`` is given."""
    from lmq.api import compile_cached
    from lmq.runtime.interpreter.program import ProgramState

    engine = engine or shared_engine()
    checked = compile_cached(source, "<stdlib>")
    state = ProgramState(checked.program, dict(params), dict(tools or {}))
    request = state.run()
    if request is None:
        raise ValueError("the program has no hole to score continuations at")
    view = model_view(model if model is not None else request.model, engine)
    context = RowContext(view, engine.runtime(view.backend), -1, 1 << 30, Counters())
    context.sync(state.context, state.role)
    if context.length == 0:
        context.start_token(context.runtime.start_token)
    return view, context.take_feed()


def encode(view: ModelView, text: str) -> list[int]:
    """The model's tokens of ``text`` (a continuation to score)."""
    return view.backend.vocabulary.encode(text)


def score_after(view: ModelView, prefixes: Sequence[Sequence[int]],
                continuations: Sequence[Sequence[Sequence[int]]],
                engine: Engine | None = None) -> list[list[list[float]]]:
    """Per-token log-probabilities of ``continuations[i][k]`` after ``prefixes[i]``: one
    forward pass for all prefixes, then one batched scoring pass per prefix (the
    continuations share the prefix's KV cache). Returns ``[i][k][j]``."""
    backend = view.backend
    with (engine or shared_engine()).lock:
        rows = backend.new_rows(len(prefixes))
        try:
            logits = forward_logits(backend, {row: list(ids) for row, ids in zip(rows, prefixes)})
            out = []
            for i, (row, conts) in enumerate(zip(rows, continuations)):
                Budget.check_time()  # a program's timeout stops a stdlib caller's work
                out.append(backend.score(row, [list(c) for c in conts], first_logits=logits[i]))
            return out
        finally:
            backend.release(rows)
