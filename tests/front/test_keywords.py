"""Keywords match whole identifiers only: an identifier that starts with a keyword
(``input``, ``index``, ``isnt``, ``forx``, ``wherever``) is one name wherever it stands,
never a keyword followed by the rest (``await input()`` once parsed as ``await in put()``).

The keywords are read from the parser itself (every string terminal that looks like a
name), so a keyword added to the grammar is covered without editing this file.
"""

from __future__ import annotations

import keyword
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark.lexer import PatternStr

from lmq.checks import ALLOWED_BUILTINS, compile_source
from lmq.errors import LmqSyntaxError
from lmq.parser import get_parser

WORD = re.compile(r"[^\W\d]\w*\Z")
KEYWORDS = sorted({terminal.pattern.value for terminal in get_parser().terminals
                   if isinstance(terminal.pattern, PatternStr)
                   and WORD.match(terminal.pattern.value)})
RESERVED = {*KEYWORDS, *keyword.kwlist, *keyword.softkwlist, *ALLOWED_BUILTINS, "lmql",
            "context", "TOKENS"}


def test_the_keywords_are_found() -> None:
    assert {"in", "is", "not", "for", "where", "from", "argmax", "import"} <= set(KEYWORDS)


@st.composite
def keyword_prefixed(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(KEYWORDS))
    rest = draw(st.from_regex(r"[a-z0-9_]{1,4}", fullmatch=True))
    name = word + rest
    if name in RESERVED or name.startswith("_"):
        name = word + "q" + rest
    return name


# Each program uses the identifier once as a plain name; it must be that program's one
# parameter (or a tool where it is called), whatever keyword it starts with.
PROGRAMS = [
    ("y = {}\n", "param"), ("y = a + {}\n", "param"), ('"Q {{{}}}[A]"\n', "param"),
    ("y = [v for v in {}]\n", "param"), ("y = {}()\n", "tool"), ("y = f({})\n", "param"),
    ("if {}:\n    pass\n", "param"), ('"[A]" where A in {}\n', "param"),
    ("y = 1 if {} else 2\n", "param"), ('"[A]" where len(TOKENS(A)) < {}\n', "param"),
]


@settings(max_examples=150, deadline=None)
@given(name=keyword_prefixed(), case=st.sampled_from(PROGRAMS))
def test_an_identifier_starting_with_a_keyword_is_one_name(name: str, case: tuple) -> None:
    template, role = case
    checked = compile_source(template.format(name))
    found = checked.tools if role == "tool" else checked.params
    assert name in found, (template, name, checked.params, checked.tools)


@settings(max_examples=150, deadline=None)
@given(name=keyword_prefixed())
def test_two_names_side_by_side_are_an_error(name: str) -> None:
    for template in ("z = a {}\n", "z = [x {} in y]\n", '"{{a {}()}}"\n'):
        with pytest.raises(LmqSyntaxError):
            compile_source(template.format(name))


@pytest.mark.parametrize("source", [
    '"{await input()}"\n', "z = a index\n", "z = a isnt\n", "x = [x forx in y]\n",
    "x = a notin b\n", '"[A]" wherever len(A) < 3\n',
])
def test_the_reported_splits_are_errors(source: str) -> None:
    with pytest.raises(LmqSyntaxError):
        compile_source(source)
