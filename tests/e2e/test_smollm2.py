"""End-to-end behaviour on the packaged SmolLM2-135M-Instruct model."""

from __future__ import annotations

import pytest

import lmq

pytestmark = pytest.mark.smollm2


def test_capital_of_france():
    q = lmq.query('"The capital of France is[C]" where C in [" Paris", " London", " Rome"]',
                  model="smollm2")
    assert q().variables["C"] == " Paris"


def test_three_holes_reencode_nothing_and_feed_each_token_once():
    source = ('"Name a fruit:[A]\\nName a colour:[B]\\nName a city:[C]" where '
              'STOPS_AT(A, "\\n") and STOPS_AT(B, "\\n") and STOPS_AT(C, "\\n") and '
              'len(TOKENS(A)) < 8 and len(TOKENS(B)) < 8 and len(TOKENS(C)) < 8')
    result = lmq.query(source, model="smollm2")()
    stats = result.stats
    assert stats["tokens_reencoded"] == 0
    # every token of the final sequence went through the model once (the last one need not)
    assert stats["billable_tokens"] <= stats["prompt_tokens"] + stats["generated_tokens"]


def test_greedy_hole_equals_transformers_generate():
    import torch

    from lmq.runtime.engine import shared_engine

    backend = shared_engine().backend("smollm2")
    prompt = "Write one sentence about the history of Paris."
    result = lmq.query(f'"{prompt}[X]" where len(TOKENS(X)) == 24', model="smollm2")()
    ids = torch.tensor([backend.vocabulary.encode(prompt)])
    output = backend.model.generate(ids, attention_mask=torch.ones_like(ids),
                                    do_sample=False, max_new_tokens=24, min_new_tokens=24)
    expected = backend.vocabulary.decode(output[0, ids.shape[1]:].tolist())
    assert result.variables["X"] == expected


FORCING_PROGRAMS = [
    r'"When did the Berlin wall fall? Give the date as YYYY-MM-DD: [D]" '
    r'where REGEX(D, r"[0-9]{4}-[0-9]{2}-[0-9]{2}")',
    r'"A person as JSON: [J]" '
    r'where REGEX(J, r"\{\"name\": \"[A-Za-z]{1,12}\", \"age\": [0-9]{1,2}\}")',
    '"The largest planet is[C]" where C in [" Jupiter", " Saturn", " Neptune"]',
]


@pytest.mark.parametrize("source", FORCING_PROGRAMS)
def test_forced_tokens_do_not_change_greedy_values(source):
    from lmq.runtime.run import execute

    checked = lmq.query(source).checked
    forced = execute(checked, [{}], model="smollm2", force_tokens=True)[0]
    plain = execute(checked, [{}], model="smollm2", force_tokens=False)[0]
    assert forced.variables == plain.variables
    assert forced.stats["forward_passes"] <= plain.stats["forward_passes"]
