"""SPAN past the state budget: the lazy SubstringAutomaton (runtime/automata/fsm_builders.py) accepts
exactly what the eager suffix automaton accepts, with the same distances, and long texts
compile, guide exactly (masks equal a brute-force oracle) and decode."""

import bisect
import random
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmq
from lmq import regular as rg
from lmq.runtime.automata.fsm import DEAD, CompileBudget, compile_regular, dfa_accepts, is_empty
from lmq.runtime.automata.fsm_builders import SubstringAutomaton
from lmq.runtime.automata.guide import DfaGuide

ALPHABET = st.sampled_from(list("ab ab.\néü€😀中"))
TEXTS = st.one_of(
    st.text(ALPHABET, max_size=30),
    st.builds(lambda unit, times, tail: unit * times + tail,  # repeated patterns
              st.text(ALPHABET, min_size=1, max_size=4), st.integers(1, 8),
              st.text(ALPHABET, max_size=3)))
BYTES = st.lists(st.sampled_from([b"a", b"b", b" ", b"\xc3", b"\xa9", b"\xe2", b"\x82",
                                  b"\xac", b"\xf0", b"\x9f", b"\x98", b"\x80", b"\xff"]),
                 max_size=8).map(b"".join)
LAZY = CompileBudget(max_states=4)  # every text over 2 characters goes lazy


def lazy_automaton(text: str, wide: int) -> SubstringAutomaton:
    auto = SubstringAutomaton(text, CompileBudget())
    auto._WIDE = wide  # 0: every expansion by binary search, else by gathers
    return auto


def assert_same_automaton(eager, lazy) -> None:
    """Walk both automata together over every reachable state: the same live bytes, the
    same acceptance and the same distances everywhere."""
    assert (eager.initial == DEAD) == (lazy.initial == DEAD)
    if eager.initial == DEAD:
        return
    seen, queue = {(eager.initial, lazy.initial)}, deque([(eager.initial, lazy.initial)])
    while queue:
        e, k = queue.popleft()
        assert eager.accepts(e) == lazy.accepts(k)
        assert eager.distance(e) == lazy.distance(k) <= lazy.max_distance
        live = lazy.live_bytes(k)
        assert np.array_equal(live, np.flatnonzero(eager.transitions[e]))
        for byte in live.tolist():
            pair = (int(eager.transitions[e, byte]), lazy.walk(k, bytes([byte])))
            if pair not in seen:
                seen.add(pair)
                queue.append(pair)


@settings(max_examples=150, deadline=None)
@given(TEXTS, st.sampled_from([0, 2048]), st.lists(BYTES, max_size=12),
       st.lists(st.text(ALPHABET, max_size=4), max_size=4))
def test_lazy_equals_eager(text, wide, noise, others):
    eager = compile_regular(rg.Substring(text))
    assert not eager.lazy
    lazy = lazy_automaton(text, wide)
    data = text.encode()
    candidates = [data[i:j] for i in range(len(data) + 1) for j in range(i, len(data) + 2)]
    candidates += noise + [other.encode() for other in others]
    for candidate in candidates:
        assert dfa_accepts(lazy, candidate) == dfa_accepts(eager, candidate), candidate
    for i in range(len(text)):
        for j in range(i, len(text) + 1):
            assert dfa_accepts(lazy, text[i:j].encode()) == (j > i)
    assert_same_automaton(eager, lazy)
    assert is_empty(lazy) == is_empty(eager) == (text == "")


@settings(max_examples=40, deadline=None)
@given(TEXTS)
def test_compile_falls_back_to_the_lazy_automaton(text):
    auto = compile_regular(rg.Substring(text), LAZY)
    assert isinstance(auto, SubstringAutomaton) or len(text) <= LAZY.max_states // 2
    if auto.lazy:
        assert_same_automaton(compile_regular(rg.Substring(text)), auto)
    assert is_empty(auto) == (text == "")


def test_past_the_budget_is_lazy_not_an_error():
    text = ("The quick brown fox jumps over the lazy dog. " * 12)[:500]
    auto = compile_regular(rg.Substring(text), CompileBudget(max_states=300))
    assert isinstance(auto, SubstringAutomaton)
    assert dfa_accepts(auto, b"lazy dog. The quick") and not dfa_accepts(auto, b"dog  The")
    # max_states // 2 characters whose suffix automaton (~600 rows) still does not fit
    squeezed = compile_regular(rg.Substring("a" + "é" * 149), CompileBudget(max_states=300))
    assert isinstance(squeezed, SubstringAutomaton)
    assert dfa_accepts(squeezed, ("a" + "é" * 80).encode())
    assert not dfa_accepts(squeezed, "éa".encode()) and not dfa_accepts(squeezed, b"a\xc3")



def test_a_long_text_is_indexed_whatever_the_clock_says():
    lazy = compile_regular(rg.Substring("ab" * 100), CompileBudget(max_states=4, seconds=0))
    assert lazy.lazy and dfa_accepts(lazy, b"ba" * 99) and not dfa_accepts(lazy, b"aa")


WORDS = ("the of and to in is was for on that with as by at from café señor naïve 中文 "
         "数据 € 😀 🎉 — Oslo Norway capital population river mountain (1850) 42, 7.5%").split()


def document(chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words, size = [], 0
    while size <= chars:
        words.append(rng.choice(WORDS) + ("." if rng.random() < 0.08 else ""))
        size += len(words[-1]) + 1
    return " ".join(words)[:chars]


@pytest.fixture(scope="module")
def doc():
    return document(100_000)


def test_a_long_text_compiles_lazily(doc):
    auto = compile_regular(rg.Substring(doc))
    assert isinstance(auto, SubstringAutomaton) and len(doc) == 100_000
    rng = random.Random(1)
    for _ in range(50):
        i = rng.randrange(len(doc))
        piece = doc[i:i + rng.randint(1, 60)]
        assert dfa_accepts(auto, piece.encode())
        assert not dfa_accepts(auto, piece.encode() + b"\x00")
    assert not dfa_accepts(auto, b"") and not dfa_accepts(auto, b"Oslo  Norway")
    assert not dfa_accepts(auto, "中".encode()[:2]) and not dfa_accepts(auto, "中".encode()[1:])
    assert auto.distance(auto.walk(auto.initial, "😀".encode()[:1])) == 3
    assert auto.distance(auto.initial) == 1 and auto.max_distance == 4


def test_a_long_span_decodes_to_a_substring(doc):
    result = lmq.query('"Quote: [Q]" where SPAN(Q, doc) and len(TOKENS(Q)) < 8',
                       model="tiny-random")(doc=doc)
    value = result.variables["Q"]
    assert value and value in doc
    assert result.prompt == "Quote: " + value


def test_span_and_another_constraint_on_a_long_text(doc):
    result = lmq.query('"[A]" where SPAN(A, doc) and STARTS_WITH(A, "Oslo")',
                       model="tiny-random")(doc=doc)
    assert result.variables["A"].startswith("Oslo") and result.variables["A"] in doc


def oracle(data: bytes, index, prefix: bytes) -> np.ndarray:
    """Token t is allowed after ``prefix`` iff ``prefix + t`` occurs in the text at a
    character start: t begins one of the sorted texts that follow those occurrences."""
    longest = max(map(len, index.token_bytes))
    if not prefix:  # every character start
        starts = [at for at, byte in enumerate(data) if byte & 0xC0 != 0x80]
    else:  # ``prefix`` itself starts a character: so does every occurrence
        starts, at = [], data.find(prefix)
        while at >= 0:
            starts.append(at + len(prefix))
            at = data.find(prefix, at + 1)
    following = sorted(data[at:at + longest] for at in starts)
    allowed = []
    for token, piece in enumerate(index.token_bytes):
        if index.special[token] or not piece:
            continue
        k = bisect.bisect_left(following, piece)
        if k < len(following) and following[k].startswith(piece):
            allowed.append(token)
    return np.array(allowed, dtype=np.int32)


def test_masks_equal_the_oracle_on_reachable_states(doc, smollm2_index):
    index, data = smollm2_index, doc.encode()
    guide = DfaGuide(compile_regular(rg.Substring(doc)), index)
    rng = random.Random(0)
    seen: set = set()
    for _ in range(3):
        state, prefix = guide.initial_state, b""
        for _ in range(5):
            allowed = guide.allowed(state)
            if state not in seen:
                seen.add(state)
                assert np.array_equal(allowed, oracle(data, index, prefix)), prefix
                assert np.array_equal(np.flatnonzero(guide.mask(state)), allowed)
                assert guide.is_accepting(state) == (bool(prefix) and _decodes(prefix))
            if not len(allowed):
                break
            token = int(rng.choice(allowed))
            state, prefix = guide.advance(state, token), prefix + index.token_bytes[token]
            assert prefix in data
    assert len(seen) >= 6


def test_every_tokenization_of_a_substring_is_allowed(doc, guide_checks):
    guide = DfaGuide(compile_regular(rg.Substring(doc)), guide_checks.index)
    for start in (0, 1234, 56_789, 99_950):
        guide_checks.assert_reachable(guide, doc[start:start + 40])


def _decodes(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
