"""Choosing a hole's next token under its mask: greedy for a whole batch at once, or one
row at a time for sampling, with the log-probability the model gave the token (unmasked).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from lmq.decoders import DecoderSpec
from lmq.runtime.decoding.holes import HoleRun


@contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """The torch ops of a decoding step's choice on the CPU with one intra-op thread.

    They are small ops on ``[rows, vocab]`` logits; torch splits them across its threads,
    and on a busy 2-core machine waiting for the second thread costs milliseconds (measured
    with other processes running: ``logsumexp`` over 16 × 49,152 logits 12.9 ms with 2
    threads, 1.9 ms with 1; over one row 4.7 ms against 0.12 ms). Switching costs about
    70 µs. The model's forward pass keeps the threads it was given."""
    saved = torch.get_num_threads()
    if device.type != "cpu" or saved == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


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


def masked(hole: HoleRun, logits: torch.Tensor, bank: MaskBank) -> torch.Tensor:
    """The logits with every token the hole forbids set to -inf (the hole fails when that
    leaves nothing); ``bank`` is the model's mask bank on the logits' device."""
    allowed = bank.allowed([hole])
    if allowed is None:
        return logits
    scores = torch.where(allowed[0], logits, float("-inf"))
    if not torch.isfinite(scores).any():
        hole.fail("no token is allowed")
    return scores


SPARSE_MAX = 2048
"""On the CPU, a row whose state allows at most this many tokens gathers their logits
instead of masking the whole row (``bench/bench_masks.py``, greedy choice table: 1.4x the
dense path for a date regex at 16 rows; dense masks win for states allowing most of the
vocabulary)."""


def greedy_batch(holes: Sequence[HoleRun], logits: Sequence[torch.Tensor],
                 bank: MaskBank) -> list[tuple[int, float] | None]:
    """The greedy ``(token, logprob)`` of each row, for rows of one model, None for a row
    whose mask allows nothing. On the CPU, rows with few allowed tokens take the argmax of
    those tokens' logits alone (:data:`SPARSE_MAX`); the others get their masks from the
    model's :class:`MaskBank` on the logits' device, one ``where`` and one ``argmax`` for
    all of them. Rows whose hole refuses its pick (:meth:`HoleRun.admits`) choose again."""
    picks = _greedy(holes, logits, bank)
    again = [i for i, pick in enumerate(picks) if _refused(holes[i], pick)]
    while again:
        for i, pick in zip(again, _greedy([holes[i] for i in again],
                                          [logits[i] for i in again], bank)):
            picks[i] = pick
        again = [i for i in again if _refused(holes[i], picks[i])]
    return picks


def _refused(hole: HoleRun, pick: tuple[int, float] | None) -> bool:
    return pick is not None and not hole.admits(pick[0])


def _greedy(holes: Sequence[HoleRun], logits: Sequence[torch.Tensor],
            bank: MaskBank) -> list[tuple[int, float] | None]:
    stacked = torch.stack(list(logits))
    ids = [_few_allowed(hole, stacked.device) for hole in holes]
    sparse = [i for i, row_ids in enumerate(ids) if row_ids is not None and len(row_ids)]
    dense = [i for i, row_ids in enumerate(ids) if row_ids is None]
    tokens = torch.zeros(len(holes), dtype=torch.long)
    best = torch.full((len(holes),), float("-inf"))  # stays -inf where nothing is allowed
    if sparse:
        columns = _padded([ids[i] for i in sparse])  # type: ignore[misc]
        width = stacked.shape[-1]
        flat = columns + torch.tensor(sparse)[:, None] * width  # no copy of whole rows
        values = stacked.view(-1)[flat]
        top = _argmax(values)[:, None]
        tokens[sparse], best[sparse] = columns.gather(1, top)[:, 0], values.gather(1, top)[:, 0]
    if dense:
        scores = stacked if len(dense) == len(holes) else stacked[dense]
        allowed = bank.allowed([holes[i] for i in dense])
        if allowed is not None:
            scores = torch.where(allowed, scores, float("-inf"))
        top = _argmax(scores)[:, None]
        tokens[dense], best[dense] = top[:, 0].cpu(), scores.gather(1, top)[:, 0].cpu()
    logprobs = stacked.gather(1, tokens[:, None].to(stacked.device))[:, 0] \
        - torch.logsumexp(stacked, -1)
    picks = [(token, logprob) if ok else None for token, logprob, ok in
             zip(tokens.tolist(), logprobs.tolist(), torch.isfinite(best).tolist())]
    ending = [i for i, hole in enumerate(holes) if hole.ends_on_leaving() and picks[i]]
    if ending:  # the masked choice is the model's own unless its choice leaves the language
        own = _argmax(stacked[ending]).tolist()
        for i, choice in zip(ending, own):
            token = picks[i][0]  # type: ignore[index]
            if token != choice or token in holes[i].eos_ids:
                picks[i] = (int(holes[i].eos_ids[0]), end_logprob(holes[i], logits[i], bank))
    return picks


def _few_allowed(hole: HoleRun, device: torch.device) -> np.ndarray | None:
    """The ids the hole allows where they are few (:data:`SPARSE_MAX`) and the logits are on
    the CPU; None otherwise."""
    return hole.allowed_ids(SPARSE_MAX) if device.type == "cpu" else None


def _argmax(scores: torch.Tensor) -> torch.Tensor:
    """The first maximum of each row; numpy's on the CPU (0.13 ms against torch's 1.0 ms for
    16 rows of 49k columns, measured on the 2-core build machine)."""
    if scores.device.type == "cpu" and scores.dtype == torch.float32:
        return torch.from_numpy(scores.numpy().argmax(-1))
    return scores.argmax(-1)


def _padded(rows: list) -> torch.Tensor:
    """Id arrays as one ``[len(rows), longest]`` index, each padded with its first id (a
    repeat never changes an argmax)."""
    width = max(len(row) for row in rows)
    out = np.empty((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)], out[i, len(row):] = row, row[0]
    return torch.from_numpy(out)


def pick_token(hole: HoleRun, logits: torch.Tensor, decoder: DecoderSpec,
               rng: torch.Generator | None, bank: MaskBank) -> tuple[int, float]:
    """The next token of one row under the hole's mask and ``decoder``, with its
    log-probability under the unmasked ``logits``. On the CPU, a state allowing at most
    :data:`SPARSE_MAX` tokens decides among their logits alone: the same token as masking
    the row (the cumulative sums :func:`draw` inverts are the same), in a fraction of the
    time. The hole fails when nothing is allowed; a token the hole refuses
    (:meth:`HoleRun.admits`) is chosen again without it.

    Where the value is complete (:meth:`HoleRun.ends_on_leaving`), the hole first decides
    whether it ends: greedily when the model's own choice is no content token it allows,
    sampling with the probability of those tokens (at the decoder's temperature); the end
    is end-of-sequence with :func:`end_logprob`. Otherwise it goes on among the content
    tokens alone."""
    complete = hole.ends_on_leaving()
    if complete and _leaves(hole, logits, decoder, rng, bank):
        return int(hole.eos_ids[0]), end_logprob(hole, logits, bank)
    while True:
        token, logprob = _pick(hole, logits, decoder, rng, bank, complete)
        if hole.admits(token):
            return token, logprob


def _pick(hole: HoleRun, logits: torch.Tensor, decoder: DecoderSpec,
          rng: torch.Generator | None, bank: MaskBank, complete: bool) -> tuple[int, float]:
    ids = _few_allowed(hole, logits.device)
    if ids is not None and complete:
        ids = ids[~np.isin(ids, hole.eos_ids)]
    columns = None if ids is None else torch.tensor(ids)  # a copy: ids may be read-only
    scores = masked(hole, logits, bank) if columns is None else logits[columns]
    if columns is None and complete:
        scores = scores.index_fill(0, torch.from_numpy(hole.eos_ids).to(scores.device),
                                   float("-inf"))
    if columns is not None and not torch.isfinite(scores).any():
        hole.fail("no token is allowed")
    choice = sample(scores, decoder, rng) if decoder.name == "sample" else \
        int(torch.argmax(scores))
    token = choice if columns is None else int(columns[choice])
    return token, float(logits[token] - torch.logsumexp(logits, dim=-1))


def _content(hole: HoleRun, logits: torch.Tensor, bank: MaskBank) -> torch.Tensor:
    """bool ``[vocab]``: the content tokens the hole allows (end-of-sequence excluded)."""
    allowed = bank.allowed([hole])
    mask = torch.ones_like(logits, dtype=torch.bool) if allowed is None else allowed[0].clone()
    mask[torch.from_numpy(hole.eos_ids).to(mask.device)] = False
    return mask


def _leaves(hole: HoleRun, logits: torch.Tensor, decoder: DecoderSpec,
            rng: torch.Generator | None, bank: MaskBank) -> bool:
    """Whether the model's choice leaves the hole's language here (see :func:`pick_token`)."""
    content = _content(hole, logits, bank)
    if decoder.name != "sample":
        return not bool(content[int(_argmax(logits[None])[0])])
    scaled = logits.double() / max(decoder.temperature, 1e-6)
    stay = float(torch.exp(torch.logsumexp(scaled[content], -1) - torch.logsumexp(scaled, -1)))
    return float(torch.rand((), generator=rng, dtype=torch.float64)) >= stay


def end_logprob(hole: HoleRun, logits: torch.Tensor, bank: MaskBank) -> float:
    """The log-probability that the value ends here: the unmasked mass of every token that is
    not a content token the hole allows (end-of-sequence and the tokens that leave the
    language; at least the probability of the model's own choice when that leaves)."""
    content = _content(hole, logits, bank)
    total = torch.logsumexp(logits.double(), -1)
    leave = torch.logsumexp(torch.where(content, float("-inf"), logits.double()), -1)
    return float(leave - total)


def sample(scores: torch.Tensor, decoder: DecoderSpec, rng: torch.Generator | None) -> int:
    """A token drawn with the decoder's temperature, ``top_k`` and ``top_p``."""
    scores = scores / max(decoder.temperature, 1e-6)
    if decoder.top_k:
        kth = torch.topk(scores, min(decoder.top_k, scores.shape[-1])).values[-1]
        scores = torch.where(scores < kth, float("-inf"), scores)
    probs = torch.softmax(scores, dim=-1)
    if decoder.top_p is not None and decoder.top_p < 1.0:
        probs = nucleus(probs, decoder.top_p)
    return draw(probs, rng)


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """``probs`` with every token outside the nucleus set to 0: the likeliest tokens, in
    order, until their mass before the next one passes ``top_p``. Sorts only the top 256
    (then 4,096, ...) tokens while the nucleus lies among them, not the whole vocabulary."""
    k = min(256, len(probs))
    while True:
        top, order = torch.topk(probs, k)
        cut = torch.cumsum(top, dim=-1) - top > top_p
        if cut.any() or k == len(probs):  # every token past the top k is cut too
            break
        k = min(16 * k, len(probs))
    kept = torch.zeros_like(probs)
    kept[order[~cut]] = top[~cut]
    return kept


def draw(probs: torch.Tensor, rng: torch.Generator | None) -> int:
    """A token drawn from ``probs`` (non-negative, any positive total) by inverting its
    cumulative sum at one uniform number of ``rng`` -- 30x ``torch.multinomial`` on 49k
    tokens on the CPU. Tokens of probability 0 are never drawn."""
    cdf = torch.cumsum(probs.double(), dim=-1)
    u = torch.rand((), generator=rng, dtype=torch.float64).to(cdf.device) * cdf[-1]
    return int(torch.searchsorted(cdf, u[None], right=True)[0].clamp(max=len(probs) - 1))


def seeded_generator(seed: int | None, index: int) -> torch.Generator:
    """The random generator of sample row ``index``: ``seed + index`` modulo 2**63 (no
    seed: the clock)."""
    generator = torch.Generator()
    generator.manual_seed(((seed if seed is not None else int(time.time_ns() % 2**31)) + index)
                          % 2**63)
    return generator
