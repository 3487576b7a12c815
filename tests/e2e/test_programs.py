"""Whole programs through ``lmq.query`` on the seeded tiny random model, on every backend
(transformers, and llama.cpp when llama-cpp-python is installed).

The model's text is noise, so every assertion is a model-independent property: the
constraint holds, the counts add up, the semantics of the language are respected.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

import lmq

MODEL = "tiny-random"
MODELS = ["tiny-random", pytest.param("llama:tiny-random", marks=pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"))]


@pytest.fixture(autouse=True, params=MODELS)
def backend_model(request, monkeypatch):
    """Every test of the module on each backend's build of tiny-random."""
    monkeypatch.setitem(globals(), "MODEL", request.param)
    return request.param


def run(source: str, **params):
    return lmq.query(source, model=MODEL)(**params)


def test_choice_is_one_of_the_options():
    result = run('"Pick:[C]" where C in [" red", " green", " blue sky"]')
    assert result.variables["C"] in [" red", " green", " blue sky"]
    assert result.prompt == "Pick:" + result.variables["C"]


def test_not_in_excludes_values():
    result = run('"Word:[W]" where W not in ["a", "b"] and len(TOKENS(W)) < 4')
    assert result.variables["W"] not in ("a", "b")


def test_regex_matches_fully():
    result = run(r'"Date: [D]" where REGEX(D, r"[0-9]{4}-[0-9]{2}-[0-9]{2}")')
    assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", result.variables["D"])


def test_typed_holes_convert():
    result = run('"n=[N: int] x=[X: float] b=[B: bool]"')
    assert isinstance(result.variables["N"], int)
    assert isinstance(result.variables["X"], float)
    assert isinstance(result.variables["B"], bool)


def test_int_constraint_converts_and_bounds_tokens():
    result = run('"Count:[N]" where INT(N) and len(TOKENS(N)) < 6')
    assert isinstance(result.variables["N"], int)
    assert len(result.logprobs["N"]) < 6


@pytest.mark.parametrize("op,n,check", [
    ("<", 5, lambda k: k < 5), ("<=", 5, lambda k: k <= 5), ("==", 7, lambda k: k == 7),
    (">", 3, lambda k: k > 3), (">=", 4, lambda k: k >= 4),
])
def test_token_length_bounds(op, n, check):
    result = run(f'"Text:[T]" where len(TOKENS(T)) {op} {n} and len(TOKENS(T)) < 12')
    assert check(len(result.logprobs["T"]))


def test_char_length_bound():
    result = run('"Text:[T]" where len(T) < 10 and len(TOKENS(T)) < 30')
    assert len(result.variables["T"]) < 10


def test_stops_at_keeps_phrase_and_ends_there():
    result = run('"List:[L]" where STOPS_AT(L, "e") and len(TOKENS(L)) < 40')
    value = result.variables["L"]
    assert value.count("e") <= 1
    assert "e" not in value[:-1]


def test_stops_before_cuts_phrase():
    result = run('"List:[L] end" where STOPS_BEFORE(L, "e") and len(TOKENS(L)) < 40')
    value = result.variables["L"]
    assert "e" not in value
    assert result.prompt == "List:" + value + " end"


def test_starts_and_ends_with():
    result = run('"X:[X]" where STARTS_WITH(X, " ok") and ENDS_WITH(X, ".") '
                 'and len(TOKENS(X)) < 12')
    assert result.variables["X"].startswith(" ok")
    assert result.variables["X"].endswith(".")


def test_substring_constraints():
    result = run('"X:[X]" where "ab" in X and not "zz" in X and len(TOKENS(X)) < 12')
    assert "ab" in result.variables["X"] and "zz" not in result.variables["X"]


def test_or_constraint():
    result = run('"X:[X]" where (X in ["yes", "no"] or INT(X)) and len(TOKENS(X)) < 4')
    value = result.variables["X"]
    assert value in ("yes", "no") or re.fullmatch(r"-?[0-9]+", value)


def test_loop_rebinds_hole_and_keeps_all_values():
    source = '''
for i in range(3):
    "- item {i}:[IT]\\n" where STOPS_AT(IT, "\\n") and len(TOKENS(IT)) < 5
'''
    result = run(source)
    assert len(result.values["IT"]) == 3
    assert result.variables["IT"] == result.values["IT"][-1]
    for i in range(3):
        assert f"- item {i}:" in result.prompt


def test_parameters_and_interpolation():
    result = run('"City: {city}. Answer:[A]" where A in [" yes", " no"]', city="Oslo")
    assert result.prompt.startswith("City: Oslo. Answer:")


def test_missing_parameter_is_named():
    with pytest.raises(lmq.LmqParameterError, match="city"):
        run('"City: {city}[A]" where len(TOKENS(A)) < 3')


def test_nested_query_with_return_replaces_its_text():
    source = '''
query yes_no(question):
    "{question} (answer yes or no)[A]" where A in [" yes", " no"]
    return A.strip()

"Is water wet?[R: yes_no('Is water wet?')]"
'''
    result = run(source)
    assert result.variables["R"] in ("yes", "no")
    assert result.prompt == "Is water wet?" + result.variables["R"]
    assert "A" not in result.variables


def test_nested_query_without_return_is_a_macro():
    source = '''
query detail():
    " (detail:[D])" where D in ["x", "y"]

"Start[M: detail()] end"
'''
    result = run(source)
    assert result.variables["M"] in (" (detail:x)", " (detail:y)")
    assert result.prompt == "Start" + result.variables["M"] + " end"


def test_distribution_sums_to_one():
    source = '''argmax
    "Review: fine.\\nSentiment:[S]"
distribution
    S in [" positive", " negative", " neutral"]
'''
    result = run(source)
    probs = result.distribution["S"]
    assert set(probs) == {" positive", " negative", " neutral"}
    assert abs(sum(probs.values()) - 1.0) < 1e-6
    assert result.variables["S"] == max(probs, key=probs.get)


def test_sampling_is_reproducible_with_seed():
    source = 'sample(n=3, seed=7)\n    "Text:[T]" where len(TOKENS(T)) < 6\n'
    first = [r.variables["T"] for r in run(source)]
    second = [r.variables["T"] for r in run(source)]
    assert first == second
    assert len(first) == 3


def test_beam_results_sorted_by_score_and_distinct():
    source = 'beam(n=3)\n    "Text:[T]" where len(TOKENS(T)) < 4\n'
    results = run(source)
    assert 1 <= len(results) <= 3
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert len({r.prompt for r in results}) == len(results)


def test_argmax_is_deterministic_and_counts_tokens():
    source = '"A:[A] B:[B]" where len(TOKENS(A)) < 4 and len(TOKENS(B)) < 4'
    first, second = run(source), run(source)
    assert first.variables == second.variables
    stats = first.stats
    assert stats["generated_tokens"] == len(first.logprobs["A"]) + len(first.logprobs["B"])
    assert stats["billable_tokens"] == stats["prompt_tokens"] + stats["generated_tokens"]
    assert stats["tokens_reencoded"] == 0


def test_unsatisfiable_constraint_raises_constraint_error():
    with pytest.raises(lmq.LmqConstraintError, match="X"):
        run(r'"X:[X]" where REGEX(X, r"[0-9]{10}") and len(TOKENS(X)) < 3')


def test_return_value_and_chat_roles():
    source = '''
"{:system}You are terse.{:user}Say hi.{:assistant}[A]" where len(TOKENS(A)) < 4
return A
'''
    result = run(source)
    assert result.return_value == result.variables["A"]
    assert result.prompt == "You are terse.Say hi." + result.variables["A"]



def test_forced_tokens_satisfy_constraints_and_save_forward_passes():
    from lmq.runtime.run import execute

    source = r'"JSON: [J]" where REGEX(J, r"\{\"name\": \"[a-z]{1,8}\", \"age\": [0-9]{1,2}\}")'
    checked = lmq.query(source).checked
    forced = execute(checked, [{}], model=MODEL, force_tokens=True)[0]
    plain = execute(checked, [{}], model=MODEL, force_tokens=False)[0]
    for result in (forced, plain):
        assert re.fullmatch(r'\{"name": "[a-z]{1,8}", "age": [0-9]{1,2}\}', result["J"])
    assert plain.stats["forced_tokens"] == 0
    assert forced.stats["forced_tokens"] >= 4
    assert forced.stats["forward_passes"] < forced.stats["generated_tokens"]
