"""A JSON Schema ``pattern`` as a regex over the inside of a JSON string, and the regexes
of the enforced ``format`` values (for :mod:`lmq.runtime.automata.fsm_json`).

JSON Schema patterns search (they are unanchored unless they say ``^``/``$``) and apply to
the decoded string. :func:`safe_pattern` rewrites a pattern so that it fully matches the
JSON text between the quotes: unanchored ends get ``SAFE*``, and every character class
loses the characters that JSON would have to escape (``"``, ``\\``, control characters),
so that the text and its decoded value are the same string. That drops the values that
need escapes -- sound, slightly incomplete.
"""

from __future__ import annotations

import re
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]

import interegular
from interegular import patterns as ip

from lmq import regular as rg
from lmq.errors import LmqCompileError

# one character of a JSON string's text: unescaped, or an escape of exactly one character
STRING_CHAR = (r'([^"\\\x00-\x1f]|\\(["\\/bfnrt]|u([0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}'
               r'|[dD][0-7][0-9a-fA-F]{2})))')
_TIME = (r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
         r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])")
# calendar dates of years 0001-9999 (as Python's date.fromisoformat): 29 February only in
# leap years (divisible by 4, and by 400 where divisible by 100)
_YEAR = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
              r"|02-(0[1-9]|1[0-9]|2[0-8]))")
_DATE = rf"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
FORMATS = {"date": _DATE, "time": _TIME, "date-time": f"{_DATE}T{_TIME}",
           "uuid": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"}

_UNSAFE = {'"', "\\"} | {chr(c) for c in range(0x20)}
_UNSAFE_CLASS = r'"\\\x00-\x1f'
SAFE = f"[^{_UNSAFE_CLASS}]"


def safe_pattern(pattern: str) -> str:
    """A regex (interegular's dialect) for the unescaped string texts that contain a match
    of ``pattern``; :class:`LmqCompileError` if lmq cannot enforce it."""
    try:
        parsed = list(sre_parse.parse(pattern, rg.REGEX_FLAGS))
    except re.error as e:
        raise LmqCompileError(f"invalid regular expression: {e.msg}") from None
    first = parsed[0][0] if parsed else None
    last = parsed[-1][0] if parsed else None
    if len(parsed) == 1 and first is sre_constants.BRANCH and re.search(r"^\^|(?<!\\)\$$",
                                                                       pattern):
        raise LmqCompileError("anchors inside a top-level '|' are not supported; group the "
                              "alternatives: ^(a|b)$")
    starts = first is sre_constants.AT and parsed[0][1] is sre_constants.AT_BEGINNING
    ends = last is sre_constants.AT and parsed[-1][1] is sre_constants.AT_END
    tree = interegular.parse_pattern(rg.normalize_regex(pattern))
    body = _emit(tree, ip.REFlags(0))
    if body is None:
        raise LmqCompileError("the pattern matches no string without escaped characters")
    return ("" if starts else SAFE + "*") + f"({body})" + ("" if ends else SAFE + "*")


def _emit(node, flags) -> str | None:
    """Regex text for an interegular parse tree, restricted to safe characters; None when
    it matches nothing."""
    if isinstance(node, ip.Pattern):
        flags = (flags | node.added_flags) & ~node.removed_flags
        options = [o for o in (_emit(option, flags) for option in node.options) if o is not None]
        return None if not options else "(" + "|".join(options) + ")"
    if isinstance(node, ip._Concatenation):
        parts = [_emit(part, flags) for part in node.parts]
        return None if None in parts else "".join(p for p in parts if p is not None)
    if isinstance(node, ip._Repeated):
        base = _emit(node.base, flags)
        if base is None:
            return "" if node.min == 0 else None
        high = "" if node.max is None else node.max
        return f"({base}){{{node.min},{high}}}"
    if isinstance(node, ip._CharGroup):
        chars = set(node.chars)
        if flags & ip.REFlags.CASE_INSENSITIVE:
            chars |= {c.swapcase() for c in chars if c.isascii() and c.isalpha()}
        if node.negated:
            return "[^" + "".join(map(_class_char, sorted(chars - _UNSAFE))) + _UNSAFE_CLASS + "]"
        chars -= _UNSAFE
        return "[" + "".join(map(_class_char, sorted(chars))) + "]" if chars else None
    if node is ip._DOT:
        return SAFE
    if node is ip._EMPTY:
        return ""
    raise LmqCompileError(f"unsupported regular expression construct {type(node).__name__}")


def _class_char(char: str) -> str:
    return "\\" + char if char in "\\]-^[" else char
