"""SGLang's native server as a serving engine (``sglang:http://HOST:PORT``).

Facts this relies on, from SGLang 0.5.23's sources (``/tmp/serving-research/FINDINGS.md``,
section C; C1 the request, C2 the answer, C3 the other endpoints; not run: SGLang needs a
GPU):

* ``POST /generate`` takes ``input_ids`` (not re-tokenized), or a list of such lists (a
  batch, answered by a list in order) (C1); ``sampling_params`` REJECTS unknown keys (a
  400), the request's other keys are ignored when unknown (C1);
* ``sampling_params``: ``max_new_tokens`` (default 128; 0 allowed), ``min_new_tokens``,
  ``temperature`` (below 1e-6 greedy), ``top_p``, ``top_k`` (-1: all), ``min_p``, the
  penalties, ``stop`` with ``no_stop_trim`` (the phrase kept in the text), at most one of
  ``regex`` / ``ebnf`` (the server-wide grammar backend, xgrammar by default: the same
  syntax as vLLM's), ``sampling_seed`` (honoured only with
  ``--enable-deterministic-inference``) (C1);
* the answer is ``{text, output_ids, meta_info}``; ``output_ids`` hold the stop token
  (the end-of-sequence token, or the last token where the grammar ended) and a stop
  phrase's tokens (only the text is trimmed); ``meta_info`` has ``finish_reason``
  (``{"type": "stop", "matched": token id | phrase}``, ``{"type": "length"}``,
  ``{"type": "abort", "message"}``), ``prompt_tokens`` and ``cached_tokens`` (C2);
* ``return_logprob`` with ``top_logprobs_num`` adds ``output_token_logprobs`` (a
  ``[logprob, token id, text]`` triple per token) and ``output_top_logprobs`` (a list of
  triples per token); these are taken after the grammar mask and the penalties
  (``min_new_tokens`` among them) and divided by the temperature unless the batch is
  greedy (C2). ``logprob_start_len = P`` adds ``input_token_logprobs`` and
  ``input_top_logprobs`` aligned with ``input_ids[P:]``, whose first entry has no value:
  so the positions from ``P`` on are read with ``logprob_start_len = P - 1``. They are a
  raw log-softmax, and the prefix cache is still read up to the start (C1, C2). The
  answers are written by orjson, which sends a non-finite float as null: a null past
  the first entry is -inf;
* ``GET /model_info`` (``/get_model_info`` before) gives ``model_path``,
  ``served_model_name``, ``is_generation``; ``GET /v1/models`` the context
  (``max_model_len``); ``GET /server_info`` (``/get_server_info`` before) the server's
  arguments (``context_length``, ``max_running_requests``) and ``internal_states`` with
  ``effective_max_running_requests_per_dp``; ``POST /tokenize {prompt,
  add_special_tokens}`` answers ``{tokens}`` (C3).

So a generation is one non-streaming request, and where its log-probabilities are not the
model's raw ones (a constraint, a temperature, a ban on ending; see :func:`verifies`) a
verification request sends the prompt plus the generated tokens with ``max_new_tokens: 0``
and reads the raw values at the generated positions (:func:`verify_request`). A
continuation is scored the same way, every continuation of one prompt in one batched
request (:func:`score_request`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmq.errors import LmqModelError
from lmq.runtime.backends.served import (
    Consume,
    Dialect,
    Features,
    Generation,
    Job,
    ServerInfo,
    Step,
)
from lmq.runtime.backends.served_http import Client, ServerError
from lmq.runtime.backends.served_vllm import (
    RawPosition,
    add_usage,
    constraint,
    deliver,
    fitted,
    value,
    with_raw,
)

GENERATE = "/generate"
DEFAULT_INFLIGHT = 64  # where the server does not say how many requests it runs at once
MAX_INFLIGHT = 256  # lmq's default cap, whatever the server runs (inflight=N overrides)
TOP = 1  # raw top tokens read at each generated position
_NEUTRAL = {"min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0}


class SGLang(Dialect):
    engine = "SGLang"
    features = Features(raw_top=True, streaming=False, sampling_with_constraint=True,
                        score=True)

    def __init__(self, model: str | None = None) -> None:
        super().__init__(model)
        self.context_length: int | None = None  # known after probe

    def probe(self, client: Client) -> ServerInfo:
        info = _get_either(client, "/model_info", "/get_model_info")
        check_model_info(info, self.model, client.url)
        served = str(info.get("served_model_name") or info["model_path"])
        models = client.get("/v1/models")
        server = _get_either(client, "/server_info", "/get_server_info") or {}
        self.context_length = context_length(models, server, client.url)
        return ServerInfo(model=served, context_length=self.context_length,
                          vocab_size=None, slots=slots(server),
                          model_path=info.get("model_path"),
                          extra={"version": server.get("version")})

    def tokenize(self, client: Client, text: str) -> list[int]:
        answer = client.post("/tokenize", {"prompt": text, "add_special_tokens": False})
        return [int(t) for t in answer["tokens"]]

    def generate(self, client: Client, job: Job, consume: Consume) -> Generation:
        verify = verifies(job)
        job = fitted(job, self.context_length, verify, self.engine)
        path, body = request(job)
        answer = one_answer(client.post(path, body))
        out = steps(answer, raw=not verify)
        generation = Generation(finish(answer), *usage(answer))
        if verify and out:
            tokens = [s.token for s in out]
            path, body = verify_request(job.prompt, tokens)
            checked = one_answer(client.post(path, body))
            out = with_raw(out, parse_top(checked, tokens))
            add_usage(generation, usage(checked))
        return deliver(out, consume, generation)

    def score(self, client: Client, prompt: Sequence[int],
              continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        if not any(continuations):
            return [[] for _ in continuations]
        path, body = score_request(prompt, continuations)
        return parse_scores(client.post(path, body), continuations)


# -- requests ---------------------------------------------------------------------------


def request(job: Job) -> tuple[str, dict[str, Any]]:
    """The ``/generate`` path and body of ``job`` (token ids in and out)."""
    sampling: dict[str, Any] = {
        "max_new_tokens": job.max_tokens, "temperature": job.temperature,
        "top_p": job.top_p if job.top_p is not None else 1.0, "top_k": job.top_k or -1,
        **_NEUTRAL}
    if not job.allow_end:
        sampling["min_new_tokens"] = job.max_tokens
    if job.stops:
        sampling["stop"] = list(job.stops)
        sampling["no_stop_trim"] = True
    if job.constraint is not None:
        kind, text = constraint(job.constraint, job.state)
        sampling["regex" if kind == "regex" else "ebnf"] = text
    if job.seed is not None:
        sampling["sampling_seed"] = job.seed
    return GENERATE, {"input_ids": list(job.prompt), "sampling_params": sampling,
                      "return_logprob": True, "top_logprobs_num": TOP}


def verify_request(prompt: Sequence[int], tokens: Sequence[int],
                   ) -> tuple[str, dict[str, Any]]:
    """The request reading the raw log-probabilities (the token's and the top
    :data:`TOP`) at each of ``tokens`` generated after ``prompt``: the whole sequence as
    the input, nothing generated, input log-probabilities from the last prompt token on
    (module docstring)."""
    return GENERATE, {"input_ids": [*prompt, *tokens],
                      "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
                      "return_logprob": True, "logprob_start_len": _start(prompt),
                      "top_logprobs_num": TOP}


def score_request(prompt: Sequence[int], continuations: Sequence[Sequence[int]],
                  ) -> tuple[str, dict[str, Any]]:
    """One batched request scoring every non-empty continuation: each
    ``prompt + continuation`` as an input, nothing generated, input log-probabilities
    from the last prompt token on."""
    return GENERATE, {"input_ids": [[*prompt, *c] for c in continuations if c],
                      "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
                      "return_logprob": True, "logprob_start_len": _start(prompt)}


def _start(prompt: Sequence[int]) -> int:
    if not prompt:
        raise LmqModelError("SGLang cannot give the log-probability of a first token "
                            "(the prompt is empty)")
    return len(prompt) - 1


def verifies(job: Job) -> bool:
    """Whether the answer's log-probabilities are not the model's raw ones: a constraint
    (the grammar mask), a temperature (divided by it), a ban on ending (the
    ``min_new_tokens`` penalty)."""
    return job.need_top or job.constraint is not None or job.temperature > 0 \
        or not job.allow_end


# -- answers ----------------------------------------------------------------------------


def _get_either(client: Client, path: str, old: str) -> Any:
    """GET ``path``, or its older name where the server refuses it; None where it
    refuses both (a 4xx: not SGLang, or not this version)."""
    for attempt in (path, old):
        try:
            return client.get(attempt)
        except ServerError as error:
            if error.status is None or not 400 <= error.status < 500:
                raise
    return None


def check_model_info(info: Any, wanted: str | None, url: str) -> None:
    if not isinstance(info, dict) or "model_path" not in info or "is_generation" not in info:
        raise LmqModelError(f"{url} does not look like SGLang (no model_path and "
                            "is_generation in /model_info)",
                            hint="check the engine in the spec: vllm:, sglang: or "
                            "llama-server:")
    if not info["is_generation"]:
        raise LmqModelError(f"SGLang at {url} serves a model that does not generate "
                            f"('{info['model_path']}')")
    names = {info.get("served_model_name"), info["model_path"]}
    if wanted is not None and wanted not in names:
        raise LmqModelError(f"SGLang at {url} does not serve '{wanted}'",
                            hint=f"it serves '{info.get('served_model_name')}'")


def context_length(models: Any, server: dict[str, Any], url: str) -> int:
    data = models.get("data") if isinstance(models, dict) else None
    for found in ((data or [{}])[0].get("max_model_len"), server.get("context_length")):
        if isinstance(found, int) and found > 0:
            return found
    raise LmqModelError(f"SGLang at {url} reports no context length (/v1/models "
                        "max_model_len, /server_info context_length)")


def slots(server: dict[str, Any]) -> int:
    """Requests the server runs at once (its schedulers' sum), capped at
    :data:`MAX_INFLIGHT`; :data:`DEFAULT_INFLIGHT` where it does not say."""
    states = server.get("internal_states") or []
    per_dp = [s.get("effective_max_running_requests_per_dp") for s in states
              if isinstance(s, dict)]
    counts = [n for n in per_dp if isinstance(n, int) and n > 0]
    total = sum(counts) if counts else server.get("max_running_requests")
    if not isinstance(total, int) or total < 1:
        return DEFAULT_INFLIGHT
    return min(total, MAX_INFLIGHT)


def one_answer(answer: Any) -> dict[str, Any]:
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if not isinstance(answer, dict) or not isinstance(answer.get("meta_info"), dict):
        raise ServerError(f"SGLang answered without meta_info: {str(answer)[:200]}")
    return answer


def steps(answer: dict[str, Any], raw: bool = True) -> list[Step]:
    """The generated tokens, with their log-probabilities and top tokens where those are
    the model's raw ones (``raw``: see :func:`verifies`)."""
    tokens = [int(t) for t in answer.get("output_ids") or []]
    if not raw:
        return [Step(token) for token in tokens]
    meta = answer["meta_info"]
    chosen = meta.get("output_token_logprobs") or []
    tops = meta.get("output_top_logprobs") or []
    out = []
    for i, token in enumerate(tokens):
        logprob = value(chosen[i][0]) if i < len(chosen) and chosen[i] else None
        ranked = _triples(tops[i] if i < len(tops) else None)
        out.append(Step(token, logprob, ranked[0][0] if ranked else None, ranked))
    return out


def finish(answer: dict[str, Any]) -> str:
    reason = answer["meta_info"].get("finish_reason") or {}
    kind = reason.get("type") if isinstance(reason, dict) else None
    if kind == "length":
        return "length"
    if kind == "stop":
        return "stop" if isinstance(reason.get("matched"), str) else "eos"
    message = reason.get("message") if isinstance(reason, dict) else reason
    raise ServerError(f"SGLang ended the request: {kind or 'no finish reason'}"
                      + (f" ({message})" if message else ""))


def usage(answer: dict[str, Any]) -> tuple[int | None, int | None]:
    """``(computed, cached)`` prompt tokens."""
    meta = answer["meta_info"]
    prompt, cached = meta.get("prompt_tokens"), meta.get("cached_tokens")
    if prompt is None or cached is None:
        return None, None
    return int(prompt) - int(cached), int(cached)


def parse_top(answer: dict[str, Any], tokens: Sequence[int]) -> list[RawPosition]:
    """The raw log-probabilities of a :func:`verify_request` answer at each of ``tokens``
    (entries 1 .. of its input log-probabilities; entry 0 is the last prompt token's)."""
    return _input_positions(answer, tokens, with_top=True)


def parse_scores(answer: Any, continuations: Sequence[Sequence[int]]) -> list[list[float]]:
    """Each continuation's raw token log-probabilities from a :func:`score_request`
    answer (one answer per non-empty continuation, in order)."""
    answers = answer if isinstance(answer, list) else [answer]
    scored = [c for c in continuations if c]
    if len(answers) != len(scored):
        raise ServerError(f"SGLang answered {len(answers)} results for {len(scored)} "
                          "scored continuations")
    it = iter(answers)
    return [[lp for lp, _ in _input_positions(one_answer(next(it)), c, with_top=False)]
            if c else [] for c in continuations]


def _input_positions(answer: dict[str, Any], tokens: Sequence[int],
                     with_top: bool) -> list[RawPosition]:
    meta = answer["meta_info"]
    entries = meta.get("input_token_logprobs")
    tops = meta.get("input_top_logprobs") if with_top else None
    if not isinstance(entries, list) or len(entries) != len(tokens) + 1 or \
            (with_top and (not isinstance(tops, list) or len(tops) != len(entries))):
        raise ServerError("SGLang's answer has no input log-probabilities for the "
                          f"{len(tokens)} tokens asked")
    out = []
    for i, token in enumerate(tokens, start=1):
        logprob, at, *_ = entries[i]
        if int(at) != token:
            raise ServerError(f"SGLang's input log-probabilities are for token {at} where "
                              f"lmq sent {token}")
        out.append((value(logprob), _triples(tops[i]) if tops is not None else ()))
    return out


def _triples(entry: Any) -> tuple[tuple[int, float], ...]:
    """``[[logprob, token id, text], …]`` as ``((token, logprob), …)``, best first."""
    pairs = [(int(t[1]), value(t[0])) for t in entry or [] if t]
    return tuple(sorted(pairs, key=lambda pair: -pair[1])[:TOP])
