"""lmq.stdlib.hierarchical: escalation order, checks, skipped levels, HP-score."""

from __future__ import annotations

import re

import pytest

from lmq.stdlib.hierarchical import LEVELS, PENALTIES, hierarchical, hp_score

EXAMPLES = [{"question": f"{a}+{a}?", "reasoning": f"{a} and {a} make {2 * a}",
             "answer": str(2 * a)} for a in (1, 2, 3)]


def test_escalates_until_the_check_passes(tiny):
    seen = []

    def check(answer):
        seen.append(answer)
        return len(seen) == 2

    out = hierarchical("Name a colour.", check=check, model=tiny, steps=4)
    assert out["level"] == 2 and out["strategy"] == "zero_shot_cot" and out["score"] == 2
    assert [a["strategy"] for a in out["attempts"]] == list(LEVELS[:2])
    assert [a["passed"] for a in out["attempts"]] == [False, True]


def test_all_levels_fail_with_penalty_and_constraint_holds(tiny):
    out = hierarchical("What is 3+4?", check=lambda a: False, model=tiny, steps=4,
                       examples=EXAMPLES, penalty=PENALTIES["gsm8k"],
                       answer_constraint="INT(ANSWER) and len(TOKENS(ANSWER)) < 4")
    assert out["level"] is None and out["score"] == pytest.approx(5 + 2.14)
    assert [a["level"] for a in out["attempts"]] == [1, 2, 3, 4, 5]
    assert all(isinstance(a["answer"], int) for a in out["attempts"])  # INT converts


def test_three_shot_level_needs_examples(tiny):
    out = hierarchical("Q?", check=lambda a: False, model=tiny, steps=3,
                       levels=["three_shot_cot", "role"])
    assert out["attempts"][0]["skipped"] and out["attempts"][0]["answer"] is None
    assert out["attempts"][1]["strategy"] == "role"


def test_checks_of_each_kind(tiny):
    first = hierarchical("Say anything.", model=tiny, steps=3, levels=["role"])
    assert first["level"] == 1  # no check: any non-empty answer passes
    gold = hierarchical("Q?", check="x", model=tiny, steps=3, levels=["role"])
    assert gold["level"] is None
    pattern = hierarchical("Q?", check=re.compile(r".*"), model=tiny, steps=3, levels=["role"])
    assert pattern["level"] == 1
    with pytest.raises(ValueError):
        hierarchical("Q?", levels=["vibes"], model=tiny)


def test_hp_score():
    assert hp_score([1, 2, None], penalty=1.0) == pytest.approx((1 + 2 + 6) / 3)
    assert hp_score([{"level": 3}, {"level": None}]) == pytest.approx(4.0)
    assert hp_score([]) == 0.0
