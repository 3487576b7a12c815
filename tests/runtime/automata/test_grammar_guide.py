"""Grammar guides on SmolLM2's vocabulary: llguidance's tokenizer agrees with the token
index byte for byte, masks equal a brute-force oracle (an independent Earley recognizer
walked over every candidate token's bytes) on random prefixes of random sentences, every
tokenization of a sentence stays reachable, finished values parse with Lark, and the
confirmed completions that budgets rely on are sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lark.grammar import NonTerminal

from lmq import grammars
from lmq import regular as rg
from lmq.runtime.automata.grammar import GrammarGuide, tokenizer
from lmq.runtime.automata.grammar_completion import EarleyCompletions

pytest.importorskip("llguidance")

ROOT = Path(__file__).resolve().parents[3]
GRAMMARS = {name: path.read_text() for name, path in (
    ("expr", ROOT / "examples" / "expr.lark"),
    ("json", ROOT / "tests" / "cases" / "grammars" / "jsonish.lark"),
    ("commands", ROOT / "tests" / "cases" / "grammars" / "commands.lark"))}
# letters, accents, CJK, punctuation: characters whose UTF-8 bytes SmolLM2 has tokens for
CHARACTERS = st.characters(max_codepoint=0x9FFF, exclude_categories=("Cs", "Cc"))
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def index(smollm2_index):
    return smollm2_index


@pytest.fixture(scope="module")
def guides(index):
    return {name: GrammarGuide.from_tree(rg.Grammar(text), index)
            for name, text in GRAMMARS.items()}


@st.composite
def sentences(draw, name: str, depth: int = 4) -> str:
    """A random sentence of the grammar: rules expanded at random (the alternatives
    nearest to a terminal once ``depth`` is reached), terminals drawn from their regexes,
    ignored whitespace between terminals now and then (llguidance, unlike Lark, reads none
    before the first terminal or after the last)."""
    parser = grammars.load(GRAMMARS[name])
    rules: dict[str, list] = {}
    for rule in parser.rules:
        rules.setdefault(rule.origin.name, []).append(rule.expansion)
    patterns = {t.name: t.pattern for t in parser.terminals}
    height: dict[str, int] = {}
    for _ in rules:  # rounds of a fixpoint: the fewest expansions down to terminals
        for lhs, options in rules.items():
            for rhs in options:
                h = 1 + max((height.get(s.name, 10**6) for s in rhs if not s.is_term),
                            default=0)
                height[lhs] = min(height.get(lhs, 10**6), h)
    spaced = bool(parser.ignore_tokens)

    def expand(symbol, level: int) -> str:
        if symbol.is_term:
            pattern = patterns[symbol.name]
            text = pattern.value if pattern.type == "str" else draw(
                st.from_regex(pattern.to_regexp(), fullmatch=True, alphabet=CHARACTERS).filter(
                    lambda s: len(s) < 12))
            gap = draw(st.sampled_from(["", " ", " ", "  "])) if spaced else ""
            return gap + text
        options = rules[symbol.name]
        if level >= depth:
            low = min(1 + max((height[s.name] for s in rhs if not s.is_term), default=0)
                      for rhs in options)
            options = [rhs for rhs in options if 1 + max(
                (height[s.name] for s in rhs if not s.is_term), default=0) == low]
        rhs = draw(st.sampled_from(options))
        return "".join(expand(s, level + 1) for s in rhs)

    return expand(NonTerminal("start"), 0).lstrip()


def test_the_tokenizer_agrees_with_the_index_byte_for_byte(index):
    llg = tokenizer(index)
    assert llg.vocab_size == index.vocab_size
    content = np.flatnonzero(~index.special).tolist()
    assert all(llg.decode_bytes([i]) == index.token_bytes[i] for i in content)
    partial = np.flatnonzero(index.partial_utf8).tolist()
    assert len(partial) > 300 and all(not llg.is_special_token(i) for i in partial)
    assert all(llg.is_special_token(i) for i in np.flatnonzero(index.special).tolist())
    assert min(index.eos_ids) in llg.eos_tokens


def _oracle(name: str, index, prefix: bytes) -> np.ndarray:
    """Token t is allowed after ``prefix`` iff an Earley recognizer of the grammar (built
    independently of llguidance) survives its bytes."""
    completions = EarleyCompletions(grammars.load(GRAMMARS[name]))
    chart = completions.extend(completions.start(), prefix)
    assert chart is not None
    live = [b for b in range(256) if completions.extend(chart, bytes([b])) is not None]
    first = index.flat[index.offsets[:-1]][index.order] if len(index.order) else []
    candidates = index.order[np.isin(first, live)].tolist()
    allowed = [t for t in candidates
               if completions.extend(chart, index.token_bytes[t]) is not None]
    return np.array(sorted(allowed), dtype=np.int32)


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_masks_equal_the_brute_force_oracle_on_random_prefixes(name, guides, index):
    guide = guides[name]

    @SETTINGS
    @given(sentences(name), st.floats(0, 1))
    def check(sentence, where):
        data = sentence.encode()
        cut = int(where * len(data))  # inside a character too: its bytes are tokens
        state = guide.walk_bytes(guide.initial_state, data[:cut])
        assume(guide._spell(data[:cut]) is not None)  # SmolLM2 spells every character
        assert state is not None, (sentence, cut)
        assert np.array_equal(guide.allowed(state), _oracle(name, index, data[:cut])), \
            (sentence, data[:cut])
        mask = guide.mask(state)
        assert not mask[index.special].any()
        assert np.array_equal(np.flatnonzero(mask), guide.allowed(state))

    check()


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_every_tokenization_of_a_sentence_is_reachable(name, guides, guide_checks):
    guide = guides[name]

    @SETTINGS
    @given(sentences(name))
    def check(sentence):
        assert grammars.is_sentence(GRAMMARS[name], sentence)
        guide_checks.assert_reachable(guide, sentence)

    check()


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_finished_values_parse_with_lark(name, guides, index):
    guide = guides[name]
    rng = np.random.default_rng(7)
    for _ in range(8):
        state, ids = guide.initial_state, []
        for _ in range(int(rng.integers(0, 12))):
            allowed = guide.allowed(state)
            if not len(allowed):
                break
            token = int(rng.choice(allowed))
            ids.append(token)
            state = guide.advance(state, token)
        completion = guide.completion(state)
        assert completion is not None
        closing = guide.closing(state, len(completion))
        while not guide.is_accepting(state):  # follow the confirmed completion
            assert len(closing), index.decode_bytes(ids)
            token = int(closing[0])
            ids.append(token)
            state = guide.advance(state, token)
            closing = guide.closing(state, len(guide.completion(state) or b""))
        value = index.decode_bytes(ids).decode("utf-8")
        assert grammars.is_sentence(GRAMMARS[name], value), value


def test_completions_are_shortest_and_confirmed(guides, index):
    guide = guides["expr"]
    for prefix, expected in [(b"", b"0"), (b"3 * (4", b")"), (b"((", b"0))"), (b"1", b""),
                             (b"(1 + -", b"0)")]:
        state = guide.walk_bytes(guide.initial_state, prefix)
        assert guide.completion(state) == expected
        assert grammars.is_sentence(GRAMMARS["expr"], (prefix + expected).decode())
    assert guide.walk_bytes(guide.initial_state, b"1 2") is None


def test_fits_checks_the_tokens_left(guides, index):
    guide = guides["expr"]
    state = guide.walk_bytes(guide.initial_state, b"2*")
    paren = index.encode("(")[0]
    assert guide.fits(state, paren, 2) and not guide.fits(state, paren, 1)  # "(" needs "0)"
    assert guide.fits(state, index.encode("7")[0], 0)
    assert guide.within(state, 1) and not guide.within(state, 0)
    closing = guide.closing(state, 0)
    assert len(closing) and all(index.token_bytes[t] == b"0" for t in closing.tolist())


def test_forced_bytes_come_from_the_engine(index):
    guide = GrammarGuide.from_tree(rg.Grammar('start: "SELECT" NAME ";"\nNAME: /[a-z]+/'),
                                   index)
    assert guide.forced_bytes(guide.initial_state) == (b"SELECT", False)
    state = guide.walk_bytes(guide.initial_state, b"SELECTab")
    assert guide.forced_bytes(state) == (b"", False)
    done = guide.walk_bytes(state, b";")
    assert guide.is_accepting(done) and not len(guide.allowed(done))


def test_a_prefix_and_stop_phrases_in_the_generation_language(index):
    tree = rg.StopsBefore(rg.Concat((rg.Literal(" "), rg.Grammar(GRAMMARS["expr"]))), (";",))
    guide = GrammarGuide.from_tree(tree, index)
    assert guide.walk_bytes(guide.initial_state, b"1") is None  # the prefix comes first
    state = guide.walk_bytes(guide.initial_state, b" 1 + 2")
    assert guide.is_accepting(state)
    after = guide.walk_bytes(state, b";anything at all")  # a phrase, then the overshoot
    assert after is not None and guide.is_accepting(after)
    assert guide.walk_bytes(guide.initial_state, b" 1 +;") is None


def test_a_recursive_json_schema_gets_a_grammar_guide(index):
    from lmq.runtime.decoding.model_runtime import _compiled

    schema = {"$defs": {"n": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
        "required": ["v", "kids"]}}, "$ref": "#/$defs/n"}
    guide = _compiled(rg.json_node(schema), index)
    assert isinstance(guide, GrammarGuide)
    state = guide.walk_bytes(guide.initial_state, b'{"v":1,"kids":[{"v":2,')
    assert guide.completion(state) == b'"kids":[]}]}'
    assert guide.walk_bytes(guide.initial_state, b'{"v":1,"kids":[],"x":1}') is None
    assert guide.walk_bytes(guide.initial_state, b'{"v": 1') is None  # compact only
