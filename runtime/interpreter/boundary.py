"""Where host values enter and leave a running program (LANGUAGE.md section 3).

Inside the sandbox a value is exactly of a basic type (``str int float bool None list
tuple dict set frozenset``), a value Python's builtins made of those (``range``, dict
views, ``bytes``), or an object lmq made: a query, a standard-library model choice
(``fuse``, ``route``), a callable the program may call, or an :class:`Opaque` handle. So
no special method a host wrote (``__index__``, ``__eq__``, ``__iter__``, ``__bool__``, a
subclass's override of ``__getitem__``...) ever runs on a program's behalf: Python calls
only its own methods of these types.

:func:`admit` keeps that true at every door in — parameters, what tools return, the
defaults of a host query: containers are copied (the program gets its own), a value of a
subclass of a basic type becomes a value of exactly that type (read through the basic
type's own slots, so no override runs), and any other object becomes an :class:`Opaque`
handle, which can be stored, passed back to tools, compared by identity and written as
``<Type object>``, and nothing else. Sizes are checked on the way in.

:func:`hand_out` is the door out — arguments of tools, what the host gets back: handles
give back their objects and containers are copied, so a tool never holds (and cannot
change behind the program's back) a container of the program.

:func:`copy_state` copies what a program holds for a fork (a beam branch), every mutable
value reachable through any container, keeping sharing and cycles.

All three walk values without recursion, each container once.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from lmq.errors import LmqLimitError, LmqRuntimeError
from lmq.limits import Limits
from lmq.runtime.interpreter.sizes import DICT_VIEWS, check_size

SCALARS = (str, int, float, bool, type(None))
INERT = (range, bytes)  # made by Python from basic values; no host code behind them
_MUTABLE = (list, dict, set)
_IMMUTABLE = (tuple, frozenset)
# A subclass instance's value, read through the basic type's own slot.
_EXACT: dict[type, Callable[[Any], Any]] = {
    str: str.__str__, int: int.__index__, float: float.__float__,
}


def type_name(value: Any) -> str:
    """The name of ``value``'s type, read from the type object itself (a metaclass cannot
    intercept it)."""
    return type.__dict__["__name__"].__get__(type(value))


class Opaque:
    """A host object as a program holds it: equal only to a handle of the same object,
    hashed by identity, written ``<Type object>``; no truth value, no attributes, no
    operators. ``value`` is the object; only lmq code reads it (:func:`hand_out`)."""

    __slots__ = ("value", "kind")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.kind = type_name(value)

    def __eq__(self, other: object) -> bool:
        return type(other) is Opaque and other.value is self.value

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return id(self.value) >> 4

    def __repr__(self) -> str:
        return f"<{self.kind} object>"

    __str__ = __repr__

    def __bool__(self) -> bool:
        raise LmqRuntimeError(f"a {self.kind} object has no truth value in lmq programs "
                              "(objects a tool returns are opaque); compare it with "
                              "'is None' instead")


def identity(value: Any) -> Any:
    """What ``is`` compares: a handle's object, any other value itself."""
    return value.value if type(value) is Opaque else value


def describe(value: Any) -> str:
    """The type name errors use: an opaque object's own type."""
    return value.kind if type(value) is Opaque else type_name(value)


# ------------------------------------------------------------------ the walk


class _Walk:
    """Copies a value: each container once (sharing and cycles kept), as the basic type
    ``kind`` names for it, read through that type's own methods; anything else through
    ``leaf``. A tuple or frozenset whose items all copy to themselves is kept."""

    def __init__(self, leaf: Callable[[Any], Any], kind: Callable[[Any], type | None]) -> None:
        self.leaf, self.kind = leaf, kind
        self.memo: dict[int, Any] = {}
        self.fill: list[tuple[Any, Any, type]] = []

    def __call__(self, value: Any) -> Any:
        result = self.value(value)
        while self.fill:
            original, copy, base = self.fill.pop()
            if base is dict:
                for key, item in dict.items(original):
                    copy[self.value(key)] = self.value(item)
            elif base is list:
                copy.extend(self.value(item) for item in list.__iter__(original))
            else:
                copy.update(self.value(item) for item in set.__iter__(original))
        return result

    def value(self, value: Any) -> Any:
        """The copy of ``value``; a mutable container comes back empty and is filled
        later, an immutable one is built bottom up from its items' copies."""
        base = self.kind(value)
        if base is None:
            return self.leaf(value)
        made = self.memo.get(id(value))
        if made is not None:
            return made
        if base in _MUTABLE:
            made = self.memo[id(value)] = base()
            self.fill.append((value, made, base))
            return made
        return self._immutable(value, base)

    def _immutable(self, root: Any, root_base: type) -> Any:
        """Tuples and frozensets, nested to any depth, without recursion."""
        stack: list[tuple[Any, type, Any, list[Any]]] = [
            (root, root_base, _iterate(root, root_base), [])]
        while stack:
            node, base, items, done = stack[-1]
            for item in items:
                kind = self.kind(item)
                if kind in _IMMUTABLE and id(item) not in self.memo:
                    stack.append((item, kind, _iterate(item, kind), []))
                    break
                done.append(self.value(item))
            else:
                stack.pop()
                if type(node) is base and all(
                        a is b for a, b in zip(done, _iterate(node, base))):
                    made = node
                else:
                    made = base(done)
                self.memo[id(node)] = made
                if stack:
                    stack[-1][3].append(made)
        return self.memo[id(root)]


def _iterate(value: Any, base: type) -> Any:
    return tuple.__iter__(value) if base is tuple else frozenset.__iter__(value)


# ------------------------------------------------------------------ the doors


def admit(value: Any, limits: Limits, what: str = "value",
          own: tuple[type, ...] = ()) -> Any:
    """``value`` as a program may hold it (see the module docstring). ``own`` lists the
    types of lmq objects that pass as they are (the standard library's model choices).
    At most ``10 x limits.collection_size`` items are walked."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return check_size(value, limits, what)
    budget = [10 * limits.collection_size]

    def container(item: Any) -> type | None:
        if not issubclass(type(item), own):
            for base in (list, dict, tuple, set, frozenset):
                if issubclass(type(item), base):
                    budget[0] -= base.__len__(item) + 1
                    if budget[0] < 0:
                        raise LmqLimitError(f"{what} has more than "
                                            f"{10 * limits.collection_size:,} items and "
                                            "sub-items (limits.collection_size)")
                    check_size(range(base.__len__(item)), limits, what)
                    return base
        return None

    def leaf(item: Any) -> Any:
        kind = type(item)
        if kind in SCALARS or kind in INERT or issubclass(kind, own):
            return check_size(item, limits, what)
        for base, exact in _EXACT.items():
            if issubclass(kind, base) and kind is not bool:
                return check_size(exact(item), limits, what)
        return Opaque(item)

    return _Walk(leaf, container)(value)


def hand_out(value: Any) -> Any:
    """``value`` as the host gets it: handles unwrapped, containers copied."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is Opaque:
        return value.value
    return _Walk(lambda item: item.value if type(item) is Opaque else item,
                 _exact_container)(value)


def copy_state(values: Any, walk: _Walk | None = None) -> Any:
    """A copy of ``values`` for a fork: every list, dict and set, also inside tuples, and
    every dict view (made a view of the copied dict). Pass the same ``walk``
    (:func:`state_copier`) for all of one program's values, so a container reachable
    from two of them is copied once."""
    return (walk or state_copier())(values)


def state_copier() -> _Walk:
    walk: _Walk

    def leaf(item: Any) -> Any:
        kind = type(item)
        if kind in DICT_VIEWS:  # a live view of a dict: a view of that dict's copy
            (mapping,) = gc.get_referents(item)
            view = {DICT_VIEWS[0]: dict.keys, DICT_VIEWS[1]: dict.values,
                    DICT_VIEWS[2]: dict.items}[kind]
            return view(walk.value(mapping))
        return item

    walk = _Walk(leaf, _exact_container)
    return walk


def _exact_container(item: Any) -> type | None:
    kind = type(item)
    return kind if kind in (list, dict, tuple, set, frozenset) else None
