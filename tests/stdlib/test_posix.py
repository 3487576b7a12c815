"""lmq.stdlib.posix: the paper's formula by hand, its properties, the repo variant, and
the log-likelihood matrix checked against a plain forward pass."""

from __future__ import annotations

import itertools

import pytest

from lmq.stdlib.posix import posix, psi, template_variants, typo_variants

SOURCE = '"{:user}{prompt}{:assistant}[Y]" where STOPS_BEFORE(Y, "\\n")'


def test_psi_by_hand():
    matrix = [[-2.0, -6.0], [-4.0, -3.0]]
    lengths = [2, 3]
    # i=0, j=1: |A[0][1] - A[1][1]| / L_1 = 3/3; i=1, j=0: |A[1][0] - A[0][0]| / L_0 = 2/2
    assert psi(matrix, lengths) == pytest.approx((1.0 + 1.0) / 2)
    # repo variant: |A[j][i] - A[j][j]| / max_tokens: (|A[1][0]-A[1][1]| + |A[0][1]-A[0][0]|)/5
    assert psi(matrix, lengths, "repo", 5) == pytest.approx((1.0 + 4.0) / 5 / 2)
    assert psi([[-1.0]], [1]) == 0.0
    assert psi([[-1.0, -2.0], [-3.0, -4.0]], [0, 0]) == 0.0  # empty responses add nothing
    with pytest.raises(ValueError):
        psi(matrix, lengths, "other")


def test_psi_is_zero_for_equal_likelihoods_and_invariant_under_reordering():
    assert psi([[-1.5] * 3 for _ in range(3)], [2, 2, 2]) == 0.0
    matrix = [[-1.0, -5.0, -2.5], [-3.0, -2.0, -7.0], [-4.0, -1.0, -0.5]]
    lengths = [1, 2, 3]
    value = psi(matrix, lengths)
    for order in itertools.permutations(range(3)):
        permuted = [[matrix[i][k] for k in order] for i in order]
        assert psi(permuted, [lengths[k] for k in order]) == pytest.approx(value)


def test_matrix_entries_are_exact_log_likelihoods(tiny, reference_logprobs):
    from lmq.runtime.scoring import prompt_ids

    variants = template_variants("What is the capital of France?")[:3]
    out = posix(SOURCE, variants, model=tiny, max_tokens=3)
    (only,) = out["sets"]
    assert len(only["matrix"]) == 3 and out["posix"] == pytest.approx(only["psi"])
    assert all(n <= 4 for n in only["lengths"])
    for i, k in [(0, 0), (1, 2), (2, 1)]:
        _, prefix = prompt_ids(SOURCE, {"prompt": variants[i]}, tiny)
        expected = sum(reference_logprobs(tiny, prefix, tiny.vocabulary.encode(only["responses"][k])))
        assert only["matrix"][i][k] == pytest.approx(expected, abs=1e-3)


def test_identical_prompts_and_given_responses(tiny):
    same = posix(SOURCE, ["Say hi."] * 3, model=tiny, max_tokens=3)
    assert same["posix"] == pytest.approx(0.0, abs=1e-5)
    sets = [["Say hi.", "Say hello."], ["Count to two.", "Count to 2."]]
    given = posix(SOURCE, sets, responses=[[" hi", " hello"], [" 1 2", " one two"]],
                  model=tiny)
    assert [s["responses"] for s in given["sets"]] == [[" hi", " hello"], [" 1 2", " one two"]]
    assert given["posix"] == pytest.approx(sum(s["psi"] for s in given["sets"]) / 2)
    with pytest.raises(ValueError):
        posix(SOURCE, sets, responses=[[" hi"]], model=tiny)


def test_variants_as_parameter_dicts(tiny):
    source = '"{:user}{a} {b}{:assistant}[Y]" where len(TOKENS(Y)) < 3'
    out = posix(source, [{"a": "Hi", "b": "there"}, {"a": "Hello", "b": "there"}], model=tiny)
    assert len(out["sets"][0]["responses"]) == 2
    with pytest.raises(ValueError):
        posix(source, ["just a string"], model=tiny)


def test_variant_generators_are_deterministic():
    a = typo_variants("What is the capital of France?", n=4, seed=3)
    assert a == typo_variants("What is the capital of France?", n=4, seed=3)
    assert a[0] == "What is the capital of France?" and len(a) == 4
    assert all(sorted(v) == sorted(a[0]) and v != a[0] for v in a[1:])
    assert template_variants("Why?") == ["Question: Why?\nAnswer:", "Q: Why?\nA:",
                                         "Why?\nThe answer is", "Why?"]
