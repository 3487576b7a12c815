"""Fixtures of the stdlib tests: the tiny-random backend and an exact reference scorer."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny():
    pytest.importorskip("torch")
    from lmq.runtime.backends.hf_models import load_backend

    return load_backend("tiny-random")


@pytest.fixture(scope="session")
def reference_logprobs():
    """``f(backend, prefix_ids, continuation_ids) -> [log p per token]`` from one plain
    forward of the model over the whole sequence (no cache, no tree attention)."""
    import torch

    def compute(backend, prefix, continuation):
        ids = torch.tensor([list(prefix) + list(continuation)])
        with torch.no_grad():
            logits = backend.model(input_ids=ids).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        start = len(prefix)
        return [float(logprobs[start + j - 1, token]) for j, token in enumerate(continuation)]

    return compute


