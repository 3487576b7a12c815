"""The backend conformance suite: one battery of tests every backend of the contract
(:mod:`lmq.runtime.backends.base`) passes, parametrised over :data:`SUBJECTS`.

Each subject is a backend plus two references computed without lmq's row machinery: the
engine's own greedy generation, and the last-token logits of a sequence encoded from
scratch. Against them: greedy decoding through ``forward``, the KV cache kept across
holes (text appended in pieces), multi-token forwards (forced tokens), batched rows
independent of each other, rollback, forks, scoring, the vocabulary, and whole programs
whose masks the backend's tokens respect. A new backend adds one entry to
:data:`SUBJECTS`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import lmq
from lmq.runtime.backends.base import Backend
from lmq.runtime.decoding.context import forward_logits

DEVICE = os.environ.get("LMQ_TEST_DEVICE", "cpu")  # e.g. cuda, for a check on a GPU machine
PROMPTS = [
    "The history of the city of Rome begins",
    "Q: What is 2 + 2?\nA:",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "def fibonacci(n):",
]


@dataclass
class Subject:
    """A backend under test and its references: ``greedy(ids, n)`` is the engine's own
    greedy continuation of ``ids``; ``logits(ids)`` the last-token logits of ``ids``
    encoded from scratch; ``atol`` the tolerance between the two paths."""

    backend: Backend
    greedy: Callable[[list[int], int], list[int]]
    logits: Callable[[list[int]], torch.Tensor]
    atol: float

    def encode(self, text: str) -> list[int]:
        return self.backend.vocabulary.encode(text)

    def forward(self, feeds: dict[int, list[int]]) -> torch.Tensor:
        return forward_logits(self.backend, feeds).float().cpu()

    def close(self, got: torch.Tensor, ids: list[int]) -> None:
        torch.testing.assert_close(got, self.logits(ids).float().cpu(), atol=self.atol, rtol=0)


def transformers_subject() -> Subject:
    from lmq.runtime.backends.hf import TransformersBackend
    from lmq.runtime.backends.hf_models import load_model

    model, tokenizer = load_model("tiny-random", device=DEVICE, dtype="float32")
    backend = TransformersBackend(model, tokenizer, name="tiny-random")

    def greedy(ids: list[int], n: int) -> list[int]:
        tensor = torch.tensor([ids], device=model.device)
        with torch.inference_mode():
            out = model.generate(tensor, attention_mask=torch.ones_like(tensor),
                                 do_sample=False, max_new_tokens=n, min_new_tokens=n)
        return out[0, len(ids):].tolist()

    def logits(ids: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return model(torch.tensor([ids], device=model.device)).logits[0, -1]

    return Subject(backend, greedy, logits, atol=1e-4)


def llama_subject() -> Subject:
    """llama.cpp on the tiny-random GGUF; its references come from llama-cpp-python's own
    ``Llama`` on the same file (greedy ``generate``, and a fresh evaluation for logits)."""
    pytest.importorskip("llama_cpp")
    import llama_cpp

    from lmq.runtime.backends.llama_models import load, tiny_random_gguf

    backend = load("llama:tiny-random")
    own = llama_cpp.Llama(str(tiny_random_gguf()), n_ctx=2048, n_threads=2, flash_attn=True,
                          verbose=False)

    def greedy(ids: list[int], n: int) -> list[int]:
        own.reset()
        out = []
        for token in own.generate(ids, temp=0.0, top_k=1, reset=True):
            out.append(token)
            if len(out) == n:
                return out
        return out

    def logits(ids: list[int]) -> torch.Tensor:
        own.reset()
        own.eval(ids)
        pointer = llama_cpp.llama_get_logits_ith(own.ctx, -1)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(own.n_vocab(),)).copy())

    return Subject(backend, greedy, logits, atol=5e-2)


SUBJECTS = {"transformers": transformers_subject, "llama.cpp": llama_subject}


@pytest.fixture(scope="module", params=sorted(SUBJECTS))
def subject(request):
    """One subject per backend for the module; every test releases the rows it uses."""
    return SUBJECTS[request.param]()


def greedy_rows(subject: Subject, prompts: list[list[int]], n: int) -> list[list[int]]:
    backend = subject.backend
    rows = backend.new_rows(len(prompts))
    try:
        logits = subject.forward(dict(zip(rows, prompts)))
        outs: list[list[int]] = [[] for _ in prompts]
        for _ in range(n):
            tokens = logits.argmax(dim=-1).tolist()
            for out, token in zip(outs, tokens):
                out.append(token)
            logits = subject.forward({row: [t] for row, t in zip(rows, tokens)})
        return outs
    finally:
        backend.release(rows)


# ------------------------------------------------------------------ the contract


def test_is_a_backend_with_a_vocabulary(subject):
    backend, vocabulary = subject.backend, subject.backend.vocabulary
    assert isinstance(backend, Backend)
    assert backend.context_length > 0 and vocabulary.size > 0
    assert vocabulary.eos_ids and all(0 <= i < vocabulary.size for i in vocabulary.eos_ids)
    table = vocabulary.token_bytes()
    assert len(table) <= vocabulary.size
    for text in PROMPTS + ["Ünïcödé 中文 😀\n\n\t x"]:
        ids = subject.encode(text)
        assert b"".join(table[i] for i in ids) == text.encode()
        assert vocabulary.decode(ids) == text


def test_greedy_equals_the_engines_own_greedy(subject):
    for prompt in PROMPTS[:3]:
        ids = subject.encode(prompt)
        assert greedy_rows(subject, [ids], 24)[0] == subject.greedy(ids, 24), prompt


def test_batched_rows_are_independent(subject):
    prompts = [subject.encode(p) for p in PROMPTS]
    assert len({len(p) for p in prompts}) == len(prompts)  # ragged
    singles = [greedy_rows(subject, [ids], 12)[0] for ids in prompts]
    assert greedy_rows(subject, prompts, 12) == singles


def test_the_cache_is_kept_across_holes(subject):
    """Text appended in pieces (prompt, generated tokens, more prompt) is fed once and
    gives the logits of the whole sequence encoded from scratch."""
    backend = subject.backend
    pieces = [subject.encode(p) for p in ("Q: What is 2 + 2?", "\nA: 4", "\nQ: And 3 + 3?")]
    row = backend.new_rows(1)[0]
    try:
        before = backend.stats.tokens_fed
        context: list[int] = []
        for piece in pieces:
            got = subject.forward({row: piece})[0]
            context += piece
            subject.close(got, context)
        assert backend.length(row) == len(context)
        assert backend.stats.tokens_fed - before == len(context)  # nothing fed twice
    finally:
        backend.release([row])


def test_a_multi_token_forward_equals_single_steps(subject):
    backend = subject.backend
    prompt, forced = subject.encode(PROMPTS[1]), subject.encode(" 4, and then 5")
    one, many = backend.new_rows(2)
    try:
        subject.forward({one: prompt, many: prompt})
        for token in forced:
            stepwise = subject.forward({one: [token]})[0]
        at_once = subject.forward({many: forced})[0]
        torch.testing.assert_close(at_once, stepwise, atol=subject.atol, rtol=0)
        subject.close(at_once, prompt + forced)
    finally:
        backend.release([one, many])


def test_rows_fed_in_scattered_subsets(subject):
    backend = subject.backend
    prompts = [subject.encode(p) for p in PROMPTS]
    rows = backend.new_rows(4)
    try:
        steps = [{rows[2]: prompts[2], rows[0]: prompts[0]}, {rows[3]: prompts[3]},
                 {rows[1]: prompts[1], rows[3]: [11], rows[0]: [12, 13]},
                 {rows[2]: [14, 15, 16], rows[1]: [17]}]
        contexts: dict[int, list[int]] = {row: [] for row in rows}
        for feeds in steps:
            logits = subject.forward(feeds)
            for i, (row, ids) in enumerate(feeds.items()):
                contexts[row] += ids
                subject.close(logits[i], contexts[row])
        assert [backend.length(row) for row in rows] == [len(contexts[row]) for row in rows]
    finally:
        backend.release(rows)


def test_rollback_forgets_exactly(subject):
    backend = subject.backend
    prompt = subject.encode(PROMPTS[2])
    row, other = backend.new_rows(2)
    try:
        subject.forward({row: prompt, other: prompt[:5]})
        tail = [500, 501, 502]
        original = subject.forward({row: tail})[0]
        backend.rollback(row, 3)
        assert backend.length(row) == len(prompt)
        subject.forward({other: [7]})  # other rows go on meanwhile
        torch.testing.assert_close(subject.forward({row: tail})[0], original,
                                   atol=subject.atol, rtol=0)
        backend.rollback(row, 3 + 4)  # into the prompt
        subject.close(subject.forward({row: [600, 601]})[0], prompt[:-4] + [600, 601])
    finally:
        backend.release([row, other])


def test_forks_and_selects_copy_contexts(subject):
    backend = subject.backend
    prompt, second = subject.encode(PROMPTS[2]), subject.encode(PROMPTS[1])
    parent, other = backend.new_rows(2)
    rows = [parent, other]
    try:
        subject.forward({parent: prompt, other: second})
        children = backend.fork(parent, 2)
        rows += children
        logits = subject.forward({children[0]: [100], children[1]: [200, 201]})
        subject.close(logits[0], prompt + [100])
        subject.close(logits[1], prompt + [200, 201])
        beams = backend.select([other, parent, other])
        rows += beams
        logits = subject.forward({beam: [42] for beam in beams})
        for i, context in enumerate([second, prompt, second]):
            subject.close(logits[i], context + [42])
        assert backend.length(parent) == len(prompt)  # parents are untouched
    finally:
        backend.release(rows)


def test_scores_equal_the_logits_of_each_step(subject):
    backend = subject.backend
    context = subject.encode(PROMPTS[1])
    conts = [subject.encode(c) for c in (" 4", " four", " four hundred", " 5\nQ:")] + [[17]]
    row = backend.new_rows(1)[0]
    try:
        last = subject.forward({row: context})[0]
        expected = []
        for cont in conts:
            steps = [torch.log_softmax(subject.logits(context + cont[:j]).float(), -1)[t]
                     for j, t in enumerate(cont)]
            expected.append([float(x) for x in steps])
        for first in (None, last):
            scores = backend.score(row, conts, first_logits=first)
            for got, want in zip(scores, expected):
                assert got == pytest.approx(want, abs=10 * subject.atol)
        assert backend.length(row) == len(context)  # unchanged
        subject.close(subject.forward({row: [3]})[0], context + [3])
    finally:
        backend.release([row])


# ------------------------------------------------------------------ programs on it


def test_masks_are_respected_by_whole_programs(subject):
    """Constrained holes decode on the backend; every value satisfies its constraint."""
    programs = [
        ('"Date: [D]" where REGEX(D, r"[0-9]{4}-[0-9]{2}-[0-9]{2}")',
         lambda r: re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r["D"])),
        ('"Pick:[C]" where C in [" red", " green", " blue"]',
         lambda r: r["C"] in (" red", " green", " blue")),
        ('"N: [N: int]" where len(TOKENS(N)) < 6', lambda r: isinstance(r["N"], int)),
        ('"Say:[S]" where STOPS_AT(S, ".") and len(TOKENS(S)) < 12',
         lambda r: "." not in r["S"][:-1]),
    ]
    for source, holds in programs:
        answers = lmq.query(source, model=subject.backend).batch([{}, {}])
        for answer in answers:
            assert not isinstance(answer, Exception), (source, answer)
            assert holds(answer), (source, answer.variables)


def test_a_distribution_scores_on_the_backend(subject):
    result = lmq.query('argmax\n    "Sky:[C]"\ndistribution\n    C in [" blue", " green"]\n',
                       model=subject.backend)()
    probabilities = result.distribution["C"]
    assert set(probabilities) == {" blue", " green"}
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert np.isfinite(result.score)
