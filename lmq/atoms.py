"""The constraint atoms of LANGUAGE.md section 4: one table entry each.

An :class:`AtomKind` says how an atom is written (the function name of a function atom
such as ``REGEX(X, pattern)``; the operator forms ``len(TOKENS(X)) OP n``, ``len(X) OP n``,
``X in LIST``, ``s in X`` and ``X == s`` are recognised by :mod:`lmq.lower_where`), which
arguments and keyword options it takes and how each is checked, and what it constrains:

* a regular language of the value: ``build`` makes its :mod:`lmq.regular` node from the
  evaluated arguments, and the automata package compiles that node into a byte-level
  automaton (:mod:`lmq.runtime.automata.fsm`), so the atom is a token mask;
* or something the decoding loop enforces itself (``build`` is None): token counts, stop
  phrases, predicates.

Arguments other than the hole are expressions evaluated when the hole starts. Each
:class:`Argument` checks a value with one message, used twice: by :mod:`lmq.checks_atoms`
for arguments that are constants (a compile error pointing at the argument) and by
:mod:`lmq.constraints` for the evaluated values (a constraint error naming the hole).

Adding an atom is one entry of :data:`ATOMS`; a new kind of language also needs its node
in :mod:`lmq.regular` and its automaton builder in :mod:`lmq.runtime.automata.fsm`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lmq import regular
from lmq.grammars import check_grammar

COMPARISONS = ("<", "<=", "==", "!=", ">", ">=")


def type_name(value: Any) -> str:
    """``a str``, ``an int``, ``None``: a value's type for messages."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Argument:
    """How an argument is checked: ``accepts`` a value; ``wanted`` says what that is in a
    message (``"a string"``). A list argument also checks each element with ``element``
    (described by ``elements``, ``"strings"``); ``single`` accepts one bare element too
    (a string where a list of strings is expected); ``nonempty`` elements may not be
    ``""``."""

    wanted: str
    accepts: Callable[[Any], bool] = lambda value: True
    element: Callable[[Any], bool] | None = None
    elements: str = ""
    single: bool = False
    nonempty: bool = False

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (``"needs a string, not an int"``), or None."""
        if self.element is not None and (isinstance(value, (list, tuple, set, frozenset))
                                         or (self.single and self.element(value))):
            for item in [value] if self.element(value) and self.single else value:
                problem = self.item_problem(item)
                if problem:
                    return problem
            return None
        if not self.accepts(value):
            return f"needs {self.wanted}, not {type_name(value)}"
        return None

    def item_problem(self, item: Any) -> str | None:
        """What is wrong with one element of a list argument, or None."""
        assert self.element is not None
        if not self.element(item):
            return f"needs {self.elements}, not {type_name(item)}"
        if self.nonempty and item == "":
            return "needs a non-empty stop phrase"
        return None


def strings(value: Any) -> list[str]:
    """A checked list-of-strings argument as a list (a set in sorted order, a string alone
    as a list of one)."""
    if isinstance(value, str):
        return [value]
    return sorted(value) if isinstance(value, (set, frozenset)) else list(value)


STRING = Argument("a string", lambda value: isinstance(value, str))
LENGTH = Argument("an integer", _is_int)
STRINGS = Argument("a list of strings", lambda value: False,
                   element=lambda item: isinstance(item, str), elements="strings")
PHRASES = Argument("a string or a list of strings", lambda value: False,
                   element=lambda item: isinstance(item, str), elements="strings",
                   single=True, nonempty=True)
PATTERN = Argument("a pattern string", lambda value: isinstance(value, str))
SCHEMA = Argument("a schema (a dict)", lambda value: isinstance(value, (dict, str, bool)))
GRAMMAR_TEXT = Argument("Lark grammar text (a string)", lambda value: isinstance(value, str))
GRAMMAR_OPTIONS = {
    "tree": Argument("True or False", lambda value: isinstance(value, bool)),
    "file": Argument("a file name (a string)", lambda value: isinstance(value, str)),
}
LABEL_OPTIONS = {
    "sep": Argument("a non-empty string", lambda value: isinstance(value, str) and value != ""),
    "min": Argument("an integer >= 0", lambda value: _is_int(value) and value >= 0),
    "max": Argument("an integer >= 1 or None",
                    lambda value: value is None or (_is_int(value) and value >= 1)),
    "unique": Argument("True or False", lambda value: isinstance(value, bool)),
}


def _char_length(op: str, n: int) -> regular.Regular:
    if op == "!=":
        return regular.Not(regular.CharLength(max(n, 0), max(n, 0))) if n >= 0 else regular.ANY
    low, high = {"<": (0, n - 1), "<=": (0, n), ">": (n + 1, None), ">=": (n, None),
                 "==": (n, n)}[op]
    return regular.CharLength(max(low, 0), high)


def _regex(pattern: str) -> regular.Regular:
    regular.check_regex(pattern)
    return regular.Regex(pattern)


def _grammar(text: str, tree: bool) -> regular.Regular:
    check_grammar(text)
    return regular.Grammar(text, tree)


Build = Callable[[list[Any], dict[str, Any], str | None], regular.Regular]


@dataclass(frozen=True)
class AtomKind:
    """One atom (see the module docstring).

    ``name`` is how messages name it (``{hole}`` and ``{op}`` are replaced by the hole's
    name and the comparison); ``function`` its name where it is written as a call;
    ``arguments`` check the arguments after the hole and ``options`` the keyword options
    (which may also follow the arguments positionally, in this order); ``build(values,
    options, op)`` makes the regular node (None: the decoding loop enforces the atom);
    ``convert`` is the conversion of the value when the atom is a top-level conjunct;
    ``top_level`` atoms cannot stand under ``or`` or ``not``."""

    kind: str
    name: str
    function: str | None = None
    arguments: tuple[Argument, ...] = ()
    options: Mapping[str, Argument] = field(default_factory=dict)
    build: Build | None = None
    convert: str | None = None
    top_level: bool = False

    def title(self, hole: str, op: str | None = None) -> str:
        """How messages name this atom on ``hole`` (with comparison ``op``)."""
        return self.name.replace("{hole}", hole).replace("{op}", op or "<")

    def option_problem(self, name: str, value: Any) -> str | None:
        """What is wrong with ``value`` for the keyword option ``name``, or None."""
        argument = self.options[name]
        if argument.problem(value) is None:
            return None
        return f"the {self.name} option '{name}' must be {argument.wanted}, not {value!r}"

    @property
    def arity(self) -> int:
        """Positional arguments, the hole included."""
        return 1 + len(self.arguments)


def _one(make: Callable[[Any], regular.Regular]) -> Build:
    return lambda values, options, op: make(values[0])


ATOMS: dict[str, AtomKind] = {atom.kind: atom for atom in (
    AtomKind("token_len", "'len(TOKENS({hole})) {op} n'", arguments=(LENGTH,),
             top_level=True),
    AtomKind("char_len", "'len({hole}) {op} n'", arguments=(LENGTH,),
             build=lambda values, options, op: _char_length(op or "<", values[0])),
    AtomKind("in", "'{hole} in ...'", arguments=(STRINGS,),
             build=lambda values, options, op: regular.OneOf(tuple(strings(values[0])))),
    AtomKind("eq", "'{hole} == s'", arguments=(STRING,), build=_one(regular.Literal)),
    AtomKind("contains", "'s in {hole}'", arguments=(STRING,), build=_one(regular.Contains)),
    AtomKind("starts_with", "STARTS_WITH", "STARTS_WITH", (STRING,),
             build=_one(regular.Prefix)),
    AtomKind("ends_with", "ENDS_WITH", "ENDS_WITH", (STRING,), build=_one(regular.Suffix)),
    AtomKind("stops_at", "STOPS_AT", "STOPS_AT", (PHRASES,), top_level=True),
    AtomKind("stops_before", "STOPS_BEFORE", "STOPS_BEFORE", (PHRASES,), top_level=True),
    AtomKind("int", "INT", "INT", build=lambda values, options, op: regular.Regex(
        regular.INT_PATTERN), convert="int"),
    AtomKind("float", "FLOAT", "FLOAT", build=lambda values, options, op: regular.Regex(
        regular.FLOAT_PATTERN), convert="float"),
    AtomKind("regex", "REGEX", "REGEX", (PATTERN,), build=_one(_regex)),
    AtomKind("labels", "LABELS", "LABELS", (STRINGS,), LABEL_OPTIONS,
             build=lambda values, options, op: regular.Labels(
                 tuple(strings(values[0])), **options),
             convert="labels", top_level=True),
    AtomKind("json", "JSON", "JSON", (SCHEMA,), build=_one(regular.json_node), convert="json",
             top_level=True),
    AtomKind("span", "SPAN", "SPAN", (STRING,), build=_one(regular.Substring)),
    # GRAMMAR(X, file=...) is read into the text argument by lmq.lower_where
    AtomKind("grammar", "GRAMMAR", "GRAMMAR", (GRAMMAR_TEXT,), GRAMMAR_OPTIONS,
             build=lambda values, options, op: _grammar(values[0], options.get("tree", False)),
             top_level=True),
    AtomKind("pred", "a predicate", top_level=True),  # pred(X, ...): any other function
)}
FUNCTIONS: dict[str, AtomKind] = {atom.function: atom for atom in ATOMS.values()
                                  if atom.function is not None}
