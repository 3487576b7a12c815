"""Ending rules of one hole, driven token by token over the real SmolLM2 vocabulary."""

from __future__ import annotations

import pytest

from lmq import regular
from lmq.constraints import HoleSpec
from lmq.errors import LmqConstraintError
from lmq.runtime.decoding.holes import HoleRun
from lmq.runtime.engine import shared_engine


@pytest.fixture(scope="module")
def runtime():
    return shared_engine().runtime(shared_engine().backend("tiny-random"))


def hole(runtime, spec: HoleSpec, budget: int = 50) -> HoleRun:
    return HoleRun(spec, runtime.guide(spec.regular), runtime.text_bytes, runtime.eos_ids,
                   budget)


def feed(run: HoleRun, runtime, *pieces: str) -> HoleRun:
    for piece in pieces:
        for token in runtime.backend.vocabulary.encode(piece):
            assert run.ending is None, "value ended early"
            run.push(token, 0.0)
    return run


def test_stop_phrase_inside_a_token_is_cut_and_rest_reencoded(runtime):
    run = feed(hole(runtime, HoleSpec("X", stops_at=("\n",))), runtime, " hello", "\n\n")
    assert run.ending.value == b" hello\n"
    assert run.ending.keep == 1  # " hello" stays; the "\n\n" token is rolled back
    assert run.ending.tail == b"\n"


def test_stop_before_removes_phrase(runtime):
    run = feed(hole(runtime, HoleSpec("X", stops_before=(" world",))), runtime, " hello world")
    assert run.ending.value == b" hello"
    assert run.ending.tail == b""


def test_multi_token_stop_phrase(runtime):
    run = feed(hole(runtime, HoleSpec("X", stops_at=("END OF",))), runtime, " a END", " OF")
    assert run.ending.value == b" a END OF"


def test_stop_waits_for_other_constraints(runtime):
    spec = HoleSpec("X", min_tokens=4, stops_at=(".",))
    run = feed(hole(runtime, spec), runtime, " a.")  # two tokens: too early to stop
    assert run.ending is None
    feed(run, runtime, " b.")
    assert run.ending.value == b" a. b."


def test_end_of_sequence_only_where_accepting(runtime):
    spec = HoleSpec("X", regular.Regex("[0-9]{3}"))
    run = hole(runtime, spec)
    assert not run.can_end()
    assert not run.mask(runtime.index.vocab_size)[runtime.eos_ids].any()
    feed(run, runtime, "123")
    assert run.ending is not None  # no continuation left: ends without an extra step
    assert run.ending.value == b"123"


def test_budget_aware_mask_keeps_completion_possible(runtime):
    spec = HoleSpec("X", regular.Regex("[0-9]{4}-[0-9]{2}"), max_tokens=7)
    run = hole(runtime, spec, budget=7)
    allowed = run.mask(runtime.index.vocab_size)
    # with 7 tokens for 7 characters, only single-character tokens fit
    assert all(len(runtime.text_bytes[t]) == 1 for t in allowed.nonzero()[0])


def test_budget_that_cannot_fit_raises(runtime):
    spec = HoleSpec("X", regular.Regex("[0-9]{8}"), description="REGEX(X, ...)")
    run = hole(runtime, spec, budget=3)
    with pytest.raises(LmqConstraintError, match="'X'"):
        feed(run, runtime, "1", "2", "3")
