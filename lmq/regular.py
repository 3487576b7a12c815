"""Regular constraints on a hole's value: a tiny tree the front end builds from `where` atoms.

Each node denotes a set of strings (the values it accepts); the runtime compiles a tree to a
byte-level DFA (``lmq.runtime.fsm``). Nodes are frozen and hashable so compiled automata can
be cached by tree. ``Regex`` patterns fully match with Python ``re`` semantics under
:data:`REGEX_FLAGS` (``re.ASCII``: ``\\d \\w \\s`` and case folding are ASCII-only, so
``\\D`` excludes exactly ``0-9``); a leading ``^`` and a trailing ``$`` are accepted as
no-ops, while other anchors, lookarounds, backreferences, atomic groups and possessive
quantifiers are rejected by :func:`check_regex`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import interegular

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
class Any(Regular):
    """Every string."""


ANY = Any()

_GROUPS = {"(?=": "lookahead", "(?!": "lookahead", "(?<=": "lookbehind", "(?<!": "lookbehind",
           "(?P=": "backreference", "(?(": "conditional group", "(?>": "atomic group"}
_BRACES = re.compile(r"\{\d*(?:,\d*)?\}")


def _error(message: str, offset: int) -> LmqCompileError:
    error = LmqCompileError(message)
    error.offset = offset  # type: ignore[attr-defined]  # character offset in the pattern
    return error


def _literal(char: str) -> str:
    # interegular reads "\x" for any non-letter x as that character; letters stay bare.
    return "\\" + char if char.isascii() and not char.isalnum() else char


def normalize_regex(pattern: str) -> str:
    """``pattern`` in the dialect interegular parses, or :class:`LmqCompileError` (with
    ``offset``) if it is invalid or uses a feature a finite automaton cannot express."""
    try:
        re.compile(pattern, REGEX_FLAGS)
    except re.error as e:
        raise _error(f"invalid regular expression: {e.msg}", e.pos or 0) from None
    except (ValueError, OverflowError, RecursionError) as e:
        raise _error(f"invalid regular expression: {e}", 0) from None
    out, i, n, in_class, after_quantifier = [], 0, len(pattern), False, False
    while i < n:
        c, unsupported, quantifier = pattern[i], None, False
        if c == "\\":
            e = pattern[i + 1]  # re.compile rejects a trailing backslash
            if e in "uUN":  # interegular lacks \u, \U and \N{...}: spell the character out
                end = pattern.index("}", i) + 1 if e == "N" else i + (6 if e == "u" else 10)
                char = (unicodedata.lookup(pattern[i + 3:end - 1]) if e == "N"
                        else chr(int(pattern[i + 2:end], 16)))
                out.append(_literal(char))
                i = end
                continue
            if not in_class and e in "bBAZ":
                unsupported = f"anchor \\{e}"
            elif not in_class and e in "123456789":
                unsupported = "backreference"
            else:
                out.append(pattern[i:i + 2])
                i += 2
                continue
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            start = i + 2 if pattern.startswith("^", i + 1) else i + 1
            if pattern.startswith("]", start):
                unsupported = "']' first in a character class (write '\\]')"
            else:
                out.append(pattern[i:start])
                i, in_class = start, True
                continue
        elif c == "(":
            unsupported = next((v for k, v in _GROUPS.items() if pattern.startswith(k, i)), None)
        elif c == "+" and after_quantifier:
            unsupported = "possessive quantifier"
        elif c in "*+?":
            quantifier = pattern[i - 1:i] != "("
        elif c == "{" and (braces := _BRACES.match(pattern, i)):
            out.append(braces.group())
            i, after_quantifier = braces.end(), True
            continue
        elif c in "^$":
            if (c == "^" and i == 0) or (c == "$" and i == n - 1):
                i += 1  # a no-op under full matching
                continue
            unsupported = f"anchor '{c}' (the whole value always has to match)"
        if unsupported:
            raise _error(f"unsupported regular expression feature: {unsupported}", i)
        out.append(c)
        i, after_quantifier = i + 1, quantifier
    result = "".join(out)
    try:
        interegular.parse_pattern(result)
    except Exception as e:  # interegular.Unsupported, InvalidSyntax, NoMatch
        raise _error(f"unsupported regular expression: {e}", getattr(e, "index", 0)) from None
    return result


def check_regex(pattern: str) -> None:
    """Raise :class:`LmqCompileError` (with an ``offset`` attribute) unless lmq can enforce
    ``pattern`` with token masks."""
    normalize_regex(pattern)
