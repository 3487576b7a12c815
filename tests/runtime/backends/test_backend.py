"""TransformersBackend beyond the conformance suite (test_conformance.py): SmolLM2 itself,
slot compaction and growth, scoring shortcuts, counters, misuse and eager attention."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lmq.runtime.backends.base import Backend
from lmq.runtime.backends.hf import TransformersBackend
from lmq.runtime.backends.hf_models import load_model

PROMPTS = [
    "The history of the city of Rome begins",
    "Q: What is 2 + 2?\nA:",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "def fibonacci(n):",
]
ATOL = 1e-4
DEVICE = os.environ.get("LMQ_TEST_DEVICE", "cpu")  # e.g. cuda, for a check on a GPU machine


@pytest.fixture(scope="session")
def tiny_model():
    return load_model("tiny-random", device=DEVICE, dtype="float32")


@pytest.fixture(scope="session")
def smollm2_model():
    return load_model("smollm2", device=DEVICE, dtype="float32")


@pytest.fixture
def tiny(tiny_model):
    """A fresh backend (own rows and stats) over the shared tiny-random model."""
    model, tokenizer = tiny_model
    return TransformersBackend(model, tokenizer, name="tiny-random")


def greedy(backend, row, prompt_ids, n):
    """Feed the prompt, then append ``n`` argmax tokens one at a time; returns (tokens, logits)."""
    logits = backend.forward({row: prompt_ids})[0]
    out, all_logits = [], []
    for _ in range(n):
        all_logits.append(logits.clone())
        token = int(logits.argmax())
        out.append(token)
        logits = backend.forward({row: [token]})[0]
    return out, all_logits


def generate(backend, prompt_ids, n):
    ids = torch.tensor([prompt_ids], device=backend.device)
    with torch.inference_mode():
        out = backend.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=n)
    return out[0, len(prompt_ids):].tolist()


def full_logits(backend, ids):
    """Last-token logits of ``ids`` encoded from scratch, without any cache."""
    with torch.inference_mode():
        return backend.model(torch.tensor([ids], device=backend.device)).logits[0, -1].float()


def batched_greedy(backend, prompts, n):
    rows = backend.new_rows(len(prompts))
    logits = backend.forward(dict(zip(rows, prompts)))
    outs = [[] for _ in prompts]
    for _ in range(n):
        tokens = logits.argmax(dim=-1).tolist()
        for out, token in zip(outs, tokens):
            out.append(token)
        logits = backend.forward({row: [token] for row, token in zip(rows, tokens)})
    backend.release(rows)
    return outs


def test_backend_satisfies_the_protocol(tiny):
    assert isinstance(tiny, Backend)
    assert tiny.vocab_size == 49152
    assert 2 in tiny.vocabulary.eos_ids  # <|im_end|>
    assert tiny.vocabulary.encode("Hello world") == [19556, 905]
    assert tiny.vocabulary.decode([19556, 905]) == "Hello world"


@pytest.mark.smollm2
def test_greedy_equals_generate_smollm2(smollm2_model):
    backend = TransformersBackend(*smollm2_model, name="smollm2")
    for prompt in PROMPTS[:2]:
        ids = backend.vocabulary.encode(prompt)
        row = backend.new_rows(1)[0]
        tokens, _ = greedy(backend, row, ids, 30)
        expected = generate(backend, ids, 30)
        # generate stops after EOS; greedy decoding is identical up to there.
        assert tokens[: len(expected)] == expected
        backend.release([row])


@pytest.mark.smollm2
def test_batched_ragged_rows_equal_single_rows_smollm2(smollm2_model):
    backend = TransformersBackend(*smollm2_model, name="smollm2")
    prompts = [backend.vocabulary.encode(p) for p in PROMPTS]
    singles = []
    for ids in prompts:
        row = backend.new_rows(1)[0]
        singles.append(greedy(backend, row, ids, 30)[0])
        backend.release([row])
    assert batched_greedy(backend, prompts, 30) == singles


def test_compaction_and_growth_keep_results(tiny_model):
    """Garbage columns are compacted away and capacity grows, without changing any logits."""
    backend = TransformersBackend(*tiny_model, slots=2, columns=16, compact_min=8)
    rows = backend.new_rows(5)  # more rows than slots: storage grows
    contexts = {row: [] for row in rows}
    # One long row makes garbage for the others; rollbacks add garbage to the long row.
    steps = [{rows[0]: list(range(1000, 1040))}, {r: [20, 21] for r in rows[1:]},
             {rows[0]: [5]}, {rows[3]: list(range(2000, 2030))}]
    for step in steps:
        logits = backend.forward(step)
        for i, (row, ids) in enumerate(step.items()):
            contexts[row] += ids
            torch.testing.assert_close(logits[i], full_logits(backend, contexts[row]),
                                       atol=ATOL, rtol=0)
        backend.rollback(rows[0], 2)
        del contexts[rows[0]][-2:]
    logits = backend.forward({row: [9] for row in rows})
    for i, row in enumerate(rows):
        torch.testing.assert_close(logits[i], full_logits(backend, contexts[row] + [9]),
                                   atol=ATOL, rtol=0)
    assert backend.stats.compactions > 0


def manual_scores(backend, context, continuation):
    with torch.inference_mode():
        ids = torch.tensor([context + continuation], device=backend.device)
        logits = backend.model(ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [float(logprobs[len(context) - 1 + j, token]) for j, token in enumerate(continuation)]


def test_score_single_tokens_with_first_logits_needs_no_forward(tiny):
    row = tiny.new_rows(1)[0]
    last = tiny.forward({row: tiny.vocabulary.encode(PROMPTS[0])})[0]
    passes = tiny.stats.forward_passes
    scores = tiny.score(row, [[5], [6], []], first_logits=last)
    assert tiny.stats.forward_passes == passes
    logprobs = torch.log_softmax(last, dim=-1)
    assert scores == [[pytest.approx(float(logprobs[5]))], [pytest.approx(float(logprobs[6]))], []]


def test_score_after_rollback_and_on_a_gathered_slot(tiny):
    a, b, c = tiny.new_rows(3)
    context = tiny.vocabulary.encode(PROMPTS[3])
    tiny.forward({a: [1, 2, 3], b: context + [99, 98], c: [4]})
    tiny.rollback(b, 2)
    conts = [tiny.vocabulary.encode(" return n"), tiny.vocabulary.encode(" if n")]
    scores = tiny.score(b, conts)
    for got, cont in zip(scores, conts):
        assert got == pytest.approx(manual_scores(tiny, context, cont), abs=ATOL)


def test_stats_count_forward_passes(tiny):
    rows = tiny.new_rows(3)
    tiny.forward({rows[0]: [1, 2, 3], rows[1]: [4]})
    tiny.forward({rows[2]: [5, 6]})
    assert tiny.stats.snapshot() == {"forward_passes": 2, "tokens_fed": 6, "rows_fed": 3,
                                     "score_calls": 0, "compactions": 0}


def test_misuse_is_reported(tiny):
    row = tiny.new_rows(1)[0]
    with pytest.raises(ValueError):
        tiny.forward({row: []})
    with pytest.raises(ValueError):
        tiny.forward({row: [tiny.vocab_size]})
    with pytest.raises(ValueError):
        tiny.score(row, [[1, 2]])  # empty context and no first_logits
    tiny.release([row])
    with pytest.raises(KeyError):
        tiny.forward({row: [1]})
    assert tiny.live_rows == 0
    assert tiny.forward({}).shape == (0, tiny.vocab_size)


def test_eager_attention_gives_the_same_results(tiny):
    """Models without SDPA run with eager attention (float masks); results are unchanged."""
    from lmq.runtime.backends.hf_models import build_tiny_random

    model = build_tiny_random().to(DEVICE)
    model.set_attn_implementation("eager")
    eager = TransformersBackend(model, tiny.tokenizer)
    results = []
    for backend in (tiny, eager):
        a, b = backend.new_rows(2)
        first = backend.forward({a: [1, 2, 3, 4, 5], b: [7, 8]})
        backend.rollback(a, 2)
        second = backend.forward({a: [12], b: [13, 14]})
        results.append((first, second, backend.score(a, [[5, 6, 7], [5, 8], [20]])))
    for got, want in zip(results[1][:2], results[0][:2]):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    for got, want in zip(results[1][2], results[0][2]):
        assert got == pytest.approx(want, abs=ATOL)
