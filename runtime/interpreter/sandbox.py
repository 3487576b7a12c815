"""What a running program may reach (LANGUAGE.md section 3).

The interpreter evaluates IR itself, so nothing outside this module's allow-lists is
reachable: names resolve only to program variables, the builtins below, imported
``lmq.stdlib`` names and host tools; attributes resolve only on values of the basic types,
never to names starting with ``_`` and never to ``format``/``format_map``.

Host values reach a program only through :mod:`lmq.runtime.interpreter.boundary`, which
makes every one exactly a basic value or an opaque handle. The one subclass of a basic
type a program may hold is lmq's own (the standard library's ``Routed`` is a ``str``): it
has exactly the basic type's attributes, bound to the value. A function value is callable
only if it is a builtin, a tool, an imported stdlib name or a method of a basic value.

Methods and builtins whose cost depends on their arguments are checked before they run
(:func:`precheck_method`, :func:`precheck_builtin`) with the size bounds of
:mod:`lmq.runtime.interpreter.sizes`.
"""

from __future__ import annotations

import builtins
import inspect
import types
from collections.abc import Callable
from typing import Any

from lmq.errors import LmqLimitError, LmqSandboxError
from lmq.limits import Limits
from lmq.runtime.interpreter.boundary import describe
from lmq.runtime.interpreter.namespaces import Namespace
from lmq.runtime.interpreter.sizes import (
    CONTAINERS,
    DICT_VIEWS,
    TEXT_TYPES,
    check_extent,
    check_size,
    check_unicode,
    safe_len,
    to_text,
)

BASIC_TYPES = (str, int, float, bool, type(None), list, tuple, dict, set, frozenset)
ITERABLES = (*BASIC_TYPES, *DICT_VIEWS, range, enumerate, zip, reversed)
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


# ------------------------------------------------------------------------ builtins


def make_builtins(limits: Limits, output: Callable[[str], None]) -> dict[str, Any]:
    """The builtins a program sees; ``range`` and ``print`` are bounded/redirected. The
    whole ``print`` output of one program instance is bounded by ``limits.string_size``.
    ``enumerate``, ``zip`` and ``reversed`` return lists, checked in size before they are
    built: a program holds no iterator, whose state a fork could not copy."""
    table = {name: getattr(builtins, name) for name in ALLOWED_BUILTIN_NAMES}
    printed = [0]

    def bounded_range(*args: int) -> range:
        return check_size(range(*args), limits, "range")

    def eager_enumerate(iterable: Any, start: int = 0) -> list[tuple[int, Any]]:
        check_size(range(safe_len(iterable)), limits, "enumerate()")
        return list(enumerate(iterable, start))

    def eager_zip(*iterables: Any, strict: bool = False) -> list[tuple[Any, ...]]:
        shortest = min((safe_len(i) for i in iterables), default=0)
        check_size(range(shortest), limits, "zip()")
        return list(zip(*iterables, strict=strict))

    def eager_reversed(sequence: Any) -> list[Any]:
        check_size(range(safe_len(sequence)), limits, "reversed()")
        return list(reversed(sequence))

    def sandbox_print(*args: Any, sep: str = " ", end: str = "\n") -> None:
        sep, end = to_text(sep, limits, "sep"), to_text(end, limits, "end")
        text = sep.join(to_text(a, limits, "printed value") for a in args) + end
        check_unicode(text, "printed text")
        printed[0] += len(text)
        if printed[0] > limits.string_size:
            raise LmqLimitError(f"the program printed more than {limits.string_size:,} "
                                "characters (limits.string_size)")
        output(text)

    replaced = {"range": bounded_range, "print": sandbox_print, "enumerate": eager_enumerate,
                "zip": eager_zip, "reversed": eager_reversed}
    for name, function in replaced.items():
        function.__name__ = name
        table[name] = function
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
    if isinstance(value, Namespace):  # lmq's own: a module, a record, LMQL's context
        return value.attribute(name)
    base = basic_type(value)
    if base is None:
        raise LmqSandboxError(f"attributes of {describe(value)} objects are not "
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
        added = sum(safe_len(a) for a in args if isinstance(a, (*CONTAINERS, *TEXT_TYPES,
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
    if name == "join" and args and isinstance(args[0], (str, list, tuple, set, frozenset,
                                                        dict, *DICT_VIEWS)):
        items: Any = args[0]
        size = len(items) if isinstance(items, str) else \
            sum(len(item) for item in items if isinstance(item, str))
        size += len(owner) * max(len(items) - 1, 0)
        if size > limits.string_size:
            raise LmqLimitError(f"str.join would make {size:,} characters; the limit is "
                                f"{limits.string_size:,} (limits.string_size)")
    if name == "translate" and args:
        _check_translate(owner, args[0], limits)


def _check_translate(text: str, table: Any, limits: Limits) -> None:
    """``text.translate(table)``: at most ``len(text)`` times the longest replacement; for
    a few long replacements, exactly the characters they replace."""
    if isinstance(table, dict):
        entries = [(key, value) for key, value in table.items()
                   if isinstance(value, str) and len(value) > 1]
    elif isinstance(table, (list, tuple)):
        entries = [(key, value) for key, value in enumerate(table)
                   if isinstance(value, str) and len(value) > 1]
    else:
        return
    if len(entries) <= 64:
        size = len(text) + sum((len(value) - 1) * text.count(chr(key)) for key, value in
                               entries if isinstance(key, int) and 0 <= key < 0x110000)
    else:
        size = len(text) * max(len(value) for _, value in entries)
    if size > limits.string_size:
        raise LmqLimitError(f"str.translate would make {size:,} characters; the limit is "
                            f"{limits.string_size:,} (limits.string_size)")


def check_grown(function: Any, limits: Limits) -> None:
    """After a method that adds items to its owner: the owner still fits the limits."""
    owner = getattr(function, "__self__", None)
    if isinstance(owner, (list, dict, set)) and method_name(function) in _GROWING_METHODS:
        check_size(owner, limits, f"the {type(owner).__name__} grown by "
                   f".{method_name(function)}")


def precheck_builtin(name: str, args: tuple, kwargs: dict, limits: Limits) -> None:
    """Refuse builtin calls whose result or running time would exceed the limits."""
    if name == "round":
        digits = args[1] if len(args) > 1 else kwargs.get("ndigits")
        if type(digits) is int and abs(digits) > limits.int_digits:
            # round(int, -n) computes 10 ** n
            raise LmqLimitError(f"round() to {digits:,} digits: more than "
                                f"{limits.int_digits:,} (limits.int_digits)")
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
