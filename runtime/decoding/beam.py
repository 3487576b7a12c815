"""Beam search over the whole program (LANGUAGE.md section 5).

Each instance keeps up to ``width`` live branches. Every step each branch proposes its
``width`` best allowed tokens (end-of-sequence included where the hole may end); the best
``width`` proposals per instance survive, forking the program state and the KV rows of a
branch that is chosen more than once. A branch whose program ends joins the instance's
finished pool; an instance stops when its pool is full and no live branch can still beat
it (scores only fall as tokens are added).
"""

from __future__ import annotations

import copy

import torch

from lmq.runtime.decoding.choosing import end_logprob, masked, single_threaded
from lmq.runtime.decoding.loop import Decoding, Row


def run_beam(decoding: Decoding, rows: list[Row], width: int, fail_fast: bool) -> list[Row]:
    """The finished rows of a beam search from ``rows``. Where the search raises (an error
    with ``fail_fast``, a timeout, Ctrl-C) every branch it forked is released with them:
    a row left on a backend would shift the KV columns, and so the logits, of every later
    run there."""
    branches = list(rows)
    try:
        return _search(decoding, rows, width, fail_fast, branches)
    except BaseException:
        for row in branches:
            decoding.release(row)
        raise


def _search(decoding: Decoding, rows: list[Row], width: int, fail_fast: bool,
            branches: list[Row]) -> list[Row]:
    """The search of :func:`run_beam`; every fork joins ``branches``."""
    for row in rows:
        decoding._guard(row, decoding.advance, fail_fast)
    finished = [row for row in rows if not row.active]
    live = [row for row in rows if row.active]
    while live:
        proposals: dict[int, list[tuple[float, Row, int, float]]] = {}
        logits = decoding.forward(live)
        with single_threaded(logits[0].device):
            for row, row_logits in zip(live, logits):
                for token, logprob in _proposals(decoding, row, row_logits, width):
                    proposals.setdefault(row.instance, []).append(
                        (row.score + logprob, row, token, logprob))
        live = []
        for instance, options in proposals.items():
            options.sort(key=lambda option: -option[0])
            done = [r.score for r in finished if r.instance == instance and r.error is None]
            chosen = []
            for option in options[:width]:
                if len(done) >= width and option[0] <= min(done):
                    break  # no live branch can beat the finished pool any more
                chosen.append(option)
            uses: dict[int, int] = {}
            for _, row, _, _ in chosen:
                uses[id(row)] = uses.get(id(row), 0) + 1
            for _, row, token, logprob in chosen:
                uses[id(row)] -= 1
                # fork from the untouched parent; the parent itself takes its last proposal
                branch = fork(row) if uses[id(row)] > 0 else row
                if branch is not row:
                    branches.append(branch)
                _apply(decoding, branch, token, logprob, fail_fast)
                (live if branch.active else finished).append(branch)
                if not branch.active and branch.error is None:
                    done.append(branch.score)
            picked = {id(row) for _, row, _, _ in chosen}
            for row in {id(r): r for _, r, _, _ in options}.values():
                if id(row) not in picked:
                    decoding.release(row)
        still = decoding.still_live(live, fail_fast)
        finished += [row for row in live if not row.active]
        live = still
    return _distinct(finished, width)


def _proposals(decoding: Decoding, row: Row, logits: torch.Tensor,
               width: int) -> list[tuple[int, float]]:
    assert row.hole is not None or row.request is not None
    if row.hole is None:  # a distribution: deterministic, one proposal
        return [(-1, 0.0)]
    assert row.runtime is not None
    hole, bank = row.hole, row.runtime.bank(logits.device)
    while True:  # until the hole admits every proposal (HoleRun.admits)
        scores = masked(hole, logits, bank)
        logprobs = scores - torch.logsumexp(logits, dim=-1)
        options = []
        if hole.ends_on_leaving():  # ending is one option, with the mass of every way to end
            eos = torch.from_numpy(hole.eos_ids).to(logprobs.device)
            logprobs = logprobs.index_fill(0, eos, float("-inf"))
            options.append((int(hole.eos_ids[0]), end_logprob(hole, logits, bank)))
        top = torch.topk(logprobs, min(width, int(torch.isfinite(logprobs).sum())))
        options += [(int(t), float(lp)) for lp, t in zip(top.values, top.indices)]
        proposals = sorted(options, key=lambda option: -option[1])[:width]
        if all([hole.admits(token) for token, _ in proposals]):  # each one asked
            return proposals


def _apply(decoding: Decoding, row: Row, token: int, logprob: float, fail_fast: bool) -> None:
    def action(r: Row) -> None:
        if token == -1:
            assert r.request is not None and r.request.distribution is not None
            decoding.distribution(r, r.context.last_logits, r.request.distribution)
        else:
            decoding.apply(r, token, logprob)

    decoding._guard(row, action, fail_fast)


def fork(row: Row) -> Row:
    """An independent branch of ``row``: program state, KV rows and hole cursor copied."""
    counters = row.counters.copy()

    def copies(table: dict) -> dict:
        return {key: context.fork(context.backend.fork(context.handle, 1)[0], counters)
                for key, context in table.items()}

    hole = None
    if row.hole is not None:
        hole = copy.copy(row.hole)
        hole.tokens, hole.data = list(row.hole.tokens), bytearray(row.hole.data)
        hole.boundaries, hole.logprobs = list(row.hole.boundaries), list(row.hole.logprobs)
    return Row(row.instance, row.state.fork(), counters, copies(row.contexts),
               request=row.request, hole=hole, view=row.view, runtime=row.runtime, plan=row.plan,
               companions=copies(row.companions), rng=row.rng, score=row.score)


def _distinct(rows: list[Row], width: int) -> list[Row]:
    """Per instance, the best ``width`` finished rows with distinct prompts (and errors)."""
    kept: list[Row] = []
    seen: set[tuple[int, str]] = set()
    for row in sorted(rows, key=lambda r: -r.score):
        key = (row.instance, row.state.prompt)
        if row.error is None and key in seen:
            continue
        seen.add(key)
        kept.append(row)
    counts: dict[int, int] = {}
    result = []
    for row in kept:
        counts[row.instance] = counts.get(row.instance, 0) + 1
        if counts[row.instance] <= width:
            result.append(row)
    return result
