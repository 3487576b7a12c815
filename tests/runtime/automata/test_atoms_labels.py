"""LABELS: the byte DFA equals a brute-force oracle, guided values are valid label lists,
every tokenization of a valid list is reachable, and the value parses back to its labels."""


import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lmq import regular as rg
from lmq.runtime.automata.fsm import CompileBudget, compile_regular, dfa_accepts, is_empty
from lmq.runtime.automata.fsm_lazy import LazyAutomaton
from lmq.runtime.automata.guide import DfaGuide

# Labels that are prefixes of each other, contain spaces, the separator or non-ASCII text.
WORDS = ["a", "ab", "abc", "b", "new york", "new", "york", "é", "éa", "中文", "中", "x, y",
         "😀", "a b", "no"]
SEPS = [", ", ",", " | ", ";", " "]


def splits(text: str, labels: tuple[str, ...], sep: str) -> list[list[str]]:
    """Every way to read ``text`` as labels joined by ``sep`` (plain recursion)."""
    if text == "":
        return [[]]
    out = []
    for label in labels:
        if text == label:
            out.append([label])
        if text.startswith(label + sep):
            out += [[label] + rest for rest in splits(text[len(label) + len(sep):], labels, sep)
                    if rest]
    return out


def valid(split: list[str], node: rg.Labels) -> bool:
    return (node.min <= len(split) and (node.max is None or len(split) <= node.max)
            and (not node.unique or len(set(split)) == len(split)))


def oracle(text: str, node: rg.Labels) -> bool:
    return any(valid(s, node) for s in splits(text, node.labels, node.sep))


labels_nodes = st.builds(
    rg.Labels,
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=5, unique=True).map(tuple),
    st.sampled_from(SEPS), st.integers(0, 2), st.one_of(st.none(), st.integers(0, 3)),
    st.booleans())


@settings(max_examples=300, deadline=None)
@given(labels_nodes, st.data())
def test_dfa_equals_the_oracle(node, data):
    pieces = data.draw(st.lists(st.sampled_from(node.labels + (node.sep, "a", "é", ", ")),
                                max_size=6))
    chosen = data.draw(st.lists(st.sampled_from(node.labels), min_size=node.min,
                                max_size=node.min + 2))
    dfa = compile_regular(node)
    texts = ["".join(pieces), node.sep.join(pieces), node.sep.join(chosen)]
    for text in texts:
        assert dfa_accepts(dfa, text.encode()) == oracle(text, node), (text, node)
    if is_empty(dfa):  # then no split of any of these is valid either
        assert not any(oracle(node.sep.join(p), node) for p in ([], node.labels[:1]))


@settings(max_examples=150, deadline=None)
@given(labels_nodes, st.randoms(use_true_random=False))
def test_parse_returns_a_valid_split(node, rnd):
    count = rnd.randint(node.min, node.min + 2)
    chosen = rnd.sample(node.labels, min(count, len(node.labels))) if node.unique else \
        [rnd.choice(node.labels) for _ in range(count)]
    text = node.sep.join(chosen)
    if not oracle(text, node):
        with pytest.raises(ValueError):
            node.parse(text)
        return
    parsed = node.parse(text)
    assert node.sep.join(parsed) == text and valid(parsed, node)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(labels_nodes, st.randoms(use_true_random=False))
def test_guided_values_are_label_lists(guide_checks, node, rnd):
    dfa = compile_regular(node)
    assume(not is_empty(dfa))
    guide = DfaGuide(dfa, guide_checks.index)
    for value in guide_checks.finished_values(guide, rnd, walks=4, steps=8):
        assert oracle(value, node), (value, node)
        assert valid(node.parse(value), node)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(labels_nodes, st.randoms(use_true_random=False))
def test_every_tokenization_of_a_valid_list_is_reachable(guide_checks, node, rnd):
    guide = DfaGuide(compile_regular(node), guide_checks.index)
    for _ in range(3):
        count = rnd.randint(node.min, node.min + 2)
        if node.unique:
            chosen = rnd.sample(node.labels, min(count, len(node.labels)))
        else:
            chosen = [rnd.choice(node.labels) for _ in range(count)]
        text = node.sep.join(chosen)
        if oracle(text, node):
            guide_checks.assert_reachable(guide, text)


def test_topics_with_a_separator_token(guide_checks):
    """Tokens that span a label's end and the separator (", " + next label) are allowed."""
    topics = ("business", "sports", "politics", "science", "technology")
    node = rg.Labels(topics, ", ", 1, 3, True)
    guide = DfaGuide(compile_regular(node), guide_checks.index)
    index = guide_checks.index
    state = guide.walk_bytes(guide.initial_state, b"sports")
    comma, comma_space = index.encode(",")[0], [i for i, b in enumerate(index.token_bytes)
                                               if b == b", "]
    assert guide.mask(state)[comma] and all(guide.mask(state)[i] for i in comma_space)
    spanning = [i for i, b in enumerate(index.token_bytes) if b in (b" science", b" sports")]
    after = guide.walk_bytes(state, b",")
    allowed = guide.mask(after)
    assert all(allowed[i] == (index.token_bytes[i] == b" science") for i in spanning)
    full = guide.walk_bytes(guide.initial_state, b"sports, science, business")
    assert guide.is_accepting(full) and not len(guide.allowed(full))  # max=3 reached
    guide_checks.assert_reachable(guide, "technology, business, politics")


def test_sizes_and_budget():
    topics = ("business", "sports", "politics", "science", "technology", "health",
              "entertainment", "travel", "education", "environment")
    assert compile_regular(rg.Labels(topics, ", ", 1, 3, True)).num_states < 5000
    assert compile_regular(rg.Labels(topics, ", ", 1, None, False)).num_states < 200
    # past the budget the automaton is lazy (runtime/automata/fsm_lazy.py) and still exact
    unbounded = compile_regular(rg.Labels(topics, ", ", 1, None, True),
                                CompileBudget(max_states=5000))
    assert isinstance(unbounded, LazyAutomaton)
    assert dfa_accepts(unbounded, b", ".join(t.encode() for t in topics))
    assert not dfa_accepts(unbounded, b"sports, travel, sports")


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": ("a", "")}, "non-empty labels"), ({"labels": ("a",), "sep": ""}, "separator"),
    ({"labels": ("a", 1)}, "list of strings"),
    ({"labels": ("a",), "min": -1}, "'min'"), ({"labels": ("a",), "max": "2"}, "'max'"),
    ({"labels": ("a",), "unique": 1}, "'unique'")])
def test_invalid_options(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        rg.Labels(**kwargs)


def test_node_details():
    node = rg.Labels(["a", "b", "a"], ", ", 0, 2)
    assert node.labels == ("a", "b") and hash(node) == hash(rg.Labels(("a", "b"), ", ", 0, 2))
    assert node.parse("") == [] and node.parse("b, a") == ["b", "a"]
    assert dfa_accepts(compile_regular(node), b"")
    assert rg.labels_of(rg.And((rg.CharLength(0, 9), node))) is node
    with pytest.raises(ValueError):
        rg.labels_of(rg.CharLength(0, 9))
