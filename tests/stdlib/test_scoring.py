"""lmq.stdlib._scoring: the prompt rebuilt for scoring is the one the runtime decodes from."""

from __future__ import annotations

import math

import pytest

from lmq.stdlib._scoring import normalized, prompt_ids, score_after, softmax

CHAT = '''argmax
    "{:system}Be brief.{:user}Capital of {country}?{:assistant}City:[C]"
distribution
    C in [" Paris", " Rome", " Vienna"]
'''


def test_prompt_ids_match_the_runtime_with_chat_turns(tiny, reference_logprobs):
    import lmq

    result = lmq.query(CHAT, model=tiny)(country="France")
    backend, prefix = prompt_ids(CHAT, {"country": "France"}, tiny)
    assert backend is tiny and prefix[0] == tiny.tokenizer.convert_tokens_to_ids("<|im_start|>")
    totals = {v: sum(reference_logprobs(tiny, prefix, tiny.encode(v)))
              for v in (" Paris", " Rome", " Vienna")}
    expected = softmax(totals)
    for value, p in result.distribution["C"].items():
        assert p == pytest.approx(expected[value], abs=1e-4)


def test_score_after_batches_prefixes(tiny, reference_logprobs):
    prefixes = [tiny.encode("The sky is"), tiny.encode("Two plus two is")]
    conts = [[tiny.encode(" blue"), tiny.encode(" green today")], [tiny.encode(" four")]]
    out = score_after(tiny, prefixes, conts)
    for i, prefix in enumerate(prefixes):
        for k, cont in enumerate(conts[i]):
            assert out[i][k] == pytest.approx(reference_logprobs(tiny, prefix, cont), abs=1e-4)


def test_helpers():
    assert normalized([-1.0, -3.0]) == -2.0 and normalized([]) == -math.inf
    assert sum(softmax({"a": -1.0, "b": -2.0}).values()) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        prompt_ids('"no hole here"', {}, "tiny-random")


def test_stdlib_helpers_resolve_specialist_names(tmp_path, monkeypatch):
    """`classify(..., model="brief")` and the other stdlib helpers take specialist names."""
    from lmq.stdlib._scoring import backend_for

    for name in ("LMQ_MODEL", "LMQ_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "lmq.toml").write_text('[specialists.brief]\nmodel = "tiny-random"\n'
                                       'system = "Answer in one word."\n')
    monkeypatch.chdir(tmp_path)
    backend = backend_for("brief")
    assert backend.system == "Answer in one word." and backend.name.startswith("brief (")
    assert backend_for("tiny-random") is backend.base
