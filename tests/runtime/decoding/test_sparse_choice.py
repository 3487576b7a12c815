"""The CPU's sparse greedy choice (lmq.runtime.decoding.choosing.greedy_batch gathering the logits
of the few allowed tokens) allows exactly what the dense masks allow and picks the same
tokens with the same log-probabilities."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmq
from lmq import regular as rg
from lmq.constraints import HoleSpec
from lmq.decoders import DecoderSpec
from lmq.errors import LmqConstraintError
from lmq.runtime.decoding import choosing
from lmq.runtime.decoding.holes import HoleRun
from lmq.runtime.engine import shared_engine

from .test_mask_bank import PROGRAMS

SPECS = [
    HoleSpec("D", rg.Regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")),
    HoleSpec("C", rg.OneOf((" red", " green", " blue", " light blue"))),
    HoleSpec("N", rg.Regex(rg.INT_PATTERN), max_tokens=4),
    HoleSpec("N", rg.Regex(rg.INT_PATTERN), min_tokens=3, stops_before=(".",)),
    HoleSpec("S", rg.Regex(r"[a-z ]{0,40}"), excluded_counts=frozenset({2, 3})),
]


@pytest.fixture(scope="module")
def runtime():
    return shared_engine().runtime(shared_engine().backend("tiny-random"))


@contextlib.contextmanager
def sparse_max(limit: int):
    """``choosing.SPARSE_MAX`` set to ``limit`` (-1: every row dense) for a block (Hypothesis
    tests cannot take the function-scoped ``monkeypatch``)."""
    saved, choosing.SPARSE_MAX = choosing.SPARSE_MAX, limit
    try:
        yield
    finally:
        choosing.SPARSE_MAX = saved


def walk(runtime, spec: HoleSpec, budget: int, rnd: random.Random) -> HoleRun:
    """A hole some random allowed tokens into its value (stopping before it ends)."""
    width = len(runtime.text_bytes)
    run = HoleRun(spec, runtime.guide(spec.generation()), runtime.text_bytes,
                  runtime.eos_ids, budget)
    for _ in range(rnd.randrange(budget)):
        mask = run.mask(width)
        mask[runtime.eos_ids] = False
        choices = np.flatnonzero(mask)
        if not len(choices):
            break
        run.push(int(rnd.choice(choices)), 0.0)
        if run.ending is not None:
            return walk(runtime, spec, budget, rnd)  # try again, shorter
    return run


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SPECS))), st.integers(2, 12), st.randoms(use_true_random=False))
def test_sparse_ids_equal_the_dense_mask(runtime, case, budget, rnd):
    run = walk(runtime, SPECS[case], budget, rnd)
    mask = run.mask(len(runtime.text_bytes))
    ids = run.allowed_ids(10 ** 6)
    assert ids is not None and ids.tolist() == np.flatnonzero(mask).tolist()
    assert run.allowed_ids(len(run.guide.allowed(run.state)) - 1) is None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(0, 2 ** 31))
def test_sparse_and_dense_pick_the_same_tokens(runtime, rnd, seed):
    holes = [walk(runtime, spec, 8, rnd) for spec in SPECS * 2]
    generator = torch.Generator().manual_seed(seed)
    logits = list(torch.randn(len(holes), len(runtime.text_bytes), generator=generator))
    logits[0][:] = 0.0  # ties: the lowest allowed id wins either way
    sparse = choosing.greedy_batch(holes, logits, runtime.bank(torch.device("cpu")))
    with sparse_max(-1):
        dense = choosing.greedy_batch(holes, logits, runtime.bank(torch.device("cpu")))
    assert [p and p[0] for p in sparse] == [p and p[0] for p in dense]
    assert [p and p[1] for p in sparse] == pytest.approx([p and p[1] for p in dense])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(0, 2 ** 31),
       st.sampled_from([DecoderSpec("sample"), DecoderSpec("sample", temperature=0.5, top_k=3),
                        DecoderSpec("sample", top_p=0.8), DecoderSpec("argmax")]))
def test_sparse_and_dense_sampling_draw_the_same_tokens(runtime, rnd, seed, spec):
    holes = [walk(runtime, spec_, 12, rnd) for spec_ in SPECS]
    logits = torch.randn(len(holes), len(runtime.text_bytes),
                         generator=torch.Generator().manual_seed(seed))

    def picks(limit):
        with sparse_max(limit):
            return [pick(hole, row, torch.Generator().manual_seed(seed + i))
                    for i, (hole, row) in enumerate(zip(holes, logits))]

    def pick(hole, row, rng):
        try:
            return choosing.pick_token(hole, row, spec, rng, runtime.bank(row.device))
        except LmqConstraintError:  # nothing allowed (the budget is too small for a date)
            return None, 0.0

    sparse, dense = picks(10 ** 6), picks(-1)
    assert [p[0] for p in sparse] == [p[0] for p in dense]
    assert [p[1] for p in sparse] == pytest.approx([p[1] for p in dense])


def test_a_row_with_nothing_allowed_is_none(runtime):
    def run(tree, budget):
        return HoleRun(HoleSpec("X", tree), runtime.guide(tree), runtime.text_bytes,
                       runtime.eos_ids, budget)

    stuck, free = run(rg.Regex("[0-9]{30}"), 1), run(SPECS[1].regular, 5)  # 30 digits, 1 token
    assert stuck.allowed_ids(10).size == 0
    zeros = torch.zeros(len(runtime.text_bytes))
    picks = choosing.greedy_batch([stuck, free], [zeros, zeros], runtime.bank(zeros.device))
    assert picks[0] is None and picks[1] is not None


@pytest.mark.parametrize("decoder", ["argmax", "sample(n=2, seed=5)"])
@pytest.mark.parametrize("limit", [-1, 10 ** 6])
def test_programs_decode_alike_sparse_or_dense(monkeypatch, limit, decoder):
    inputs = [{"x": i} for i in range(3)]

    def run():
        return [lmq.query('"{x} ' + p[1:], model="tiny-random", decoder=decoder).batch(inputs)
                for p in PROGRAMS]

    def values(results):
        return [[r.variables for r in (x if isinstance(x, list) else [x])] for x in results]

    default = run()
    monkeypatch.setattr(choosing, "SPARSE_MAX", limit)
    for program, a, b in zip(PROGRAMS, default, run()):
        assert values(a) == values(b), program
