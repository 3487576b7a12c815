"""lmq.stdlib.labels: parsing and metrics (exact), classify's three methods on tiny-random
(mechanics, exact scores), and on SmolLM2 (behaviour)."""

from __future__ import annotations

import math

import pytest

from lmq.stdlib.labels import (
    calibrate_threshold,
    choose_by_threshold,
    classify,
    label_metrics,
    parse_labels,
)

TOPICS = ["business", "sports", "politics", "science"]


def test_parse_labels_follows_the_data_readme():
    assert parse_labels("Sports, business", TOPICS) == ["sports", "business"]
    assert parse_labels(" sports ,science ", TOPICS) == ["sports", "science"]
    assert parse_labels("sports, cooking", TOPICS) is None
    assert parse_labels("", TOPICS) is None
    assert parse_labels("sports, sports", TOPICS) is None
    assert parse_labels("sports, science", TOPICS, exactly_one=True) is None
    assert parse_labels("check balance", ["check balance", "loan inquiry"],
                        exactly_one=True) == ["check balance"]


def test_metrics_are_hand_computed():
    golds = [["sports"], ["business", "politics"], ["science"]]
    predictions = [["sports"], ["business"], None]
    m = label_metrics(predictions, golds)
    assert m["validity"] == pytest.approx(2 / 3)
    assert m["exact"] == pytest.approx(1 / 3)
    # tp = 2, fp = 0, fn = 2: precision 1, recall 0.5
    assert m["micro_f1"] == pytest.approx(2 / 3)


def test_threshold_rule_and_calibration():
    scores = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}
    assert choose_by_threshold(scores, None, 3) == ["a"]
    assert choose_by_threshold(scores, 0.2, 3) == ["a", "b"]
    assert choose_by_threshold(scores, 0.9, 3) == ["a"]
    assert choose_by_threshold(scores, 0.0, 2) == ["a", "b"]
    items = [{"scores": {"a": 0.6, "b": 0.35, "c": 0.05}, "labels": ["a", "b"]},
             {"scores": {"a": 0.9, "b": 0.06, "c": 0.04}, "labels": ["a"]},
             {"scores": {"a": 0.1, "b": 0.5, "c": 0.4}, "labels": ["b", "c"]}]
    threshold = calibrate_threshold(items)
    assert 0.06 < threshold <= 0.35
    preds = [choose_by_threshold(i["scores"], threshold, 3) for i in items]
    assert label_metrics(preds, [i["labels"] for i in items])["exact"] == 1.0


@pytest.mark.parametrize("multi", [False, True])
def test_labels_method_gives_distinct_labels_from_the_set(tiny, multi):
    out = classify("The team won the cup.", TOPICS, multi=multi, max=2, model=tiny,
                   scores=False)
    assert out["valid"] and out["labels"]
    assert set(out["labels"]) <= set(TOPICS)
    assert len(set(out["labels"])) == len(out["labels"]) <= (2 if multi else 1)
    assert out["output"] == ", ".join(out["labels"])
    assert out["forward_passes"] >= 1


def test_scores_are_the_exact_renormalised_sequence_probabilities(tiny, reference_logprobs):
    from lmq.runtime.scoring import prompt_ids
    from lmq.stdlib import labels as module

    labels = ["check balance", "transfer money", "report lost card"]
    out = classify("Where did my card go?", labels, method="scores", model=tiny,
                   kind="intent", calibrate=False)
    assert list(out["scores"]) == labels
    assert sum(out["scores"].values()) == pytest.approx(1.0)
    assert out["labels"] == [max(labels, key=out["scores"].get)]
    assert out["forward_passes"] == 2  # the prompt, then all labels in one scoring pass
    params = {"text": "Where did my card go?", **module._prompt(labels, False, 1, "intent",
                                                                 None)}
    _, prefix = prompt_ids(module._source("scores"), {**params, "spaced": [" " + x for x in
                                                                            labels]}, tiny)
    totals = {x: sum(reference_logprobs(tiny, prefix, tiny.vocabulary.encode(" " + x))) for x in labels}
    top = max(totals.values())
    norm = sum(math.exp(v - top) for v in totals.values())
    for x in labels:
        assert out["scores"][x] == pytest.approx(math.exp(totals[x] - top) / norm, abs=1e-4)


def test_scores_with_threshold_and_calibration(tiny):
    out = classify("Rates rose.", TOPICS, multi=True, method="scores", threshold=0.0,
                   max=3, model=tiny, calibrate=True)
    assert len(out["labels"]) == 3  # threshold 0 keeps up to max
    assert sum(out["scores"].values()) == pytest.approx(1.0)
    assert sum(out["raw_scores"].values()) == pytest.approx(1.0)
    # calibrated = raw / content-free prior, renormalised; the prior is the raw scores of "N/A"
    prior = classify("N/A", TOPICS, multi=True, method="scores", max=3, model=tiny,
                     calibrate=False)["raw_scores"]
    ratios = {x: out["raw_scores"][x] / prior[x] for x in TOPICS}
    for x in TOPICS:
        assert out["scores"][x] == pytest.approx(ratios[x] / sum(ratios.values()), rel=1e-4)


def test_free_method_reports_validity(tiny):
    out = classify("Rates rose.", TOPICS, method="free", model=tiny, scores=False)
    assert out["valid"] == (parse_labels(out["output"], TOPICS, exactly_one=True) is not None)
    assert out["labels"] == (parse_labels(out["output"], TOPICS, exactly_one=True) or [])


def test_bad_arguments():
    with pytest.raises(ValueError):
        classify("x", [], model="tiny-random")
    with pytest.raises(ValueError):
        classify("x", ["a", "a"], model="tiny-random")
    with pytest.raises(ValueError):
        classify("x", ["a"], method="vote", model="tiny-random")


def test_classify_is_callable_from_a_program(tiny):
    import lmq

    source = ('from lmq.stdlib.labels import classify\n'
              'out = classify(text, ["yes", "no"], method="scores", model="tiny-random")\n'
              '"Label: {out[\'labels\'][0]}"\n'
              'return out["labels"][0]\n')
    result = lmq.query(source, model="tiny-random")(text="Is it?")
    assert result.return_value in ("yes", "no")


@pytest.mark.smollm2
def test_smollm2_classifies_a_clear_sports_item():
    text = "The home team scored twice in the final ten minutes to win the cup final 3-1."
    for method in ("labels", "scores"):
        out = classify(text, TOPICS + ["health"], method=method, model="smollm2",
                       kind="topic")
        assert out["labels"][0] == "sports", (method, out)
