"""The device mask bank (lmq.runtime.decoding.choosing.MaskBank) gives exactly the masks the holes
compute themselves, and reuses them across steps and runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lmq
from lmq.runtime.decoding import choosing
from lmq.runtime.engine import shared_engine

PROGRAMS = [
    '"Date: [D]" where REGEX(D, r"[0-9]{4}-[0-9]{2}-[0-9]{2}")',
    '"Pick:[C]" where C in [" red", " green", " blue", " light blue"]',
    '"N:[N]" where INT(N) and len(TOKENS(N)) < 4',
    '"N:[N]" where INT(N) and STOPS_BEFORE(N, ".") and len(TOKENS(N)) > 2',
    '"J:[J]" where JSON(J, {"type": "object", "properties": {"a": {"type": "integer"}}, '
    '"required": ["a"]})',
    '"Free:[F]" where len(TOKENS(F)) == 5',
    '"Say:[S]" where STOPS_AT(S, ".") and len(TOKENS(S)) < 12',
]


def host_masks(self, holes):
    """The masks as the holes compute them, stacked (the bank's reference)."""
    masks = [hole.mask(self.width) for hole in holes]
    if all(mask is None for mask in masks):
        return None
    rows = np.stack([np.ones(self.width, dtype=bool) if m is None else m for m in masks])
    return torch.from_numpy(rows).to(self.device)


@pytest.mark.parametrize("decoder", ["argmax", "sample(n=2, seed=3)", "beam(n=2)"])
def test_banked_masks_decode_exactly_like_host_masks(monkeypatch, decoder):
    inputs = [{"x": i} for i in range(3)]
    banked = [lmq.query('"{x} ' + p[1:], model="tiny-random", decoder=decoder).batch(inputs)
              for p in PROGRAMS]
    monkeypatch.setattr(choosing.MaskBank, "allowed", host_masks)
    hosted = [lmq.query('"{x} ' + p[1:], model="tiny-random", decoder=decoder).batch(inputs)
              for p in PROGRAMS]
    for program, a, b in zip(PROGRAMS, banked, hosted):
        for x, y in zip(a, b):
            xs, ys = (x, y) if isinstance(x, list) else ([x], [y])
            assert [r.variables for r in xs] == [r.variables for r in ys], program


def test_the_bank_reuses_state_masks_across_runs():
    q = lmq.query('"Date: [D]" where REGEX(D, r"[0-9]{4}-[0-9]{2}-[0-9]{2}")',
                  model="tiny-random")
    q()
    bank = shared_engine().runtime(shared_engine().backend("tiny-random")).bank(
        torch.device("cpu"))
    misses = bank.misses
    q()
    assert bank.misses == misses and bank.hits > 0  # every state's mask came from the bank


def test_a_full_bank_starts_over():
    bank = choosing.MaskBank(torch.device("cpu"), 8, capacity=2)

    class Hole:
        def __init__(self, state):
            self.state = state

        def mask_key(self):
            return ("guide", self.state, False)

        def mask(self, width):
            row = np.zeros(width, dtype=bool)
            row[self.state] = True
            return row

    for _ in range(3):
        for state in range(5):
            allowed = bank.allowed([Hole(state), Hole((state + 1) % 5)])
            assert allowed[0].nonzero().flatten().tolist() == [state]
            assert allowed[1].nonzero().flatten().tolist() == [(state + 1) % 5]
    assert len(bank.index) <= 2
