"""What a running program may reach (LANGUAGE.md section 3) and how big its values may get.

The interpreter evaluates IR itself, so nothing outside this module's allow-lists is
reachable: names resolve only to program variables, the builtins below, imported
``lmq.stdlib`` names and host tools; attributes resolve only on values of the basic types,
never to names starting with ``_`` and never to ``format``/``format_map``.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from typing import Any

from lmq.errors import LmqLimitError, LmqSandboxError
from lmq.limits import Limits

BASIC_TYPES = (str, int, float, bool, type(None), list, tuple, dict, set, frozenset)
FORBIDDEN_ATTRIBUTES = frozenset({"format", "format_map"})
ALLOWED_BUILTIN_NAMES = (
    "len range str int float bool list dict tuple set enumerate zip min max sum sorted "
    "reversed abs round any all print repr isinstance"
).split()
# String methods whose result can be far larger than their inputs: checked before the call.
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})


def check_size(value: Any, limits: Limits, what: str = "value") -> Any:
    """Return ``value`` unchanged, or raise if it exceeds the size limits."""
    if isinstance(value, str):
        if len(value) > limits.string_size:
            raise LmqLimitError(f"{what} is a string of {len(value):,} characters; the limit "
                                f"is {limits.string_size:,} (limits.string_size)")
    elif isinstance(value, (list, tuple, dict, set, frozenset, range)):
        if len(value) > limits.collection_size:
            raise LmqLimitError(f"{what} has {len(value):,} items; the limit is "
                                f"{limits.collection_size:,} (limits.collection_size)")
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > limits.int_digits * 3.33:
            raise LmqLimitError(f"{what} is an integer of more than {limits.int_digits:,} "
                                "digits (limits.int_digits)")
    return value


def make_builtins(limits: Limits, output: Callable[[str], None]) -> dict[str, Any]:
    """The builtins a program sees; ``range`` and ``print`` are bounded/redirected."""
    table = {name: getattr(builtins, name) for name in ALLOWED_BUILTIN_NAMES}

    def bounded_range(*args: int) -> range:
        return check_size(range(*args), limits, "range")

    def sandbox_print(*args: Any, sep: str = " ", end: str = "\n") -> None:
        output(sep.join(str(a) for a in args) + end)

    table["range"] = bounded_range
    table["print"] = sandbox_print
    return table


def get_attribute(value: Any, name: str) -> Any:
    """``value.name`` if the sandbox allows it."""
    if name.startswith("_"):
        raise LmqSandboxError(f"attribute '{name}' is not reachable (names starting with "
                              "'_' are private to the host)")
    if name in FORBIDDEN_ATTRIBUTES:
        raise LmqSandboxError(f"'{name}' is not available; use {{expr}} or {{expr:spec}} "
                              "interpolation instead")
    if not isinstance(value, BASIC_TYPES):
        raise LmqSandboxError(f"attributes of {type(value).__name__} objects are not "
                              "reachable (only values of the basic types have methods)")
    try:
        return getattr(value, name)
    except AttributeError:
        raise LmqSandboxError(f"'{type(value).__name__}' object has no attribute '{name}'") \
            from None


def is_basic_method(function: Any) -> bool:
    """A bound method of a basic-type value (``"a".upper``, ``[].append``)."""
    owner = getattr(function, "__self__", None)
    return owner is not None and isinstance(owner, BASIC_TYPES) and not isinstance(
        owner, type)


def precheck_method(function: Any, args: tuple, kwargs: dict, limits: Limits) -> None:
    """Refuse string methods whose result would exceed the size limit before running them."""
    owner = getattr(function, "__self__", None)
    name = getattr(function, "__name__", "")
    if not isinstance(owner, str):
        return
    if name in _WIDTH_METHODS and args and isinstance(args[0], int):
        if args[0] > limits.string_size:
            raise LmqLimitError(f"str.{name} width {args[0]:,} exceeds the string limit "
                                f"{limits.string_size:,} (limits.string_size)")
    if name == "replace" and len(args) >= 2 and isinstance(args[1], str):
        old = args[0] if isinstance(args[0], str) else ""
        count = owner.count(old) if old else len(owner) + 1
        if len(owner) + count * len(args[1]) > limits.string_size:
            raise LmqLimitError("str.replace result would exceed the string limit "
                                f"{limits.string_size:,} (limits.string_size)")
    if name == "expandtabs":
        size = (args[0] if args and isinstance(args[0], int) else 8) * owner.count("\t")
        if len(owner) + size > limits.string_size:
            raise LmqLimitError("str.expandtabs result would exceed the string limit")


_SPEC_NUMBERS = re.compile(r"\d+")


def format_value(value: Any, spec: str | None, limits: Limits) -> str:
    """``{value:spec}`` with Python's format-spec mini-language, bounded in size."""
    if not spec:
        return check_size(str(value), limits, "interpolated value")
    if any(int(n) > limits.string_size for n in _SPEC_NUMBERS.findall(spec)):
        raise LmqLimitError(f"format spec '{spec}' asks for a value larger than the string "
                            "limit (limits.string_size)")
    try:
        return format(value, spec)
    except (ValueError, TypeError) as error:
        raise LmqSandboxError(f"invalid format spec '{spec}': {error}") from None
