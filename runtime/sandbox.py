"""What a running program may reach (LANGUAGE.md section 3) and how big its values may get.

The interpreter evaluates IR itself, so nothing outside this module's allow-lists is
reachable: names resolve only to program variables, the builtins below, imported
``lmq.stdlib`` names and host tools; attributes resolve only on values of the basic types,
never to names starting with ``_`` and never to ``format``/``format_map``.

Values of a *subclass* of a basic type (``numpy.float64`` is a ``float``, a host's ``str``
subclass...) have exactly the basic type's attributes, bound to the value: the subclass's
own methods (``numpy.float64.tofile`` writes a file) stay out of reach. A function value is
callable only if it is a builtin, a tool, an imported stdlib name or such a method.

Sizes (LANGUAGE.md section 11): every value a program makes is checked against the
:class:`~lmq.limits.Limits`; operations whose result or running time can be far larger than
their inputs (``*``, ``%``, ``str.join``, ``sum`` of lists, ``int.to_bytes``, padding
methods, format specs) are checked *before* they run. Writing a value out (``str``,
``repr``, ``print``, ``{value}``), comparing or hashing containers, and handing a value back
to the host first measure its extent without recursion (:func:`check_extent`), so a value
built by sharing (``x = [x, x]`` sixty times: a few objects, 2**60 leaves) or nested
100,000 deep is refused instead of hanging the host or overflowing its C stack.
"""

from __future__ import annotations

import builtins
import inspect
import re
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

from lmq.errors import LmqLimitError, LmqRuntimeError, LmqSandboxError
from lmq.limits import Limits

BASIC_TYPES = (str, int, float, bool, type(None), list, tuple, dict, set, frozenset)
CONTAINERS = (list, tuple, dict, set, frozenset)
# Views of a dict: iterable like the dict (``for k, v in d.items()``), otherwise opaque.
DICT_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
EXTENDED: tuple[type, ...] = (*CONTAINERS, *DICT_VIEWS)  # values check_extent walks
SIZED = (*CONTAINERS, range)
ITERABLES = (*BASIC_TYPES, *DICT_VIEWS, range, enumerate, zip, reversed)
TEXT_TYPES = (str, bytes, bytearray)
FORBIDDEN_ATTRIBUTES = frozenset({"format", "format_map"})
ALLOWED_BUILTIN_NAMES = (
    "len range str int float bool list dict tuple set enumerate zip min max sum sorted "
    "reversed abs round any all print repr isinstance"
).split()
# String methods whose result can be far larger than their inputs: checked before the call.
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})
# Methods that compare the elements of their owner with their arguments (cost: the
# owner's extent) and methods of hash tables that hash and compare their arguments.
_COMPARING_METHODS = frozenset({"count", "index", "remove", "sort"})
_HASHING_METHODS = frozenset({
    "get", "pop", "setdefault", "update", "add", "discard", "union", "intersection",
    "difference", "symmetric_difference", "issubset", "issuperset", "isdisjoint",
    "intersection_update", "difference_update", "symmetric_difference_update"})
_GROWING_METHODS = frozenset({"extend", "update", "append", "insert", "add", "setdefault",
                              "__setitem__"})
# Builtins that compare or hash the items of their arguments.
_COMPARING_BUILTINS = frozenset({"sorted", "min", "max", "set", "dict"})
_INT_BITS_PER_DIGIT = 3.33


# ------------------------------------------------------------------------ sizes


def _length(value: Any) -> int:
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
        size = _length(value)
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


def check_extent(value: Any, limits: Limits, what: str = "value", work: bool = False) -> None:
    """Refuse a container that, written out, would exceed ``limits.string_size``
    characters, or that is nested deeper than ``limits.nesting``.

    With ``work`` (before comparing, hashing or sorting a value, which cost time but make
    nothing) the bounds are ten times the string limit and twice the collection limit in
    items and sub-items.

    Containers are walked as trees, without recursion: a list that holds the same list
    twice counts it twice, as writing it out, comparing it or hashing it would. The walk
    stops as soon as a bound is passed, so its cost is bounded whatever the value. Other
    values are bounded by :func:`check_size` already."""
    if type(value) is int:
        _check_writable_int(value, what)
    if not isinstance(value, EXTENDED):
        return
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
    over the string limit and arguments too large to write out, before formatting."""
    if not isinstance(template, TEXT_TYPES):
        return
    text = template.decode("latin-1") if not isinstance(template, str) else template
    star = False
    for width, precision in _PERCENT_SPEC.findall(text):
        for number in (width, precision):
            if number == "*":
                star = True
            elif number and int(number) > limits.string_size:
                raise LmqLimitError(f"'%' format asks for a width of {int(number):,}; the "
                                    f"limit is {limits.string_size:,} (limits.string_size)")
    values = arguments if isinstance(arguments, tuple) else (
        list(arguments.values()) if isinstance(arguments, dict) else (arguments,))
    for value in values:
        if star and isinstance(value, int) and abs(value) > limits.string_size:
            raise LmqLimitError(f"'%' format asks for a width of {value:,}; the limit is "
                                f"{limits.string_size:,} (limits.string_size)")
        check_extent(value, limits, "formatted value")


# ------------------------------------------------------------------------ builtins


def make_builtins(limits: Limits, output: Callable[[str], None]) -> dict[str, Any]:
    """The builtins a program sees; ``range`` and ``print`` are bounded/redirected. The
    whole ``print`` output of one program instance is bounded by ``limits.string_size``."""
    table = {name: getattr(builtins, name) for name in ALLOWED_BUILTIN_NAMES}
    printed = [0]

    def bounded_range(*args: int) -> range:
        return check_size(range(*args), limits, "range")

    def sandbox_print(*args: Any, sep: str = " ", end: str = "\n") -> None:
        sep, end = to_text(sep, limits, "sep"), to_text(end, limits, "end")
        text = sep.join(to_text(a, limits, "printed value") for a in args) + end
        check_unicode(text, "printed text")
        printed[0] += len(text)
        if printed[0] > limits.string_size:
            raise LmqLimitError(f"the program printed more than {limits.string_size:,} "
                                "characters (limits.string_size)")
        output(text)

    bounded_range.lmq_builtin = True  # type: ignore[attr-defined]
    sandbox_print.lmq_builtin = True  # type: ignore[attr-defined]
    table["range"] = bounded_range
    table["print"] = sandbox_print
    return table


def basic_type(value: Any) -> type | None:
    """The basic type ``value`` is an instance of (its own type, or the first basic base
    class of a subclass), or None for any other object (and for classes themselves)."""
    if isinstance(value, type):
        return None
    kind = type(value)
    if kind in BASIC_TYPES:
        return kind
    for base in kind.__mro__:
        if base in BASIC_TYPES:
            return base
    return None


def get_attribute(value: Any, name: str) -> Any:
    """``value.name`` if the sandbox allows it."""
    if name.startswith("_"):
        raise LmqSandboxError(f"attribute '{name}' is not reachable (names starting with "
                              "'_' are private to the host)")
    if name in FORBIDDEN_ATTRIBUTES:
        raise LmqSandboxError(f"'{name}' is not available; use {{expr}} or {{expr:spec}} "
                              "interpolation instead")
    base = basic_type(value)
    if base is None:
        raise LmqSandboxError(f"attributes of {type(value).__name__} objects are not "
                              "reachable (only values of the basic types have methods)")
    try:
        if type(value) is base:
            return getattr(value, name)
        # A subclass: the basic type's attribute, bound to the value; never the subclass's.
        attribute = inspect.getattr_static(base, name)
    except AttributeError:
        raise LmqSandboxError(f"'{base.__name__}' object has no attribute '{name}'"
                              + (f" reachable in lmq programs ({type(value).__name__} "
                                 f"values have only the attributes of {base.__name__})"
                                 if type(value) is not base else "")) from None
    getter = getattr(type(attribute), "__get__", None)
    return getter(attribute, value, base) if getter is not None else attribute


def is_basic_method(function: Any) -> bool:
    """A method of a basic-type value (``"a".upper``, ``[].append``), bound to that value:
    exactly the basic type's own method, never a subclass's."""
    if type(function) is not types.BuiltinMethodType:
        return False
    owner = getattr(function, "__self__", None)
    base = basic_type(owner)
    if base is None or owner is None:  # None: a static method, bound to nothing
        return False
    if type(owner) is base:
        return True
    try:
        attribute = inspect.getattr_static(base, function.__name__)
    except AttributeError:
        return False
    getter = getattr(type(attribute), "__get__", None)
    return getter is not None and getter(attribute, owner, base) == function


def method_name(function: Any) -> str:
    return getattr(function, "__name__", "")


def precheck_method(function: Any, args: tuple, kwargs: dict, limits: Limits) -> None:
    """Refuse method calls whose result, growth or running time would exceed the limits
    before running them."""
    owner = getattr(function, "__self__", None)
    name = method_name(function)
    if name in _COMPARING_METHODS and isinstance(owner, (list, tuple)):
        check_extent(owner, limits, f"the list searched by .{name}", work=True)
    if name in _COMPARING_METHODS or name in _HASHING_METHODS:
        for value in (*args, *kwargs.values()):
            check_extent(value, limits, f"the argument of .{name}", work=True)
    if name in ("extend", "update") and args and isinstance(owner, (list, dict, set)):
        added = sum(_length(a) for a in args if isinstance(a, (*CONTAINERS, *TEXT_TYPES,
                                                                range, *DICT_VIEWS)))
        if len(owner) + added > limits.collection_size:
            raise LmqLimitError(f".{name} would make {len(owner) + added:,} items; the limit "
                                f"is {limits.collection_size:,} (limits.collection_size)")
    if isinstance(owner, int) and name == "to_bytes":
        length = args[0] if args else kwargs.get("length", 1)
        if isinstance(length, int) and length > limits.string_size:
            raise LmqLimitError(f"int.to_bytes length {length:,} exceeds the string limit "
                                f"{limits.string_size:,} (limits.string_size)")
    if not isinstance(owner, str):
        return
    if name in _WIDTH_METHODS and args and isinstance(args[0], int):
        if args[0] > limits.string_size:
            raise LmqLimitError(f"str.{name} width {args[0]:,} exceeds the string limit "
                                f"{limits.string_size:,} (limits.string_size)")
    if name == "replace" and len(args) >= 2 and isinstance(args[1], str):
        old = args[0] if isinstance(args[0], str) else ""
        count = owner.count(old) if old else len(owner) + 1
        if len(args) >= 3 and isinstance(args[2], int) and args[2] >= 0:
            count = min(count, args[2])
        if len(owner) + count * len(args[1]) > limits.string_size:
            raise LmqLimitError("str.replace result would exceed the string limit "
                                f"{limits.string_size:,} (limits.string_size)")
    if name == "expandtabs":
        size = (args[0] if args and isinstance(args[0], int) else 8) * owner.count("\t")
        if len(owner) + size > limits.string_size:
            raise LmqLimitError("str.expandtabs result would exceed the string limit "
                                f"{limits.string_size:,} (limits.string_size)")
    if name == "join" and args and isinstance(args[0], (list, tuple, set, frozenset, dict,
                                                        *DICT_VIEWS)):
        items: Any = args[0]
        size = sum(len(item) for item in items if isinstance(item, str))
        size += len(owner) * max(len(items) - 1, 0)
        if size > limits.string_size:
            raise LmqLimitError(f"str.join would make {size:,} characters; the limit is "
                                f"{limits.string_size:,} (limits.string_size)")


def check_grown(function: Any, limits: Limits) -> None:
    """After a method that adds items to its owner: the owner still fits the limits."""
    owner = getattr(function, "__self__", None)
    if isinstance(owner, (list, dict, set)) and method_name(function) in _GROWING_METHODS:
        check_size(owner, limits, f"the {type(owner).__name__} grown by "
                   f".{method_name(function)}")


def precheck_builtin(name: str, args: tuple, kwargs: dict, limits: Limits) -> None:
    """Refuse builtin calls whose result or running time would exceed the limits."""
    if name in _COMPARING_BUILTINS:
        for value in args:
            check_extent(value, limits, f"the argument of {name}()", work=True)
    elif name == "sum":
        _check_sum(args, kwargs, limits)
    elif name in ("list", "tuple") and args and isinstance(args[0], TEXT_TYPES):
        check_size(range(len(args[0])), limits, f"{name}() of a string")


def _check_sum(args: tuple, kwargs: dict, limits: Limits) -> None:
    """``sum`` of sequences copies its running total once per item: bound the result and
    the work (quadratic in the number of items)."""
    if not args or not isinstance(args[0], (list, tuple)):
        return
    start = args[1] if len(args) > 1 else kwargs.get("start", 0)
    if not isinstance(start, (list, tuple)):
        return
    total, work = len(start), 0
    for item in args[0]:
        if isinstance(item, (list, tuple)):
            total += len(item)
            work += total
    if total > limits.collection_size:
        raise LmqLimitError(f"sum() would make {total:,} items; the limit is "
                            f"{limits.collection_size:,} (limits.collection_size)")
    if work > 10 * limits.collection_size:
        raise LmqLimitError(f"sum() of {len(args[0]):,} sequences would copy {work:,} items "
                            "(more than 10 x limits.collection_size); build the list with a "
                            "comprehension instead")


def check_key_function(function: Any, kwargs: dict, allowed: Callable[[Any], bool]) -> None:
    """``key=`` of ``sorted``/``min``/``max``/``list.sort`` is called by Python itself: it
    must be something the program could call."""
    key = kwargs.get("key")
    if key is not None and not allowed(key):
        raise LmqSandboxError(f"key={type(key).__name__} is not callable in lmq programs "
                              "(only builtins, imported stdlib names, tools and methods of "
                              "basic values are)")


# ------------------------------------------------------------------------ hashing

# Integers hash to themselves modulo 2**61 - 1, so the integers k * (2**61 - 1) all share
# one hash value: a set of a million of them takes hours to build (each insertion probes
# every earlier one). Tuples holding such integers share hash values too. A program may put
# at most MAX_COLLISIONS distinct such keys with one hash value into its sets and dicts.
_HASH_EXACT = 2**61 - 2
MAX_COLLISIONS = 256


def _suspicious(key: Any) -> bool:
    """A key whose hash an attacker can choose to collide with others'."""
    if isinstance(key, int):
        return not -_HASH_EXACT <= key <= _HASH_EXACT
    if isinstance(key, (tuple, frozenset)):
        return any(_suspicious(item) for item in key)
    return False


class Collisions:
    """Distinct keys per hash value among the suspicious keys a program has hashed."""

    def __init__(self) -> None:
        self.keys: dict[int, set[Any]] = {}

    def note(self, keys: Iterable[Any]) -> None:
        for key in keys:
            if type(key) is str or not _suspicious(key):
                continue
            same = self.keys.setdefault(hash(key), set())
            same.add(key)
            if len(same) > MAX_COLLISIONS:
                raise LmqLimitError(f"more than {MAX_COLLISIONS} distinct dict keys or set "
                                    "items share one hash value (a hash-collision attack); "
                                    "use smaller integers or strings as keys")


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
        if kind is int or kind is float or kind is bool or item is None:
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
