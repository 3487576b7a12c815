"""Companion rows: Dynamic Logit Fusion and contrastive knowledge preference."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import lmq
from lmq.runtime.decoding import prefer
from lmq.runtime.decoding.prefer import IMPLAUSIBLE, Contrastive, contrastive_plan
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


# ------------------------------------------------------------------ contrastive combine


def expected_contrastive(main, others, weights, plausibility, skip_agreement=True):
    """The contrastive scores token by token, from probabilities (no tensors)."""
    def argmax(values):
        return max(range(len(values)), key=values.__getitem__)

    def log_softmax(values):
        top = max(values)
        total = sum(math.exp(v - top) for v in values)
        return [v - top - math.log(total) for v in values]

    logp = log_softmax(main)
    if skip_agreement and all(argmax(other) == argmax(main) for other in others):
        return logp
    logqs = [log_softmax(other) for other in others]
    best = max(math.exp(v) for v in logp)
    scores = []
    for x, lp in enumerate(logp):
        score = lp + sum(w * (lp - logq[x]) for w, logq in zip(weights, logqs))
        plausible = plausibility == 0 or math.exp(lp) >= plausibility * best * (1 - 1e-6)
        scores.append(score if plausible else score - IMPLAUSIBLE)
    return scores


def logits_of(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float64))


# p(main) and p(without the source): token 2 is unlikely under the full context but far more
# likely than without it, so unconstrained amplification picks it.
MAIN, WITHOUT = [0.60, 0.36, 0.04], [0.7099, 0.29, 0.0001]


def test_contrastive_without_plausibility_amplifies_an_implausible_token():
    combine = Contrastive((1.0,), 0.0, skip_agreement=False)
    scores, _ = combine(logits_of(MAIN), [logits_of(WITHOUT)])
    assert scores.tolist() == pytest.approx(
        [math.log(p * p / q) for p, q in zip(MAIN, WITHOUT)])
    assert int(torch.argmax(scores)) == 2


def test_plausibility_keeps_the_choice_among_plausible_tokens():
    combine = Contrastive((1.0,), 0.1, skip_agreement=False)
    scores, _ = combine(logits_of(MAIN), [logits_of(WITHOUT)])
    assert scores.tolist() == pytest.approx(
        expected_contrastive(logits_of(MAIN).tolist(), [logits_of(WITHOUT).tolist()],
                             [1.0], 0.1, skip_agreement=False))
    assert scores[2] < -IMPLAUSIBLE / 2 and int(torch.argmax(scores)) == 0
    # token 1 is plausible and amplified: its margin to token 0 shrinks
    assert scores[0] - scores[1] < math.log(MAIN[0] / MAIN[1])


def test_implausible_tokens_keep_their_order_for_a_constraint_that_forbids_the_rest():
    combine = Contrastive((1.0,), 0.1, skip_agreement=False)
    scores, _ = combine(logits_of(MAIN), [logits_of(WITHOUT)])
    allowed = torch.tensor([False, False, True])
    assert int(torch.argmax(scores.masked_fill(~allowed, float("-inf")))) == 2
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("plausibility", [0.0, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("skip_agreement", [True, False])
def test_contrastive_matches_brute_force_with_ranked_sources(seed, plausibility,
                                                             skip_agreement, monkeypatch):
    generator = torch.Generator().manual_seed(seed)
    main = torch.randn(9, generator=generator, dtype=torch.float64) * 2
    others = [main + torch.randn(9, generator=generator, dtype=torch.float64)
              for _ in range(2)]
    monkeypatch.setattr(prefer, "SKIP_AGREEMENT", skip_agreement)
    plan = contrastive_plan(["instruction", "context"], 1.5, plausibility)
    assert [c.without for c in plan.companions] == ["instruction", "context"]
    assert plan.combine.weights == pytest.approx((1.5, 0.75))  # strength * (n - i) / n
    assert plan.combine.skip_agreement == skip_agreement
    scores, _ = plan.combine(main, others)
    expected = expected_contrastive(main.tolist(), [o.tolist() for o in others],
                                    [1.5, 0.75], plausibility, skip_agreement)
    assert scores.tolist() == pytest.approx(expected, abs=1e-9)
    if plausibility == 1.0:  # only the main row's own choice stays eligible
        assert int(torch.argmax(scores)) == int(torch.argmax(main))


def test_agreeing_rows_decode_plainly_and_one_disagreeing_row_amplifies():
    # every row's top token is 0, yet amplification alone would move the choice to token 1
    main, agree = logits_of([0.5, 0.45, 0.05]), logits_of([0.7, 0.2, 0.1])
    amplified, _ = Contrastive((1.0, 0.5), 0.1, skip_agreement=False)(main, [agree, agree])
    assert int(torch.argmax(amplified)) == 1
    plain, _ = Contrastive((1.0, 0.5), 0.1)(main, [agree, agree])
    assert torch.allclose(plain, torch.log_softmax(main, -1))
    disagree = logits_of([0.3, 0.6, 0.1])  # the second source changes the choice
    scores, _ = Contrastive((1.0, 0.5), 0.1)(main, [agree, disagree])
    assert scores.tolist() == pytest.approx(expected_contrastive(
        main.tolist(), [agree.tolist(), disagree.tolist()], [1.0, 0.5], 0.1, False))


def test_zero_strength_is_the_main_rows_log_softmax():
    main, other = torch.tensor([1.0, 3.0, 0.5]), torch.tensor([0.0, -2.0, 4.0])
    scores, _ = Contrastive((0.0, 0.0), 0.5)(main, [other, other])
    assert torch.allclose(scores, torch.log_softmax(main, -1))


def test_prefer_with_full_plausibility_decodes_as_plain():
    """``plausibility=1`` leaves only the main row's top token: greedy plain decoding."""
    plain = lmq.query(PREFER.rsplit("prefer", 1)[0], model="tiny-random")()
    strong = lmq.query(PREFER.replace("parametric", "parametric with strength=4.0, "
                                      "plausibility=1.0"), model="tiny-random")()
    assert strong.variables == plain.variables
