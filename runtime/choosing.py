"""Choosing a hole's next token under its mask: greedy for a whole batch at once, or one
row at a time for sampling, with the log-probability the model gave the token (unmasked).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from lmq.decoders import DecoderSpec
from lmq.runtime.holes import HoleRun


class MaskBank:
    """Token masks of guide states kept on the logits' device, one row each, so a step
    gathers every row's mask with one index (no host mask, no host-to-device copy) for
    the holes whose mask is only a function of their state (:meth:`HoleRun.mask_key`).
    Cleared when full."""

    def __init__(self, device: torch.device, width: int, capacity: int = 512) -> None:
        self.device, self.width, self.capacity = device, width, capacity
        self.rows = torch.zeros((0, width), dtype=torch.bool, device=device)
        self.index: dict[tuple, int] = {}
        self.hits = self.misses = 0

    def allowed(self, holes: Sequence[HoleRun]) -> torch.Tensor | None:
        """bool ``[len(holes), width]`` on the device, True where allowed; None when no
        hole masks anything."""
        keys = [hole.mask_key() for hole in holes]
        host = {i: hole.mask(self.width) for i, (hole, key) in enumerate(zip(holes, keys))
                if key is None}
        if all(key is None for key in keys) and all(m is None for m in host.values()):
            return None
        if len(self.index) + len(holes) > self.capacity:  # never while slots are held
            self.index.clear()
        if len(host) < len(holes):
            slots = [0 if key is None else self._slot(key, hole)
                     for key, hole in zip(keys, holes)]
            allowed = self.rows[torch.tensor(slots, device=self.device)]
        else:
            allowed = torch.ones((len(holes), self.width), dtype=torch.bool,
                                 device=self.device)
        for i, mask in host.items():
            allowed[i] = True if mask is None else torch.from_numpy(mask).to(self.device)
        return allowed

    def _slot(self, key: tuple, hole: HoleRun) -> int:
        slot = self.index.get(key)
        if slot is not None:
            self.hits += 1
            return slot
        self.misses += 1
        mask = torch.from_numpy(hole.mask(self.width)).to(self.device)  # type: ignore[arg-type]
        if len(self.index) >= self.rows.shape[0]:  # grow by doubling
            grown = torch.zeros((max(16, 2 * self.rows.shape[0]), self.width),
                                dtype=torch.bool, device=self.device)
            grown[:self.rows.shape[0]] = self.rows
            self.rows = grown
        slot = self.index[key] = len(self.index)
        self.rows[slot] = mask
        return slot


_BANKS: dict[tuple[str, int], MaskBank] = {}  # per device and vocabulary width


def bank_for(device: torch.device, width: int) -> MaskBank:
    """The process-wide mask bank of ``device`` and ``width`` (runs hold one lock, so one
    decoding loop uses it at a time)."""
    key = (str(device), width)
    if key not in _BANKS:
        _BANKS[key] = MaskBank(device, width)
    return _BANKS[key]


def masked(hole: HoleRun, logits: torch.Tensor) -> torch.Tensor:
    """The logits with every token the hole forbids set to -inf (the hole fails when that
    leaves nothing)."""
    allowed = bank_for(logits.device, logits.shape[-1]).allowed([hole])
    if allowed is None:
        return logits
    scores = logits.masked_fill(~allowed[0], float("-inf"))
    if not torch.isfinite(scores).any():
        hole.fail("no token is allowed")
    return scores


def greedy_batch(holes: Sequence[HoleRun],
                 logits: Sequence[torch.Tensor]) -> list[tuple[int, float] | None]:
    """The greedy ``(token, logprob)`` of each row, for rows of one model: the rows' masks
    gathered from the device's :class:`MaskBank`, one ``masked_fill`` and one ``argmax``
    instead of one of each per row. None for a row whose mask allows nothing."""
    stacked = torch.stack(list(logits))
    allowed = bank_for(stacked.device, stacked.shape[-1]).allowed(holes)
    scores = stacked if allowed is None else stacked.masked_fill(~allowed, float("-inf"))
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
