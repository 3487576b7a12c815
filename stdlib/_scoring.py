"""Shared host-side helpers of the standard library: models, prompt tokens, batched scoring.

Not importable from programs (``__all__`` is empty). The prompt a program would show the
model before its first hole is rebuilt with the runtime's own pieces (interpreter segments,
chat format, :class:`~lmq.runtime.decoding.context.RowContext`), so a continuation scored here gets
exactly the log-probability it would get as that hole's value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__: list[str] = []


def backend_for(model: Any = None) -> Any:
    """The loaded backend of ``model``: a backend object as is; a specialist, alias, name
    or spec resolved like a run does (``None``: ``LMQ_MODEL``, the configuration,
    ``smollm2``); a specialist with a system prompt gives its view of its model."""
    if model is not None and not isinstance(model, str):
        return model
    from lmq.config import default_model_name, load_config
    from lmq.decoders import DecoderSpec
    from lmq.runtime.specialists import ModelResolver

    config = load_config()
    name = model if model is not None else default_model_name(config)
    return ModelResolver(config, str(name), DecoderSpec())(None)


def model_name(model: Any = None) -> str:
    """A readable name for traces."""
    if model is None:
        from lmq.config import default_model_name

        return default_model_name()
    return model if isinstance(model, str) else str(getattr(model, "name", model))


def run_lock() -> Any:
    """The process-wide lock of decoding loops (backends are stateful); re-entrant, so a
    stdlib function called from a running program can take it again."""
    from lmq.runtime.run import _lock

    return _lock


def prompt_ids(source: str, params: Mapping[str, Any], model: Any = None,
               tools: Mapping[str, Any] | None = None) -> tuple[Any, list[int]]:
    """``(backend, ids)``: the tokens the runtime feeds before the program's first hole
    (chat headers and the start token included). The program runs on the host's side up to
    that hole; the hole's inline ``from`` picks the model unless ``model`` is given."""
    from lmq.api import compile_cached
    from lmq.runtime.decoding.context import Counters, RowContext
    from lmq.runtime.decoding.model_runtime import RUNTIMES
    from lmq.runtime.interpreter.program import ProgramState

    checked = compile_cached(source, "<stdlib>")
    state = ProgramState(checked.program, dict(params), dict(tools or {}))
    request = state.run()
    if request is None:
        raise ValueError("the program has no hole to score continuations at")
    backend = backend_for(model if model is not None else request.model)
    runtime = RUNTIMES.get(backend)
    context = RowContext(backend, -1, runtime.chat, 1 << 30, Counters())
    context.sync(state.context, state.role)
    if context.length == 0:
        context.start_token(runtime.start_token)
    return backend, context.take_feed()


def score_after(backend: Any, prefixes: Sequence[Sequence[int]],
                continuations: Sequence[Sequence[Sequence[int]]]) -> list[list[list[float]]]:
    """Per-token log-probabilities of ``continuations[i][k]`` after ``prefixes[i]``: one
    forward pass for all prefixes, then one batched scoring pass per prefix (the
    continuations share the prefix's KV cache). Returns ``[i][k][j]``."""
    with run_lock():
        rows = backend.new_rows(len(prefixes))
        try:
            logits = backend.forward({row: list(ids) for row, ids in zip(rows, prefixes)})
            return [backend.score(row, [list(c) for c in conts], first_logits=logits[i])
                    for i, (row, conts) in enumerate(zip(rows, continuations))]
        finally:
            backend.release(rows)


def normalized(logprobs: Sequence[float]) -> float:
    """Mean per-token log-probability (``-inf`` for an empty sequence)."""
    return sum(logprobs) / len(logprobs) if logprobs else -math.inf


def softmax(values: Mapping[str, float]) -> dict[str, float]:
    """Probabilities from log-scores, in the mapping's order."""
    top = max(values.values())
    weights = {k: math.exp(v - top) for k, v in values.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}

