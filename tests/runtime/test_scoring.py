"""lmq.runtime.scoring: the prompt rebuilt for scoring is the one the runtime decodes from,
and continuations score exactly."""

from __future__ import annotations

import math

import pytest

from lmq.runtime.decoding.knowledge import mean_logprob
from lmq.runtime.engine import shared_engine
from lmq.runtime.scoring import encode, model_view, prompt_ids, score_after

CHAT = '''argmax
    "{:system}Be brief.{:user}Capital of {country}?{:assistant}City:[C]"
distribution
    C in [" Paris", " Rome", " Vienna"]
'''


def test_prompt_ids_match_the_runtime_with_chat_turns(tiny, reference_logprobs):
    import lmq

    result = lmq.query(CHAT, model=tiny)(country="France")
    view, prefix = prompt_ids(CHAT, {"country": "France"}, tiny)
    assert view.backend is tiny
    assert prefix[0] == tiny.tokenizer.convert_tokens_to_ids("<|im_start|>")
    totals = {v: sum(reference_logprobs(tiny, prefix, encode(view, v)))
              for v in (" Paris", " Rome", " Vienna")}
    top = max(totals.values())
    norm = sum(math.exp(t - top) for t in totals.values())
    for value, p in result.distribution["C"].items():
        assert p == pytest.approx(math.exp(totals[value] - top) / norm, abs=1e-4)


def test_score_after_batches_prefixes(tiny, reference_logprobs):
    view = shared_engine().view(tiny)
    prefixes = [encode(view, "The sky is"), encode(view, "Two plus two is")]
    conts = [[encode(view, " blue"), encode(view, " green today")], [encode(view, " four")]]
    out = score_after(view, prefixes, conts)
    for i, prefix in enumerate(prefixes):
        for k, cont in enumerate(conts[i]):
            assert out[i][k] == pytest.approx(reference_logprobs(tiny, prefix, cont), abs=1e-4)


def test_helpers():
    assert mean_logprob([-1.0, -3.0]) == -2.0 and mean_logprob([]) == -math.inf
    with pytest.raises(ValueError):
        prompt_ids('"no hole here"', {}, "tiny-random")


def test_stdlib_helpers_resolve_specialist_names(tmp_path, monkeypatch):
    """`classify(..., model="brief")` and the other stdlib helpers take specialist names."""
    for name in ("LMQ_MODEL", "LMQ_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "lmq.toml").write_text('[specialists.brief]\nmodel = "tiny-random"\n'
                                       'system = "Answer in one word."\n')
    monkeypatch.chdir(tmp_path)
    view = model_view("brief")
    assert view.system == "Answer in one word." and view.name.startswith("brief (")
    assert model_view("tiny-random").backend is view.backend
