"""DfaGuide masks equal a brute-force oracle, finished values satisfy their constraint, and
every tokenization of an allowed value stays allowed."""

import random
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmq import regular as rg
from lmq.runtime.automata.fsm import DEAD, compile_regular, shortest_completion_len
from lmq.runtime.automata.guide import DfaGuide, Guide
from lmq.runtime.automata.tokens import TokenIndex

VOCAB = 49_152
EOS = 2


@pytest.fixture(scope="module")
def index(smollm2_index):
    return smollm2_index


def oracle(dfa, index, state) -> np.ndarray:
    """Token t is allowed iff walking its bytes byte by byte keeps the DFA alive."""
    table = dfa.transitions.tolist()
    allowed = []
    for token_id, data in enumerate(index.token_bytes):
        if index.special[token_id] or not data:
            continue
        s = state
        for byte in data:
            s = table[s][byte]
            if s == DEAD:
                break
        if s != DEAD:
            allowed.append(token_id)
    return np.array(allowed, dtype=np.int32)


CASES = {
    "int": (rg.Regex(rg.INT_PATTERN), rg.INT_PATTERN),
    "float": (rg.Regex(rg.FLOAT_PATTERN), rg.FLOAT_PATTERN),
    "date": (rg.Regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    "choice": (rg.OneOf((" Paris", " London", "über", "😀 ok")), r" Paris| London|über|😀 ok"),
    "line": (rg.Regex(r"[^\n]{0,24}"), r"[^\n]{0,24}"),
    "unicode": (rg.Regex(r"(é|中文|😀|[a-z ])+"), r"(é|中文|😀|[a-z ])+"),
    "email": (rg.Regex(r"[a-z0-9.]+@[a-z0-9]+\.(com|org)"), r"[a-z0-9.]+@[a-z0-9]+\.(com|org)"),
    "and": (rg.And((rg.Regex(r"[A-Za-z ]+"), rg.CharLength(3, 12), rg.Not(rg.Contains("the")))),
            r"(?!.*the)[A-Za-z ]{3,12}"),
}


@pytest.mark.parametrize("case", CASES)
def test_masks_equal_the_oracle_on_reachable_states(case, index):
    tree, _ = CASES[case]
    dfa = compile_regular(tree)
    guide = DfaGuide(dfa, index)
    rng = random.Random(case)
    seen: set[int] = set()
    for _ in range(6):  # random walks; compare every state visited for the first time
        state = guide.initial_state
        for _ in range(12):
            allowed = guide.allowed(state)
            if state not in seen:
                seen.add(state)
                assert np.array_equal(allowed, oracle(dfa, index, state)), state
                mask = guide.mask(state)
                assert mask.shape == (VOCAB,) and not mask[EOS] and not mask[index.special].any()
                assert np.array_equal(np.nonzero(mask)[0], allowed)
                assert len(allowed) or guide.is_accepting(state)
            if not len(allowed):
                break
            state = guide.advance(state, int(rng.choice(allowed)))
    assert len(seen) >= 2


@pytest.mark.parametrize("case", CASES)
def test_finished_values_satisfy_the_constraint(case, index):
    tree, pattern = CASES[case]
    dfa = compile_regular(tree)
    guide, distance = DfaGuide(dfa, index), shortest_completion_len(dfa)
    rng = random.Random(case)
    for _ in range(30):
        state, ids = guide.initial_state, []
        while True:
            allowed = guide.allowed(state)
            if guide.is_accepting(state) and (not len(allowed) or rng.random() < 0.3):
                break
            assert len(allowed), "a live state with no way forward"
            if len(ids) < 10:
                token = int(rng.choice(allowed))
            else:  # head for acceptance so that every walk ends
                token = int(allowed[np.argmin(distance[guide.next_states(state)])])
            ids.append(token)
            state = guide.advance(state, token)
            assert len(ids) < 100
        value = index.decode_bytes(ids).decode("utf-8")  # raises if not valid UTF-8
        assert re.fullmatch(pattern, value, re.ASCII), value


def tokenizations(index, text: str) -> list[list[int]]:
    """The canonical encoding, one encoding per character, and one token per byte (where
    the vocabulary has single-byte tokens for all of them)."""
    single = {data: i for i, data in enumerate(index.token_bytes) if len(data) == 1}
    out = [index.encode(text), [i for char in text for i in index.encode(char)]]
    if all(bytes([b]) in single for b in text.encode()):
        out.append([single[bytes([b])] for b in text.encode()])
    return out


@pytest.mark.parametrize("words", [(" Paris", " London", "über", "😀 ok"),
                                   (" positive", " negative", " neutral"),
                                   ("中文", "中国人", "日本")])
def test_every_tokenization_of_a_choice_is_allowed(words, index):
    guide = DfaGuide(compile_regular(rg.OneOf(words)), index)
    for word in words:
        for ids in tokenizations(index, word):
            assert index.decode_bytes(ids) == word.encode()
            state = guide.initial_state
            for token in ids:
                assert guide.mask(state)[token], (word, ids)
                state = guide.advance(state, token)
            assert guide.is_accepting(state), (word, ids)


def test_protocol_details(index):
    guide: Guide = DfaGuide(compile_regular(rg.Regex(rg.INT_PATTERN)), index)
    state = guide.initial_state
    assert not guide.is_accepting(state)
    with pytest.raises(ValueError):
        guide.advance(state, EOS)
    with pytest.raises(ValueError):
        guide.advance(state, index.encode("a")[0])
    minus, seven = index.encode("-")[0], index.encode("7")[0]
    state = guide.advance(guide.advance(state, minus), seven)
    assert guide.is_accepting(state)
    assert guide.walk_bytes(guide.initial_state, b"-12") == state
    assert guide.walk_bytes(guide.initial_state, b"1x") is None
    allowed = guide.allowed(state)
    assert allowed.dtype == np.int32 and not allowed.flags.writeable
    assert guide.mask(state) is guide.mask(state)  # cached row


def test_empty_and_dead_states(index):
    guide = DfaGuide(compile_regular(rg.And((rg.Regex("[0-9]"), rg.Literal("a")))), index)
    assert guide.initial_state == DEAD and len(guide.allowed(DEAD)) == 0
    assert not guide.mask(DEAD).any() and not guide.is_accepting(DEAD)


def test_eviction_keeps_results(index):
    dfa = compile_regular(rg.Regex(r"[^\n]{0,40}"))
    small, large = DfaGuide(dfa, index, memo_bytes=1, mask_bytes=1), DfaGuide(dfa, index)
    state_small = state_large = dfa.initial
    for token in index.encode("Hello there, world"):
        assert np.array_equal(small.allowed(state_small), large.allowed(state_large))
        assert np.array_equal(small.mask(state_small), large.mask(state_large))
        state_small, state_large = small.advance(state_small, token), large.advance(state_large, token)
    explored = small.stats["explored"]
    assert np.array_equal(small.allowed(dfa.initial), large.allowed(dfa.initial))
    assert small.stats["explored"] == explored + 1  # evicted, so explored again


# -- exhaustive checks on small synthetic vocabularies --------------------------------

PIECES = st.sampled_from([b"a", b"b", b"ab", b"ba", b"aab", b" ", b" a", b"1", b"12", b"-",
                          "é".encode(), "é".encode()[:1], "é".encode()[1:], "中".encode()[:2],
                          "中".encode()[2:], "中".encode(), "😀".encode()[:3], "😀".encode()[3:],
                          b"\xff", b"a\xc3"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PIECES, min_size=1, max_size=14, unique=True),
       st.sampled_from([r"-?[0-9]+", r"(ab|é)*中?", r"[^a]{1,3}", r"😀 ?a*", r" a|b+|éé"]),
       st.randoms(use_true_random=False))
def test_synthetic_vocabulary_matches_the_oracle(pieces, pattern, rnd):
    index = TokenIndex.from_token_bytes([None, *pieces], len(pieces) + 3, [0])
    dfa = compile_regular(rg.Regex(pattern))
    guide = DfaGuide(dfa, index)
    state = guide.initial_state
    for _ in range(8):
        allowed = guide.allowed(state)
        assert np.array_equal(allowed, oracle(dfa, index, state))
        for token, nxt in zip(allowed.tolist(), guide.next_states(state).tolist()):
            assert nxt == dfa.walk(state, index.token_bytes[token]) != DEAD
        if not len(allowed):
            break
        state = guide.advance(state, rnd.choice(allowed.tolist()))
