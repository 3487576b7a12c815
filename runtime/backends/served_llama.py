"""llama.cpp's ``llama-server`` as a serving engine (``llama-server:http://HOST:PORT``).

Facts this relies on, from the server's sources at the llama.cpp that llama-cpp-python
0.3.36 vendors, and checked against a running server by ``tests/runtime/backends/
test_served_llama.py``:

* ``/completion`` takes the prompt as token ids, a GBNF ``grammar`` (token terminals
  ``<[id]>`` included) and ``n_predict``; with ``stream`` it sends one event per token,
  with ``return_tokens`` their ids, with ``timings_per_token`` the prompt tokens it
  evaluated (``prompt_n``) and reused from its cache (``cache_n``) in every event;
  closing the connection stops the request;
* ``n_probs`` reports, per token, log-probabilities from a plain softmax of the model's
  raw logits (no grammar, temperature or other sampler applied): the generated token's
  and the top ones. So the model's own top token is known at every step: ``argmax``
  ends a hole exactly where lmq would (LANGUAGE.md section 4, "Termination");
* ``samplers: ["temperature"]`` makes constrained sampling exact (the default chain
  checks the grammar by rejection after truncating samplers);
* there are no prompt log-probabilities; a continuation is scored exactly by forcing its
  token ids with a token-terminal grammar and reading ``n_probs``;
* a token after which the request's generated text ends inside a UTF-8 character is
  held back: the stream never sends it (``tokens_predicted`` runs ahead of the tokens
  sent) and no answer carries its probabilities (``process_token`` in
  ``server-context.cpp``); a token-terminal grammar after such a token fails with a 500.
  lmq then replays the request without streaming (the same prompt, sampler and seed give
  the same tokens) and reads each such position's log-probabilities from a probe that
  forces a plain ASCII token with ``n_probs`` over the whole vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import closing
from functools import lru_cache
from typing import Any

from lmq.errors import LmqModelError
from lmq.runtime.automata.export import to_ebnf
from lmq.runtime.automata.fsm import ByteDfa
from lmq.runtime.backends.served import (
    Consume,
    Dialect,
    Features,
    Generation,
    Job,
    ServerInfo,
    Step,
)
from lmq.runtime.backends.served_http import Client

_FINISH = {"eos": "eos", "limit": "length", "word": "stop"}


class LlamaServer(Dialect):
    engine = "llama-server"
    features = Features(raw_top=True, streaming=True, sampling_with_constraint=True,
                        score=True)

    def probe(self, client: Client) -> ServerInfo:
        props = client.get("/props")
        if "default_generation_settings" not in props:
            raise LmqModelError(f"{client.url} does not look like llama-server (no "
                                "default_generation_settings in /props)")
        settings = props["default_generation_settings"]
        models = client.get("/v1/models").get("data") or [{}]
        meta = models[0].get("meta") or {}
        return ServerInfo(model=props.get("model_alias") or models[0].get("id", "model"),
                          context_length=int(settings.get("n_ctx") or meta.get("n_ctx") or 0),
                          vocab_size=meta.get("n_vocab"),
                          slots=int(props.get("total_slots") or 1),
                          model_path=props.get("model_path"))

    def tokenize(self, client: Client, text: str) -> list[int]:
        answer = client.post("/tokenize", {"content": text, "add_special": False,
                                           "parse_special": True})
        return [int(t) for t in answer["tokens"]]

    def generate(self, client: Client, job: Job, consume: Consume) -> Generation:
        generation, seen = Generation("closed"), 0
        with closing(client.stream("/completion", request(job))) as events:
            for event in events:
                timings = event.get("timings") or {}
                if "prompt_n" in timings:
                    generation.computed = int(timings["prompt_n"])
                    generation.cached = int(timings.get("cache_n", 0))
                new = steps(event)
                predicted = int(event.get("tokens_predicted") or 0)
                if predicted > seen + len(new):  # held-back tokens the stream dropped
                    break
                for step in new:
                    seen += 1
                    if not consume(step):
                        return generation
                if event.get("stop"):
                    generation.finish = _FINISH.get(event.get("stop_type", ""), "length")
                    return generation
            else:
                return generation
        self._replay(client, job, seen, predicted, consume)
        return generation

    def _replay(self, client: Client, job: Job, seen: int, predicted: int,
                consume: Consume) -> None:
        """Generate ``job``'s first ``predicted`` tokens again without streaming and
        consume those after the first ``seen``; held-back ones get probed."""
        answer = client.post("/completion", {**request(job), "stream": False,
                                              "n_predict": predicted})
        tokens = [int(t) for t in answer.get("tokens") or []]
        probs = iter(answer.get("completion_probabilities") or [])
        prompt = list(job.prompt)
        for i, (token, held) in enumerate(zip(tokens, held_back(self.token_bytes, tokens))):
            step = self._probe(client, prompt + tokens[:i], token) if held else \
                _step(next(probs))
            if step.token != token:
                raise LmqModelError("llama-server repeated a generation differently "
                                    f"(token {step.token} against {token})")
            if i >= seen and not consume(step):
                return

    def _probe(self, client: Client, prefix: list[int], token: int) -> Step:
        """``token`` at the end of ``prefix`` with its raw log-probability, read from the
        whole distribution there (forcing a plain ASCII token, whose text is complete)."""
        plain = next(i for i, data in enumerate(self.token_bytes) if data == b"a")
        answer = client.post("/completion", {
            "prompt": prefix, "n_predict": 1, "n_probs": len(self.token_bytes),
            "grammar": f"root ::= <[{plain}]>", "samplers": ["temperature"],
            "temperature": 0.0, "cache_prompt": True})
        tops = answer["completion_probabilities"][0]["top_logprobs"]
        logprob = next(float(t["logprob"]) for t in tops if int(t["id"]) == token)
        return Step(token, logprob, int(tops[0]["id"]),
                    tuple((int(t["id"]), float(t["logprob"])) for t in tops[:16]))

    def score(self, client: Client, prompt: Sequence[int],
              continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        out = []
        for continuation in continuations:
            if any(held_back(self.token_bytes, list(continuation))):
                out.append([self._probe(client, [*prompt, *continuation[:i]], token).logprob
                            or 0.0 for i, token in enumerate(continuation)])
                continue
            if not continuation:
                out.append([])
                continue
            answer = client.post("/completion", {
                "prompt": list(prompt), "n_predict": len(continuation), "n_probs": 1,
                "grammar": "root ::= " + " ".join(f"<[{t}]>" for t in continuation),
                "samplers": ["temperature"], "temperature": 0.0, "cache_prompt": True,
                "return_tokens": True})
            probs = answer.get("completion_probabilities") or []
            if [int(t) for t in answer.get("tokens", [])][:len(continuation)] != \
                    list(continuation) or len(probs) < len(continuation):
                raise LmqModelError("llama-server did not follow a scoring grammar "
                                    f"(asked for {list(continuation)}, got "
                                    f"{answer.get('tokens')})")
            out.append([float(p["logprob"]) for p in probs[:len(continuation)]])
        return out


def request(job: Job) -> dict[str, Any]:
    """The ``/completion`` body of ``job`` (streamed, token ids in and out)."""
    samplers = ["temperature"]
    body: dict[str, Any] = {
        "prompt": list(job.prompt), "n_predict": job.max_tokens, "stream": True,
        "cache_prompt": True, "return_tokens": True, "timings_per_token": True,
        "n_probs": 1, "temperature": job.temperature}
    if job.top_k:
        samplers.append("top_k")
        body["top_k"] = job.top_k
    if job.top_p is not None and job.top_p < 1.0:
        samplers.append("top_p")
        body["top_p"] = job.top_p
    body["samplers"] = samplers
    if job.seed is not None:
        body["seed"] = job.seed
    if job.slot is not None:
        body["id_slot"] = job.slot
    if not job.allow_end:
        body["ignore_eos"] = True
    if job.constraint is not None:
        body["grammar"] = grammar(job.constraint, job.state)
    return body


@lru_cache(maxsize=256)
def grammar(dfa: ByteDfa, state: int) -> str:
    """The GBNF of a constraint's DFA from ``state`` (memoised: a hole's states recur)."""
    return to_ebnf(dataclasses.replace(dfa, initial=state))


def steps(event: dict[str, Any]) -> list[Step]:
    """The tokens of one streamed event with their raw log-probabilities."""
    probs = event.get("completion_probabilities")
    if not probs:
        return [Step(int(token)) for token in event.get("tokens") or []]
    return [_step(entry) for entry in probs]


def _step(entry: dict[str, Any]) -> Step:
    tops = tuple((int(t["id"]), float(t["logprob"])) for t in entry.get("top_logprobs") or [])
    logprob = entry.get("logprob")
    return Step(int(entry["id"]), None if logprob is None else float(logprob),
                tops[0][0] if tops else None, tops)


def held_back(token_bytes: Sequence[bytes], tokens: Sequence[int]) -> list[bool]:
    """For each token, whether the text generated up to it ends inside a UTF-8 character
    as the server tests it (``validate_utf8``: a lead byte among the last four bytes
    whose character needs more bytes than follow it)."""
    data, out = b"", []
    for token in tokens:
        data += token_bytes[token] if token < len(token_bytes) else b""
        tail = data[-4:]
        cut = False
        for i in range(1, len(tail) + 1):
            byte = tail[-i]
            need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else \
                4 if byte & 0xF8 == 0xF0 else 0
            if need and i < need:
                cut = True
                break
        out.append(cut)
    return out
