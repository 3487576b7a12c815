"""Companion rows: Dynamic Logit Fusion and contrastive knowledge preference."""

from __future__ import annotations

import itertools

import pytest
import torch

import lmq
from lmq.runtime.run import execute
from lmq.stdlib.fusion import DlfCombiner, fuse


def brute_force(large, base, experts, alphas):
    """The paper's objective evaluated candidate by candidate (one expert at a time)."""
    def kl(a, b):
        pa = torch.softmax(a, -1)
        return float((pa * (torch.log_softmax(a, -1) - torch.log_softmax(b, -1))).sum())

    best = None
    for alpha, t in itertools.product(sorted(alphas, key=abs), range(len(experts))):
        fused = large + alpha * (experts[t] - base)
        loss = sum((kl(fused, large) - kl(e, base)) ** 2 + (kl(large, fused) - kl(base, e)) ** 2
                   for e in experts)
        if best is None or loss < best[0] - 1e-9:
            best = (loss, t, alpha)
    return best[1], best[2]


@pytest.mark.parametrize("seed", range(8))
def test_dlf_search_matches_brute_force(seed):
    generator = torch.Generator().manual_seed(seed)
    large, base = torch.randn(6, generator=generator), torch.randn(6, generator=generator)
    experts = [torch.randn(6, generator=generator) * 2 for _ in range(2)]
    alphas = [round(0.1 * i, 10) for i in range(21)]
    fused, decision = DlfCombiner(2, alphas)(large, [base, *experts])
    t, alpha = brute_force(large, base, experts, alphas)
    assert (decision["expert"], decision["alpha"]) == (t, pytest.approx(alpha))
    assert torch.allclose(fused, large + alpha * (experts[t] - base))


def test_dlf_picks_zero_when_expert_equals_base():
    large, base = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([0.3, 0.1, 0.2])
    _, decision = DlfCombiner(1, [0.0, 0.5, 1.0])(large, [base, base.clone()])
    assert decision["alpha"] == 0.0


def test_fuse_in_three_roles_runs_and_traces_weights():
    source = ('from lmq.stdlib.fusion import fuse\n'
              '"Q: name a colour.\\nA:[A]" from fuse("tiny-random", base="tiny-random", '
              'experts=[("tiny-random", "You are an expert on colours. ")]) '
              'where len(TOKENS(A)) < 5\n')
    first = lmq.query(source, model="tiny-random")()
    second = lmq.query(source, model="tiny-random")()
    assert first.variables == second.variables  # deterministic
    steps = [entry["decisions"] for entry in first.trace if "decisions" in entry]
    assert steps and all("alpha" in d for d in steps[0]["steps"])
    # the main row and both companions took part in the forward passes
    assert max(entry["rows"] for entry in first.trace if "rows" in entry) == 3


def test_fuse_needs_an_expert_and_keeps_the_roles():
    ensemble = fuse("large", base="base", experts=["e1", ("e2", "prefix")])
    assert ensemble.main == "large" and ensemble.others == ("base", "e1", ("e2", "prefix"))
    with pytest.raises(ValueError):
        fuse("large", base="base", experts=[])


PREFER = '''argmax
    "{:instruction}Assume that the Eiffel Tower stands in Rome.\\n"
    "{:context}The Eiffel Tower is a landmark of Paris.\\n"
    "Question: In which city is the Eiffel Tower?\\nAnswer:[A]" where len(TOKENS(A)) < 4
prefer
    instruction > context > parametric
'''


def test_contrastive_prefer_adds_one_row_per_ranked_source():
    result = lmq.query(PREFER, model="tiny-random")()
    assert max(entry["rows"] for entry in result.trace if "rows" in entry) == 3
    assert result.prompt.endswith("Answer:" + result.variables["A"])


def test_prefer_with_zero_strength_equals_plain_decoding():
    plain = lmq.query(PREFER.rsplit("prefer", 1)[0], model="tiny-random")()
    zero = lmq.query(PREFER.replace("parametric", 'parametric with strength=0.0'),
                     model="tiny-random")()
    assert zero.variables == plain.variables


def test_prefer_changes_decoding_with_strength():
    checked = lmq.query(PREFER.replace("parametric", "parametric with strength=4.0")).checked
    strong = execute(checked, [{}], model="tiny-random")[0]
    plain = execute(lmq.query(PREFER.rsplit("prefer", 1)[0]).checked, [{}],
                    model="tiny-random")[0]
    assert strong.score != plain.score


def test_routing_decisions_are_in_the_trace():
    source = ('from lmq.stdlib.routing import route\n'
              '"Q: {q}\\nA:[A]" from route(q, ["tiny-random"], by="lm", model="tiny-random") '
              'where len(TOKENS(A)) < 3\n')
    result = lmq.query(source, model="tiny-random")(q="hi")
    decisions = [entry["decisions"] for entry in result.trace if "decisions" in entry]
    assert decisions and decisions[0]["route"] == "tiny-random"
    assert decisions[0]["scores"] == {"tiny-random": pytest.approx(1.0)}
