"""Choosing a hole's next token under its mask: greedy for a whole batch at once, or one
row at a time for sampling, with the log-probability the model gave the token (unmasked).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from lmq.decoders import DecoderSpec
from lmq.runtime.holes import HoleRun


def masked(hole: HoleRun, logits: torch.Tensor) -> torch.Tensor:
    """The logits with every token the hole forbids set to -inf (the hole fails when that
    leaves nothing)."""
    mask = hole.mask(logits.shape[-1])
    if mask is None:
        return logits
    scores = logits.masked_fill(~torch.from_numpy(mask).to(logits.device), float("-inf"))
    if not torch.isfinite(scores).any():
        hole.fail("no token is allowed")
    return scores


def greedy_batch(holes: Sequence[HoleRun],
                 logits: Sequence[torch.Tensor]) -> list[tuple[int, float] | None]:
    """The greedy ``(token, logprob)`` of each row, for rows of one model: one stacked mask,
    one ``masked_fill`` and one ``argmax`` instead of one of each per row. None for a row
    whose mask allows nothing."""
    stacked = torch.stack(list(logits))
    width = stacked.shape[-1]
    masks = [hole.mask(width) for hole in holes]
    scores = stacked
    if any(mask is not None for mask in masks):
        allowed = np.stack([np.ones(width, dtype=bool) if m is None else m for m in masks])
        scores = stacked.masked_fill(~torch.from_numpy(allowed).to(stacked.device),
                                     float("-inf"))
    tokens = torch.argmax(scores, dim=-1)
    logprobs = stacked.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(stacked, -1)
    finite = torch.isfinite(scores.gather(1, tokens[:, None])[:, 0])
    return [(token, logprob) if ok else None for token, logprob, ok in
            zip(tokens.tolist(), logprobs.tolist(), finite.tolist())]


def pick_token(scores: torch.Tensor, logits: torch.Tensor, decoder: DecoderSpec,
               rng: torch.Generator | None) -> tuple[int, float]:
    """The next token from masked ``scores`` under ``decoder``, with its log-probability
    under the unmasked ``logits``."""
    token = sample(scores, decoder, rng) if decoder.name == "sample" else \
        int(torch.argmax(scores))
    return token, float(logits[token] - torch.logsumexp(logits, dim=-1))


def sample(scores: torch.Tensor, decoder: DecoderSpec, rng: torch.Generator | None) -> int:
    """A token drawn with the decoder's temperature, ``top_k`` and ``top_p``."""
    scores = scores / max(decoder.temperature, 1e-6)
    if decoder.top_k:
        kth = torch.topk(scores, min(decoder.top_k, scores.shape[-1])).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if decoder.top_p is not None and decoder.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cut = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > decoder.top_p
        sorted_probs[cut] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=rng))


def seeded_generator(seed: int | None, index: int) -> torch.Generator:
    """The random generator of sample row ``index``: ``seed + index`` (no seed: the clock)."""
    generator = torch.Generator()
    generator.manual_seed((seed if seed is not None else int(time.time_ns() % 2**31)) + index)
    return generator
