"""Hypothesis strategies shared by the tests of exported automata: regular expressions of
the re subset over a few awkward characters (multi-byte, astral, the syntax's own
punctuation) and texts over the same characters, and the DFA of a pattern."""

from __future__ import annotations

from hypothesis import strategies as st

from lmq import regular as rg
from lmq.runtime.automata import fsm

CHARS = "ab c_1-é中😀\nZ.\t|()[]\\"
TEXT = st.text(alphabet=st.sampled_from(CHARS) | st.characters(exclude_categories=("Cs",)),
               max_size=10)
_ATOMS = st.sampled_from([
    "a", "b", "é", "中", "😀", " ", "1", r"\.", r"\|", r"\(", "[ab]", "[^a]", "[a-c]",
    "[é-ë]", ".", r"\d", r"\w", r"\s", r"\W", "[中😀]", "[^中é]", r"[\]a]", "", r"\\", "_"])
REGEXES = st.recursive(
    _ATOMS,
    lambda children: (st.tuples(children, children).map("".join)
                      | st.tuples(children, children).map(lambda t: f"({t[0]}|{t[1]})")
                      | st.tuples(children, st.sampled_from(["*", "+", "?", "{2}", "{0,2}"]))
                      .map(lambda t: f"(?:{t[0]}){t[1]}")),
    max_leaves=6)


def dfa_of(pattern: str) -> fsm.ByteDfa:
    dfa = fsm.compile_regular(rg.Regex(pattern))
    assert isinstance(dfa, fsm.ByteDfa)
    return dfa
