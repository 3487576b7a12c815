"""Constraints on a hole's value: a tiny tree the front end builds from `where` atoms.

Each node denotes a set of strings (the values it accepts); the runtime compiles a tree to a
byte-level DFA (``lmq.runtime.automata.fsm``), except a :class:`Grammar` (context-free),
which a grammar guide enforces. Nodes are frozen and hashable so compiled
automata can be cached by tree. ``Regex`` patterns fully match with Python ``re`` semantics under
:data:`REGEX_FLAGS` (``re.ASCII``: ``\\d \\w \\s`` and case folding are ASCII-only, so
``\\D`` excludes exactly ``0-9``); a leading ``^`` and a trailing ``$`` are accepted as
no-ops, while other anchors, lookarounds, backreferences, atomic groups and possessive
quantifiers are rejected by :func:`check_regex`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

import interegular
from interegular import patterns as ip

from lmq.errors import LmqCompileError

REGEX_FLAGS = re.ASCII
INT_PATTERN = r"-?[0-9]+"
FLOAT_PATTERN = r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?"


class Regular:
    """Base of the constraint nodes (frozen dataclasses; lists given for tuple fields become
    tuples so that every node stays hashable)."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class Regex(Regular):
    pattern: str


@dataclass(frozen=True)
class Literal(Regular):
    text: str


@dataclass(frozen=True)
class OneOf(Regular):
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Contains(Regular):
    text: str


@dataclass(frozen=True)
class Prefix(Regular):
    text: str


@dataclass(frozen=True)
class Suffix(Regular):
    text: str


@dataclass(frozen=True)
class CharLength(Regular):
    """``low <= len(value) <= high`` in characters; ``high=None`` means unbounded."""
    low: int
    high: int | None = None


@dataclass(frozen=True)
class And(Regular):
    parts: tuple[Regular, ...]


@dataclass(frozen=True)
class Or(Regular):
    parts: tuple[Regular, ...]


@dataclass(frozen=True)
class Not(Regular):
    part: Regular


@dataclass(frozen=True)
class AnyString(Regular):
    """Every string."""


@dataclass(frozen=True)
class Concat(Regular):
    """The values that split into consecutive pieces, one in each part, in order."""

    parts: tuple[Regular, ...]


@dataclass(frozen=True)
class StopsBefore(Regular):
    """The text a hole with ``STOPS_BEFORE`` may generate: a value of ``part``, or one
    followed by one of the ``phrases`` and then anything (the overshoot inside the token
    that completed the phrase). The hole cuts the phrase and what follows it, so the value
    itself is always in ``part``."""

    part: Regular
    phrases: tuple[str, ...]


ANY = AnyString()

# One lexical unit of a pattern: \u/\U/\N{} escapes (named groups), three-digit octal and
# other escapes, a class opening (with a literal "]" right after it), a "(?" group opening,
# a {m,n} quantifier, or one character.
_TOKEN = re.compile(r"""\\u(?P<u>[0-9a-fA-F]{4}) | \\U(?P<U>[0-9a-fA-F]{8}) | \\N\{(?P<N>[^}]*)\}
    | \\[0-7]{3} | \\. | \[\^?\]? | \(\?(?:[=!>(]|<[=!]|P=)? | \{\d*(?:,\d*)?\} | .""",
    re.DOTALL | re.VERBOSE)
_UNSUPPORTED = {
    "(?=": "lookahead", "(?!": "lookahead", "(?<=": "lookbehind", "(?<!": "lookbehind",
    "(?P=": "backreference", "(?(": "conditional group", "(?>": "atomic group",
    "[]": "']' first in a character class (write '\\]')", "[^]": "']' first in a character class",
    **{f"\\{c}": f"anchor \\{c}" for c in "bBAZ"},
    **{f"\\{d}": "backreference" for d in "123456789"},
}


def _error(message: str, offset: int) -> LmqCompileError:
    error = LmqCompileError(message)
    error.offset = offset  # type: ignore[attr-defined]  # character offset in the pattern
    return error


def _literal(char: str) -> str:
    # interegular reads "\x" for any non-letter x as that character; letters stay bare.
    return "\\" + char if char.isascii() and not char.isalnum() else char


def normalize_regex(pattern: str) -> str:
    """``pattern`` in the dialect interegular parses, or :class:`LmqCompileError` (with
    ``offset``) if it is invalid or uses a feature a finite automaton cannot express.

    interegular would misread some of these silently (``[]a]``, possessive ``a*+``), so
    they are found here, with their offsets, before it parses the result."""
    try:
        re.compile(pattern, REGEX_FLAGS)
    except re.error as e:
        raise _error(f"invalid regular expression: {e.msg}", e.pos or 0) from None
    except (ValueError, OverflowError, RecursionError) as e:
        raise _error(f"invalid regular expression: {e}", 0) from None
    out, in_class, after_quantifier = [], False, False
    for match in _TOKEN.finditer(pattern):
        token, at = match.group(), match.start()
        if match.lastgroup:  # interegular lacks \u, \U and \N{...}: spell the character out
            name = match["N"]
            out.append(_literal(unicodedata.lookup(name) if name is not None
                                else chr(int(match[match.lastgroup], 16))))
        elif in_class:  # only escapes and the closing "]" matter here
            in_class = not token.endswith("]") or token.startswith("\\")
            out.append(token)
        elif token in "^$" and at == (0 if token == "^" else len(pattern) - 1):
            continue  # a no-op under full matching
        else:
            problem = _UNSUPPORTED.get(token)
            if token in "^$":
                problem = f"anchor '{token}' (the whole value always has to match)"
            elif token == "+" and after_quantifier:
                problem = "possessive quantifier"
            if problem:
                raise _error(f"unsupported regular expression feature: {problem}", at)
            if token == "{":  # Python would read it as a literal brace: almost always a typo
                raise _error("incomplete repetition: close it as {m} or {m,n}, or write \\{ "
                             "for a literal brace", at)
            in_class = token.startswith("[")
            out.append("\\}" if token == "}" else token)
        after_quantifier = token in ("*", "+", "?") or token[:1] == "{" and len(token) > 1
    result = "".join(out)
    try:
        interegular.parse_pattern(result)
    except (ip.Unsupported, ip.InvalidSyntax, ValueError) as e:  # ValueError: NoMatch
        reason = str(e) or type(e).__name__.replace("InvalidSyntax", "invalid syntax")
        raise _error(f"unsupported regular expression: {reason}", getattr(e, "index", 0)) \
            from None
    return result


def check_regex(pattern: str) -> None:
    """Raise :class:`LmqCompileError` (with an ``offset`` attribute) unless lmq can enforce
    ``pattern`` with token masks."""
    normalize_regex(pattern)


@dataclass(frozen=True)
class Labels(Regular):
    """``LABELS``: a ``sep``-separated list of ``min`` to ``max`` labels (``max=None``: no
    upper bound) from ``labels``, no label twice when ``unique``.

    Repeated labels in ``labels`` count once. Raises ``ValueError`` for an empty label or
    separator or a negative count, ``TypeError`` for an option of the wrong type;
    impossible counts (``min > max``) just accept nothing.
    """

    labels: tuple[str, ...]
    sep: str = ", "
    min: int = 1
    max: int | None = None
    unique: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(dict.fromkeys(self.labels)))
        if not all(isinstance(label, str) for label in self.labels):
            raise TypeError("LABELS needs a list of strings")
        if not all(self.labels):
            raise ValueError("LABELS needs non-empty labels")
        if not isinstance(self.sep, str):
            raise TypeError("the LABELS separator must be a string")
        if not self.sep:
            raise ValueError("the LABELS separator cannot be empty")
        for name in ("min", "max"):
            value = getattr(self, name)
            wanted = f"the LABELS option '{name}' must be an integer >= 0" + (
                " or None" if name == "max" else "") + f", not {value!r}"
            if (value is not None or name == "min") and (
                    isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(wanted)
            if value is not None and value < 0:
                raise ValueError(wanted)
        if not isinstance(self.unique, bool):
            raise TypeError(f"the LABELS option 'unique' must be True or False, not "
                            f"{self.unique!r}")

    def parse(self, text: str) -> list[str]:
        """The labels of a value this constraint accepts, in order (``ValueError`` if it
        accepts none). Where labels contain the separator a text can split several ways;
        this returns the first valid split trying longer labels first."""
        if not text:
            if self.min == 0:
                return []
            raise ValueError("an empty value has no labels")
        by_length = sorted(self.labels, key=len, reverse=True)
        failed: set[tuple[int, object]] = set()

        def split(pos: int, used: tuple[str, ...]) -> list[str] | None:
            key = (pos, frozenset(used) if self.unique else len(used))
            if key in failed:
                return None
            for label in by_length:
                if not text.startswith(label, pos) or (self.unique and label in used):
                    continue
                end, chosen = pos + len(label), used + (label,)
                if self.max is not None and len(chosen) > self.max:
                    break
                if end == len(text) and len(chosen) >= self.min:
                    return list(chosen)
                if text.startswith(self.sep, end):
                    found = split(end + len(self.sep), chosen)
                    if found is not None:
                        return found
            failed.add(key)
            return None

        found = split(0, ())
        if found is None:
            raise ValueError(f"{text!r} is not a list of the labels")
        return found


@dataclass(frozen=True)
class Json(Regular):
    """``JSON``: compact JSON valid against ``schema`` (a JSON schema as JSON text, so that
    the node stays hashable; :func:`json_node` makes one from a schema value)."""

    schema: str


@dataclass(frozen=True)
class Substring(Regular):
    """``SPAN``: a non-empty substring of ``text``."""

    text: str


@dataclass(frozen=True)
class Grammar(Regular):
    """``GRAMMAR``: a complete sentence of the Lark grammar ``text`` (start rule ``start``).
    Context-free, so no byte automaton holds it: the runtime enforces it with a grammar
    guide (``lmq.runtime.automata.grammar``), and under ``and`` it combines only with the
    constraints it can be made exact with (LANGUAGE.md section 4). ``tree``: the value
    becomes its Lark parse tree."""

    text: str
    tree: bool = False


def json_node(schema: object) -> Json:
    """A :class:`Json` node for a schema given as a dict, a bool or JSON text
    (``TypeError``/``ValueError`` for anything else)."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise ValueError(f"the JSON schema is not valid JSON: {e}") from None
    if not isinstance(schema, (dict, bool)):
        raise TypeError(f"a JSON schema is a dict or a bool, not {type(schema).__name__}")
    try:
        return Json(json.dumps(schema, ensure_ascii=False, separators=(",", ":")))
    except (TypeError, ValueError) as e:
        raise ValueError(f"the JSON schema is not JSON data: {e}") from None


def grammar_of(tree: Regular | None) -> Grammar:
    """The top-level :class:`Grammar` conjunct of a hole's constraint, ``ValueError`` if
    there is none."""
    parts = tree.parts if isinstance(tree, And) else (tree,)
    for part in parts:
        if isinstance(part, Grammar):
            return part
    raise ValueError("the constraint has no GRAMMAR part")


def labels_of(tree: Regular | None) -> Labels:
    """The top-level :class:`Labels` conjunct of a hole's constraint (the one that sets the
    hole's value), ``ValueError`` if there is none."""
    parts = tree.parts if isinstance(tree, And) else (tree,)
    for part in reversed(parts):
        if isinstance(part, Labels):
            return part
    raise ValueError("the constraint has no LABELS part")
