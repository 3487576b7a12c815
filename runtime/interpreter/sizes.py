"""How big a program's values may get (LANGUAGE.md section 11).

Every value a program makes is checked against the :class:`~lmq.limits.Limits`; operations
whose result or running time can be far larger than their inputs (``*``, ``%``,
``str.join``, ``sum`` of lists, ``int.to_bytes``, padding methods, format specs) are
checked *before* they run (:mod:`lmq.runtime.interpreter.sandbox` prechecks methods and
builtins with these functions). Writing a value out (``str``, ``repr``, ``print``, ``{value}``),
comparing or hashing containers, and handing a value back to the host first measure its
extent without recursion (:func:`check_extent`), so a value built by sharing (``x = [x,
x]`` sixty times: a few objects, 2**60 leaves) or nested 100,000 deep is refused instead of
hanging the host or overflowing its C stack. Hash-collision keys (:class:`Collisions`) and
the memory the program holds (:func:`measure`) are bounded here too.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any

from lmq.errors import LmqLimitError, LmqRuntimeError, LmqSandboxError
from lmq.limits import Limits

CONTAINERS = (list, tuple, dict, set, frozenset)
# Views of a dict: iterable like the dict (``for k, v in d.items()``), otherwise opaque.
DICT_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
EXTENDED: tuple[type, ...] = (*CONTAINERS, *DICT_VIEWS)  # values check_extent walks
SIZED = (*CONTAINERS, range)
TEXT_TYPES = (str, bytes, bytearray)
_INT_BITS_PER_DIGIT = 3.33


# ------------------------------------------------------------------------ sizes


def safe_len(value: Any) -> int:
    try:
        return len(value)
    except OverflowError:  # range(10**20)
        return sys.maxsize


def check_size(value: Any, limits: Limits, what: str = "value") -> Any:
    """Return ``value`` unchanged, or raise if it exceeds the size limits."""
    kind = type(value)
    if kind is int:
        if value.bit_length() > limits.int_digits * _INT_BITS_PER_DIGIT:
            raise LmqLimitError(f"{what} is an integer of more than {limits.int_digits:,} "
                                "digits (limits.int_digits)")
        return value
    if kind is str:
        if len(value) > limits.string_size:
            raise LmqLimitError(f"{what} is a string of {len(value):,} characters; the limit "
                                f"is {limits.string_size:,} (limits.string_size)")
        return value
    if kind is float or kind is bool or value is None:
        return value
    if isinstance(value, TEXT_TYPES):
        if len(value) > limits.string_size:
            raise LmqLimitError(f"{what} is a string of {len(value):,} characters; the limit "
                                f"is {limits.string_size:,} (limits.string_size)")
    elif isinstance(value, SIZED):
        size = safe_len(value)
        if size > limits.collection_size:
            raise LmqLimitError(f"{what} has {size:,} items; the limit is "
                                f"{limits.collection_size:,} (limits.collection_size)")
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > limits.int_digits * _INT_BITS_PER_DIGIT:
            raise LmqLimitError(f"{what} is an integer of more than {limits.int_digits:,} "
                                "digits (limits.int_digits)")
    return value


def check_repeat(seq: Any, times: Any, limits: Limits) -> None:
    """``seq * times``: refuse before building a result over the size limits."""
    if not isinstance(times, int) or not isinstance(seq, (*TEXT_TYPES, list, tuple)):
        return
    size = len(seq) * max(times, 0)
    if isinstance(seq, TEXT_TYPES):
        if size > limits.string_size:
            raise LmqLimitError(f"repeating a string would make {size:,} characters; the "
                                f"limit is {limits.string_size:,} (limits.string_size)")
    elif size > limits.collection_size:
        raise LmqLimitError(f"repeating a sequence would make {size:,} items; the limit is "
                            f"{limits.collection_size:,} (limits.collection_size)")


def check_int_result(op: str, left: Any, right: Any, limits: Limits) -> None:
    """``**`` and ``<<`` on integers: refuse results over the digit limit before computing."""
    if not (isinstance(left, int) and isinstance(right, int)) or left == 0:
        return
    if op == "**" and right > 0 and left not in (1, -1):
        bits = left.bit_length() * right
    elif op == "<<":
        bits = left.bit_length() + right
    else:
        return
    if bits > limits.int_digits * _INT_BITS_PER_DIGIT:
        raise LmqLimitError(f"integer result would exceed {limits.int_digits:,} digits "
                            "(limits.int_digits)")


def check_extent(value: Any, limits: Limits, what: str = "value", work: bool = False) -> int:
    """Refuse a container that, written out, would exceed ``limits.string_size``
    characters, or that is nested deeper than ``limits.nesting``; returns about how many
    characters it takes written out.

    With ``work`` (before comparing, hashing or sorting a value, which cost time but make
    nothing) the bounds are ten times the string limit and twice the collection limit in
    items and sub-items.

    Containers are walked as trees, without recursion: a list that holds the same list
    twice counts it twice, as writing it out, comparing it or hashing it would. The walk
    stops as soon as a bound is passed, so its cost is bounded whatever the value. Other
    values are bounded by :func:`check_size` already."""
    if type(value) is int:
        _check_writable_int(value, what)
        return 3 + value.bit_length() // 3
    if not isinstance(value, EXTENDED):
        return len(value) if isinstance(value, TEXT_TYPES) else 8
    budget = limits.string_size * (10 if work else 1)
    most = 2 * limits.collection_size if work else budget
    written = count = depth = 0
    level: list[Any] = [value]
    item: Any
    while level:  # breadth first, one nesting level at a time
        depth += 1
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is str:
                written += len(item) + 4
            elif kind is int:
                written += 3 + item.bit_length() // 3
                if not work:
                    _check_writable_int(item, what)
            elif isinstance(item, EXTENDED):
                if depth > limits.nesting:
                    raise LmqLimitError(f"{what} is nested more than {limits.nesting} levels "
                                        "deep (limits.nesting)")
                children: Any = item
                written += 2 + 2 * len(children)
                if isinstance(children, dict):
                    below.extend(children.keys())
                    below.extend(children.values())
                else:
                    below.extend(children)
                if len(below) + count > most:
                    break
            elif isinstance(item, TEXT_TYPES):
                written += len(item) + 4
            else:
                written += 8
            if written > budget:
                raise LmqLimitError(f"{what} is too large: written out it would take more "
                                    f"than {budget:,} characters (limits.string_size)")
        count += len(level)
        if len(below) + count > most:
            raise LmqLimitError(f"{what} has more than {most:,} items and sub-items "
                                "(limits.collection_size)")
        level = below
    return written


def _check_writable_int(value: int, what: str) -> None:
    """Python refuses to write out integers over ``sys.get_int_max_str_digits()`` digits
    (4,300 by default): refuse to hand such a value out, naming the reason."""
    digits = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    if digits and value.bit_length() > digits * _INT_BITS_PER_DIGIT:
        raise LmqLimitError(f"{what} holds an integer of more than {digits:,} digits, which "
                            "Python cannot write out (sys.get_int_max_str_digits())")


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_unicode(value: Any, what: str) -> None:
    """Refuse text with a lone surrogate (it cannot be encoded, so neither tokenized nor
    written). ``value`` is a string or a container :func:`check_extent` has bounded."""
    level = [value]
    item: Any
    while level:
        below: list[Any] = []
        for item in level:
            if isinstance(item, str):
                match = _SURROGATE.search(item)
                if match:
                    raise LmqRuntimeError(f"{what} contains the lone surrogate "
                                          f"U+{ord(match.group()):04X}, which is not text")
            elif isinstance(item, dict):
                below.extend(item.keys())
                below.extend(item.values())
            elif isinstance(item, EXTENDED):
                children: Any = item
                below.extend(children)
        level = below


# ------------------------------------------------------------------------ text


def to_text(value: Any, limits: Limits, what: str = "value", as_repr: bool = False) -> str:
    """``str(value)`` (``repr`` with ``as_repr``), bounded in time and size."""
    if type(value) is str and not as_repr:
        return value
    check_extent(value, limits, what)
    text = repr(value) if as_repr else str(value)
    if not isinstance(text, str):  # a host object's __str__ may return anything
        raise LmqSandboxError(f"{what} did not turn into a string")
    return check_size(text, limits, what)


_SPEC_NUMBERS = re.compile(r"\d+")


def format_value(value: Any, spec: str | None, limits: Limits) -> str:
    """``{value:spec}`` with Python's format-spec mini-language, bounded in size."""
    if not spec:
        return to_text(value, limits, "interpolated value")
    if any(int(n) > limits.string_size for n in _SPEC_NUMBERS.findall(spec)):
        raise LmqLimitError(f"format spec '{spec}' asks for a value larger than the string "
                            "limit (limits.string_size)")
    try:
        return check_size(format(value, spec), limits, "formatted value")
    except (ValueError, TypeError) as error:
        raise LmqSandboxError(f"invalid format spec '{spec}': {error}") from None


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_percent(template: Any, arguments: Any, limits: Limits) -> None:
    """``template % arguments`` (printf-style formatting): refuse widths and precisions
    over the string limit, arguments too large to write out, and a result that would
    pass the string limit (the template, every width and precision, every argument
    written out), before formatting."""
    if not isinstance(template, TEXT_TYPES):
        return
    text = template.decode("latin-1") if not isinstance(template, str) else template
    star = False
    size = len(text)
    for width, precision in _PERCENT_SPEC.findall(text):
        for number in (width, precision):
            if number == "*":
                star = True
            elif number and int(number) > limits.string_size:
                raise LmqLimitError(f"'%' format asks for a width of {int(number):,}; the "
                                    f"limit is {limits.string_size:,} (limits.string_size)")
            elif number:
                size += int(number)
    values = arguments if isinstance(arguments, tuple) else (
        list(arguments.values()) if isinstance(arguments, dict) else (arguments,))
    for value in values:
        if star and isinstance(value, int):
            if abs(value) > limits.string_size:
                raise LmqLimitError(f"'%' format asks for a width of {value:,}; the limit "
                                    f"is {limits.string_size:,} (limits.string_size)")
            size += abs(value)
        size += check_extent(value, limits, "formatted value")
    if size > limits.string_size:
        raise LmqLimitError(f"'%' format would make about {size:,} characters; the limit is "
                            f"{limits.string_size:,} (limits.string_size)")


# ------------------------------------------------------------------------ hashing

# Integers hash to themselves modulo 2**61 - 1, so the integers k * (2**61 - 1) all share
# one hash value: a set of a million of them takes hours to build (each insertion probes
# every earlier one). Tuples and frozensets combine their items' hashes, and even small
# integers collide (hash(-1) == hash(-2)), so the 2**k tuples of k items -1 or -2 share
# one hash value. A program may put at most MAX_COLLISIONS distinct keys with one hash
# value into its sets and dicts. Strings are safe: their hashes are salted per process.
_HASH_EXACT = 2**61 - 2
MAX_COLLISIONS = 256


def _suspicious(key: Any) -> bool:
    """A key whose hash a program can make collide with others'."""
    kind = type(key)
    if kind is int:
        return not -_HASH_EXACT <= key <= _HASH_EXACT
    return kind is tuple or kind is frozenset


class Collisions:
    """Distinct keys per hash value among the suspicious keys a program has hashed: the
    first key of each hash value, and a set once a second one shares it. The keys held
    here are part of what the program holds (``limits.memory``)."""

    def __init__(self) -> None:
        self.keys: dict[int, Any] = {}

    def note(self, keys: Iterable[Any]) -> None:
        table = self.keys
        for key in keys:
            if type(key) is str or not _suspicious(key):
                continue
            code = hash(key)
            first = table.get(code, _NONE)
            if first is _NONE:
                table[code] = key
            elif type(first) is _Same:
                first.add(key)
                if len(first) > MAX_COLLISIONS:
                    raise LmqLimitError(f"more than {MAX_COLLISIONS} distinct dict keys or "
                                        "set items share one hash value (a hash-collision "
                                        "attack); use strings or smaller integers as keys")
            elif first != key:
                table[code] = _Same((first, key))

    def copy(self) -> Collisions:
        twin = Collisions()
        twin.keys = {code: _Same(keys) if type(keys) is _Same else keys
                     for code, keys in self.keys.items()}
        return twin


class _Same(set):
    """Distinct keys that share one hash value."""


_NONE = object()


def keys_of(value: Any, as_pairs: bool = False) -> Iterable[Any]:
    """The keys a ``set(value)``/``dict(value)`` (``as_pairs``) would hash."""
    if isinstance(value, dict):
        return value.keys()
    if as_pairs:
        return (pair[0] for pair in value if isinstance(pair, (list, tuple)) and pair)
    return value


# ------------------------------------------------------------------------ memory


def measure(roots: Iterable[Any], budget: int) -> int:
    """Approximate bytes held by the values reachable from ``roots`` (each container and
    each long string counted once); stops early once ``budget`` is passed."""
    seen: set[int] = set()
    total = 0
    stack = list(roots)
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is int:  # a big integer is as large as its digits
            total += 32 if item.bit_length() <= 64 else sys.getsizeof(item)
            continue
        if kind is float or kind is bool or item is None:
            total += 32
            continue
        if kind is str and len(item) < 256:
            total += 49 + len(item)
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        try:
            total += sys.getsizeof(item)
        except TypeError:
            total += 64
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        if total > budget:
            break
    return total
