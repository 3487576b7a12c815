"""The sampler (lmq.runtime.decoding.choosing.sample): draws follow the distribution, tokens of
probability 0 are never drawn, and top_k / top_p keep exactly the tokens they should."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmq.decoders import DecoderSpec
from lmq.runtime.decoding.choosing import draw, nucleus, sample


def draws(probs, n: int = 20_000, seed: int = 0) -> Counter:
    rng = torch.Generator().manual_seed(seed)
    return Counter(draw(torch.tensor(probs), rng) for _ in range(n))


def test_draws_follow_the_distribution():
    probs = [0.5, 0.0, 0.2, 0.3, 0.0]
    counts = draws(probs)
    for token, p in enumerate(probs):
        assert abs(counts[token] / 20_000 - p) < 0.015, (token, counts)
    assert counts[1] == counts[4] == 0


def test_zero_probabilities_are_never_drawn_and_totals_need_not_be_one():
    assert set(draws([0.0, 0.0, 0.7], n=2_000)) == {2}
    assert set(draws([0.0, 0.35, 0.0, 0.35, 0.0], n=2_000)) == {1, 3}


def full_sort_nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The reference: sort the whole vocabulary."""
    ordered, order = torch.sort(probs, descending=True)
    ordered[torch.cumsum(ordered, -1) - ordered > top_p] = 0.0
    return torch.zeros_like(probs).scatter_(0, order, ordered)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6000), st.floats(0.01, 0.999), st.floats(0.01, 20.0),
       st.integers(0, 2 ** 31))
def test_nucleus_equals_sorting_the_whole_vocabulary(size, top_p, sharpness, seed):
    # sharpness near 0 gives flat distributions, whose nucleus is wider than the first top-k
    logits = torch.randn(size, generator=torch.Generator().manual_seed(seed)) * sharpness
    probs = torch.softmax(logits, -1)
    assert torch.equal(nucleus(probs, top_p), full_sort_nucleus(probs, top_p))


@pytest.mark.parametrize("decoder, allowed", [
    (DecoderSpec("sample", top_k=2), {0, 3}),
    (DecoderSpec("sample", top_p=0.6), {0, 3}),  # 0.45 + 0.35 passes 0.6 at the second
    (DecoderSpec("sample", top_p=0.3), {0}),
    (DecoderSpec("sample", temperature=0.01), {0}),
])
def test_top_k_top_p_and_temperature_keep_the_right_tokens(decoder, allowed):
    scores = torch.log(torch.tensor([0.45, 0.1, 0.1, 0.35]))
    scores = torch.cat([scores, torch.full((3,), float("-inf"))])  # masked tokens
    rng = torch.Generator().manual_seed(1)
    drawn = {sample(scores, decoder, rng) for _ in range(2_000)}
    assert drawn == allowed
