"""A complete constrained value ends where the model's choice leaves the constraint's
language (LANGUAGE.md section 4, "Termination"): greedily when its own choice is no content
token the hole allows, sampling with the probability of those tokens, in beams as one
option weighted by that probability; token counts stay exact."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmq
from lmq import regular as rg
from lmq.constraints import HoleSpec
from lmq.decoders import DecoderSpec
from lmq.runtime.decoding import choosing
from lmq.runtime.decoding.holes import HoleRun
from lmq.runtime.engine import shared_engine

from .test_sparse_choice import sparse_max

INT = HoleSpec("N", rg.Regex(rg.INT_PATTERN))


@pytest.fixture(scope="module")
def runtime():
    return shared_engine().runtime(shared_engine().backend("tiny-random"))


def token(runtime, text: str) -> int:
    (found,) = runtime.vocabulary.encode(text)
    return found


def hole_after(runtime, spec: HoleSpec, text: str) -> HoleRun:
    run = HoleRun(spec, runtime.guide(spec.generation()), runtime.text_bytes, runtime.eos_ids,
                  16)
    for piece in text:
        run.push(token(runtime, piece), 0.0)
    return run


def peaked(runtime, favourite: int, rest: float = 0.0, top: float = 10.0) -> torch.Tensor:
    logits = torch.full((len(runtime.text_bytes),), rest)
    logits[favourite] = top
    return logits


def leaving_mass(runtime, run: HoleRun, logits: torch.Tensor) -> float:
    """The oracle: probability of every token that is no allowed content token."""
    mask = run.mask(len(runtime.text_bytes))
    mask[runtime.eos_ids] = False
    probs = torch.softmax(logits.double(), -1).numpy()
    return float(probs[~mask].sum())


@pytest.mark.parametrize("limit", [10 ** 6, -1])  # sparse and dense paths
def test_greedy_ends_when_the_models_choice_leaves(runtime, limit):
    bank = runtime.bank(torch.device("cpu"))
    done, going = hole_after(runtime, INT, "42"), hole_after(runtime, INT, "42")
    leave, stay = peaked(runtime, token(runtime, ".")), peaked(runtime, token(runtime, "7"))
    with sparse_max(limit):
        ended, went = choosing.greedy_batch([done, going], [leave, stay], bank)
        alone = choosing.pick_token(done, leave, DecoderSpec(), None, bank)
    assert ended[0] in runtime.eos_ids and went[0] == token(runtime, "7")
    assert ended[1] == pytest.approx(math.log(leaving_mass(runtime, done, leave)), abs=1e-5)
    assert alone == pytest.approx(ended)


def test_an_incomplete_value_never_ends_early(runtime):
    bank = runtime.bank(torch.device("cpu"))
    empty = hole_after(runtime, INT, "")  # "" is not an integer yet
    exact = hole_after(runtime, HoleSpec("N", rg.Regex(rg.INT_PATTERN), min_tokens=3,
                                         max_tokens=3), "42")  # two of exactly three tokens
    leave = peaked(runtime, token(runtime, "."))
    for run in (empty, exact):
        assert not run.ends_on_leaving()
        (pick,) = choosing.greedy_batch([run], [leave], bank)
        assert pick[0] not in runtime.eos_ids and run.mask(len(runtime.text_bytes))[pick[0]]


def test_unconstrained_holes_end_at_end_of_sequence_only(runtime):
    free = HoleRun(HoleSpec("X"), None, runtime.text_bytes, runtime.eos_ids, 8)
    assert not free.ends_on_leaving()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.floats(-2.0, 2.0), st.integers(0, 2 ** 20))
def test_sampling_ends_with_the_leaving_mass(runtime, shift, seed):
    """Over many seeded draws the share of ends matches the mass of the leaving tokens."""
    bank = runtime.bank(torch.device("cpu"))
    run = hole_after(runtime, INT, "4")
    logits = torch.zeros(len(runtime.text_bytes))
    logits[[token(runtime, d) for d in "0123456789"]] = 8.0 + shift  # content
    logits[token(runtime, ".")] = 10.0  # leaving
    expected = leaving_mass(runtime, run, logits)
    generator = torch.Generator().manual_seed(seed)
    draws = 400
    ends = sum(choosing.pick_token(run, logits, DecoderSpec("sample"), generator, bank)[0]
               in runtime.eos_ids for _ in range(draws))
    sigma = math.sqrt(draws * expected * (1 - expected))
    assert abs(ends - draws * expected) <= 5 * sigma + 1


def test_sampling_at_temperature_zero_is_greedy(runtime):
    bank = runtime.bank(torch.device("cpu"))
    run = hole_after(runtime, INT, "4")
    cold = DecoderSpec("sample", temperature=0.0)
    leave = peaked(runtime, token(runtime, "."), top=3.0)
    stay = peaked(runtime, token(runtime, "5"), top=3.0)
    assert choosing.pick_token(run, leave, cold, None, bank)[0] in runtime.eos_ids
    assert choosing.pick_token(run, stay, cold, None, bank)[0] == token(runtime, "5")


def test_beams_weigh_the_end_by_its_mass():
    """A beam's end option carries the log of the leaving mass (never just EOS's)."""
    result = lmq.query('beam(n=3)\n    "n=[N: int] and"\n', model="tiny-random")()
    assert all(isinstance(r["N"], int) for r in result)
    assert [r.score for r in result] == sorted((r.score for r in result), reverse=True)


def test_programs_end_integers_at_the_models_choice():
    """Replaying a greedy INT hole on the backend with the rule as an oracle gives lmq's
    value (and the model's unmasked choice at the end is no digit)."""
    engine = shared_engine()
    backend = engine.backend("tiny-random")
    runtime = engine.runtime(backend)
    result = lmq.query('"Count:[N: int]"', model="tiny-random")()
    guide = runtime.guide(rg.Regex(rg.INT_PATTERN))
    row = backend.new_rows(1)[0]
    try:
        logits, state, picked = backend.forward({row: runtime.vocabulary.encode("Count:")})[0], \
            guide.initial_state, []
        for _ in range(256):
            allowed = torch.from_numpy(guide.mask(state).copy())
            if guide.accepts_value(state) and not allowed[int(logits.argmax())]:
                break
            picked.append(int(torch.where(allowed, logits, float("-inf")).argmax()))
            state = guide.advance(state, picked[-1])
            logits = backend.forward({row: picked[-1:]})[0]
        assert runtime.index.decode_bytes(picked).decode() == str(result["N"])
        assert result.stats["generated_tokens"] == len(picked) < 256
    finally:
        backend.release([row])
