"""Byte-level DFAs agree with Python's ``re`` (``re.ASCII``) and with plain predicates."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmq import regular as rg
from lmq.errors import LmqCompileError
from lmq.runtime.automata import fsm
from lmq.runtime.automata.fsm import DEAD, CompileBudget, compile_regular, dfa_accepts

pytestmark = pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # "[[]"

# Characters of 1 to 4 UTF-8 bytes, plus ones the regex syntax treats specially.
CHARS = "ab c_1-é中😀\nZ.\t"
TEXT = st.text(alphabet=st.sampled_from(CHARS) | st.characters(exclude_categories=("Cs",)),
               max_size=12)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def accepts(tree, text: str) -> bool:
    return dfa_accepts(compile_regular(tree), text.encode())


# -- random regular expressions -------------------------------------------------------

def _atoms():
    literal = st.sampled_from(["a", "b", "é", "中", "😀", " ", "1", r"\.", r"\n", r"\-", "_"])
    classes = st.sampled_from([
        "[ab]", "[^a]", "[a-c]", "[é-ë]", "[^\\n]", ".", r"\d", r"\w", r"\s", r"\D", r"\W",
        r"\S", "[中😀]", "[^中é]", r"[\d_]", r"[^\s]", r"\u00e9", r"[a\-]", "[[]", r"\101",
        "(?i:a)", "(?i:[^b])", "(?s:.)", "", r"[\u00e9-\u00eb]", r"[\]a]", "x}"])
    return literal | classes


def _regex(children):
    return (st.tuples(children, children).map("".join)
            | st.tuples(children, children).map(lambda t: f"({t[0]}|{t[1]})")
            | st.tuples(children, st.sampled_from(["*", "+", "?", "{2}", "{0,2}", "{1,}"]))
            .map(lambda t: f"(?:{t[0]}){t[1]}"))


REGEXES = st.recursive(_atoms(), _regex, max_leaves=6)


@SETTINGS
@given(st.data(), REGEXES)
def test_regex_matches_python_re(data, pattern):
    compiled = re.compile(pattern, re.ASCII)
    dfa = compile_regular(rg.Regex(pattern))
    # Positive examples from Hypothesis' own regex generator, plus arbitrary strings.
    samples = [data.draw(TEXT) for _ in range(5)]
    if not fsm.is_empty(dfa):
        samples += [data.draw(st.from_regex(compiled, fullmatch=True)) for _ in range(3)]
    for text in samples:
        assert dfa_accepts(dfa, text.encode()) == (compiled.fullmatch(text) is not None), text


@SETTINGS
@given(st.sampled_from(["(?i)[a-c]x", "(?i:K)[^k]", "(?s).", "(?i)é", "(?i)[^é]"]), TEXT)
def test_flags(pattern, text):
    assert accepts(rg.Regex(pattern), text) == (re.fullmatch(pattern, text, re.ASCII) is not None)


@pytest.mark.parametrize("pattern,yes,no", [
    (rg.INT_PATTERN, ["0", "-12", "007"], ["", "-", "1.0", "١"]),
    (rg.FLOAT_PATTERN, ["1", "-1.5", "2e10", "3.0E-2"], ["1.", ".5", "e3", "1e"]),
    (r"[0-9]{4}-[0-9]{2}-[0-9]{2}", ["1989-11-09"], ["1989-1-09", "1989-11-091"]),
    (r"^[a-z]+$", ["abc"], ["", "ab1"]),
    (r"\u00e9|\N{CJK UNIFIED IDEOGRAPH-4E2D}", ["é", "中"], ["e"]),
    (r"\D", ["a", "١"], ["5"]),  # ASCII semantics: Arabic-Indic digits are not \d
])
def test_known_patterns(pattern, yes, no):
    for text in yes:
        assert accepts(rg.Regex(pattern), text), text
    for text in no:
        assert not accepts(rg.Regex(pattern), text), text


def test_only_valid_utf8_is_accepted():
    dfa = compile_regular(rg.ANY)
    for data in [b"\xff", b"\xc3", b"\xc3(", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80",
                 b"a\x80", b"\xe4\xb8"]:
        assert not dfa_accepts(dfa, data), data
    for text in ["", "a", "é", "中", "😀", "\U0010ffff", "\ud7ff", "\ue000"]:
        assert dfa_accepts(dfa, text.encode())


@SETTINGS
@given(st.integers(0, 0x10FFFF), st.integers(0, 0x10FFFF), st.data())
def test_utf8_sequences(low, high, data):
    low, high = min(low, high), max(low, high)
    sequences = fsm.utf8_sequences(low, high)
    size = sum(_product(hi - lo + 1 for lo, hi in seq) for seq in sequences)
    surrogates = max(0, min(high, 0xDFFF) - max(low, 0xD800) + 1)
    assert size == high - low + 1 - surrogates
    for cp in data.draw(st.lists(st.integers(max(0, low - 3), min(0x10FFFF, high + 3)),
                                 max_size=20)):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        encoded = chr(cp).encode()
        hits = [s for s in sequences if len(s) == len(encoded)
                and all(lo <= b <= hi for b, (lo, hi) in zip(encoded, s))]
        assert len(hits) == (1 if low <= cp <= high else 0), hex(cp)


def _product(values):
    out = 1
    for v in values:
        out *= v
    return out


# -- the other nodes against Python predicates ----------------------------------------

WORDS = st.text(alphabet=st.sampled_from("abé中😀 \n"), max_size=3)


@SETTINGS
@given(WORDS, TEXT | WORDS)
def test_string_predicates(word, text):
    assert accepts(rg.Literal(word), text) == (text == word)
    assert accepts(rg.Contains(word), text) == (word in text)
    assert accepts(rg.Prefix(word), text) == text.startswith(word)
    assert accepts(rg.Suffix(word), text) == text.endswith(word)
    assert accepts(rg.Not(rg.Contains(word)), text) == (word not in text)


@SETTINGS
@given(st.lists(WORDS, max_size=4), TEXT | WORDS)
def test_one_of(words, text):
    assert accepts(rg.OneOf(tuple(words)), text) == (text in words)


@SETTINGS
@given(st.integers(0, 4), st.none() | st.integers(0, 6), TEXT)
def test_char_length(low, high, text):
    expected = low <= len(text) and (high is None or len(text) <= high)
    assert accepts(rg.CharLength(low, high), text) == expected


@SETTINGS
@given(WORDS, WORDS, st.integers(0, 4), TEXT | WORDS)
def test_boolean_combinations(a, b, n, text):
    has_a, has_b, short = a in text, text.startswith(b), len(text) <= n
    assert accepts(rg.And((rg.Contains(a), rg.Prefix(b))), text) == (has_a and has_b)
    assert accepts(rg.Or((rg.Contains(a), rg.CharLength(0, n))), text) == (has_a or short)
    assert accepts(rg.Not(rg.Or((rg.Prefix(b), rg.CharLength(0, n)))), text) == (
        not has_b and not short)
    assert accepts(rg.And((rg.Not(rg.Literal(a)), rg.Regex("[^\\n]*"))), text) == (
        text != a and "\n" not in text)


def test_degenerate_combinations():
    assert accepts(rg.And(()), "anything") and not accepts(rg.Or(()), "")
    assert accepts(rg.ANY, "") and accepts(rg.Not(rg.OneOf(())), "x")
    assert fsm.is_empty(compile_regular(rg.And((rg.Regex(rg.INT_PATTERN), rg.Literal("a")))))
    assert fsm.is_empty(compile_regular(rg.CharLength(3, 2)))
    assert not fsm.is_empty(compile_regular(rg.Literal("")))


# -- structure, budgets, errors -------------------------------------------------------

def test_invariants_and_shortest_completion():
    dfa = compile_regular(rg.Regex("ab|中"))
    assert dfa.transitions.shape == (dfa.num_states, 256)
    assert (dfa.transitions[DEAD] == DEAD).all() and not dfa.live[DEAD]
    assert dfa.live[1:].all() and not dfa.transitions.flags.writeable
    distances = fsm.shortest_completion_len(dfa)
    assert distances[DEAD] == -1 and distances[dfa.initial] == 2
    assert distances[dfa.walk(dfa.initial, "中".encode()[:1])] == 2
    assert dfa.walk(dfa.initial, b"x") == DEAD


def test_hash_consed_sizes():
    # A character-level DFA expanded per transition needs about 8 states per character.
    assert compile_regular(rg.Regex(r"[^\n]{0,64}")).num_states <= 64 * 8 + 3
    assert compile_regular(rg.Regex(r".*")).num_states == 9  # 1 + 7 continuation + dead
    assert compile_regular(rg.Regex(r"( positive| negative| neutral)")).num_states == 22


def test_compile_cache_returns_the_same_automaton():
    tree = rg.Or((rg.Regex("x+"), rg.OneOf(["a", "b"])))
    assert compile_regular(tree) is compile_regular(rg.Or([rg.Regex("x+"), rg.OneOf(("a", "b"))]))


def test_state_budget_falls_back_to_a_lazy_automaton():
    lazy = compile_regular(rg.Regex("(a|b)*a(a|b){16}"))  # 2**17 states
    assert lazy.lazy and dfa_accepts(lazy, b"ba" + b"b" * 16) and not dfa_accepts(lazy, b"a" * 16)
    small = CompileBudget(max_states=50)
    either = compile_regular(rg.Or((rg.Regex("a{0,40}"), rg.Regex("b{0,40}"))), small)  # 83
    assert either.lazy and dfa_accepts(either, b"b" * 40) and not dfa_accepts(either, b"ab")
    assert either.distance(either.walk(either.initial, b"a" * 40)) == 0
    with pytest.raises(LmqCompileError, match="too large"):
        compile_regular(rg.Regex("(?:(?:x{0,100}){0,100}){0,100}"),
                        CompileBudget(max_nfa_states=9999))


def test_the_work_budget_decides_eager_or_lazy_whatever_the_clock_says():
    tree = rg.Regex("(a|b)*a(a|b){13}")  # 2**14 states, within max_states
    assert not compile_regular(tree, CompileBudget(eager_work=10 ** 7)).lazy
    lazy = compile_regular(tree, CompileBudget(eager_work=1000))
    assert lazy.lazy and dfa_accepts(lazy, b"a" * 14)
    # the wall-clock guard is a last resort: past it the automaton is lazy, never an error
    late = compile_regular(rg.Regex("(a|b){0,900}"), CompileBudget(seconds=0.0))
    assert late.lazy and dfa_accepts(late, b"ab" * 450) and not dfa_accepts(late, b"a" * 901)


@pytest.mark.parametrize("pattern,offset,message", [
    (r"(a)\1", 3, "backreference"),
    (r"(?P<x>a)(?P=x)", 8, "backreference"),
    (r"a(?=b)", 1, "lookahead"),
    (r"(?<!a)b", 0, "lookbehind"),
    (r"a\bc", 1, "anchor"),
    (r"a$b", 1, "anchor"),
    (r"x|^y", 2, "anchor"),
    (r"[]a]", 0, r"'\]'"),
    (r"a*+", 2, "possessive"),
    (r"(?>ab)", 0, "atomic"),
    (r"ab(c", 2, "invalid"),
    (r"a{2,1}", 2, "invalid"),
    (r"\q", 0, "invalid"),
    (r"(?x)a b", 0, "unsupported"),
])
def test_check_regex_errors(pattern, offset, message):
    with pytest.raises(LmqCompileError, match=message) as info:
        rg.check_regex(pattern)
    assert info.value.offset == offset
    with pytest.raises(LmqCompileError):
        compile_regular(rg.Regex(pattern))


@pytest.mark.parametrize("pattern", [r"^abc$", r"a\*+", r"[\]a]", r"x}+", r"(?i)abc", r"a{,3}",
                                     r"\u00e9", r"[^\b]", r"(?:a|b)+?", "(?P<name>x)", r"\$"])
def test_check_regex_accepts(pattern):
    rg.check_regex(pattern)
