"""The Python modules a program may import, as lmq-owned subsets (LANGUAGE.md section 3).

``import re``, ``import json``, ``import math`` (and ``from re import match`` …) give the
namespaces built here, never the host's modules: only the functions in :data:`EXPORTS`,
each running under the program's limits. ``typing`` and ``dataclasses`` give markers for
annotations and ``@dataclass``; ``lmql`` gives LMQL's ``lmql.model(...)``.

What bounds each:

* ``re``: patterns run on the ``regex`` engine (``re``'s syntax and semantics); every
  match found costs a step and results are size-checked as they grow (``sub`` builds its
  result match by match). A backtracking match can take exponential time inside one call,
  which no step count sees, so each call also has a last-resort wall-clock bound
  (:data:`REGEX_SECONDS`), far above what a match of a bounded text needs, so that whether
  a program runs does not depend on how busy the machine is.
* ``json``: ``loads`` results and ``dumps`` inputs are measured like any value written
  out (``limits.collection_size``, ``limits.nesting``); records dump as objects.
* ``math``: integer functions whose result could pass ``limits.int_digits``
  (``factorial``, ``comb``, ``perm``, ``prod``) are refused before they run.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import regex

from lmq import ir
from lmq.errors import LmqLimitError, LmqRuntimeError
from lmq.limits import Limits
from lmq.runtime.interpreter import sizes
from lmq.runtime.interpreter.namespaces import Namespace, Native

REGEX_SECONDS = 10.0  # last-resort wall-clock bound of one regular-expression call
PATTERN_SIZE = 10_000  # characters of a pattern
LMQL_MODEL_NAMES = {"random": "tiny-random"}  # LMQL's model names with an lmq twin
MATH_FLOATS = (
    "sqrt exp expm1 log log2 log10 log1p sin cos tan asin acos atan atan2 sinh cosh tanh "
    "asinh acosh atanh degrees radians hypot fabs floor ceil trunc copysign fmod "
    "remainder isclose isfinite isinf isnan gcd isqrt erf erfc gamma lgamma pow ldexp "
    "frexp modf fsum dist").split()
MATH_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf,
                  "nan": math.nan}
RE_FLAGS = {"I": regex.I, "IGNORECASE": regex.I, "M": regex.M, "MULTILINE": regex.M,
            "S": regex.S, "DOTALL": regex.S, "X": regex.X, "VERBOSE": regex.X,
            "A": regex.A, "ASCII": regex.A}
RE_FUNCTIONS = ("compile", "match", "fullmatch", "search", "findall", "finditer", "sub",
                "subn", "split", "escape")
TYPING_NAMES = ("Any", "List", "Dict", "Optional", "Union", "Tuple", "Set", "Callable")
EXPORTS: dict[str, frozenset[str]] = {
    "re": frozenset((*RE_FUNCTIONS, *RE_FLAGS)),
    "json": frozenset(("loads", "dumps")),
    "math": frozenset((*MATH_FLOATS, *MATH_CONSTANTS, "factorial", "comb", "perm", "prod")),
    "typing": frozenset(TYPING_NAMES),
    "dataclasses": frozenset(("dataclass",)),
    "lmql": frozenset(("model",)),
}


class Marker(Namespace):
    """A name that only means something where lmq reads it statically (an annotation,
    ``@dataclass``); as a value it is opaque."""

    kind = "marker"

    def __init__(self, name: str) -> None:
        super().__init__(name, {})


def module(name: str, limits: Limits, tick: Callable[[], None]) -> Namespace:
    """The namespace ``import name`` binds (``name`` is a key of :data:`EXPORTS`)."""
    if name == "re":
        return _Re(limits, tick).namespace()
    if name == "json":
        return _json(limits)
    if name == "math":
        return _math(limits)
    if name == "lmql":
        return Namespace("lmql", {"model": Native("lmql.model", lmql_model)})
    return Namespace(name, {item: Marker(f"{name}.{item}") for item in EXPORTS[name]})


def lmql_model(name: Any, *args: Any, **options: Any) -> str:
    """LMQL's ``lmql.model("name", ...)``: the model's name, through lmq's names (the
    options are LMQL's backend settings; lmq's model configuration lives in lmq.toml)."""
    if not isinstance(name, str):
        raise LmqRuntimeError(f"lmql.model takes a model name, not {type(name).__name__}")
    return LMQL_MODEL_NAMES.get(name, name)


def clause_model(expr: ir.Expr | None) -> str | None:
    """The model a program's ``from`` clause names without running anything: a string,
    or LMQL's ``lmql.model("name", ...)``; None for anything else."""
    if isinstance(expr, ir.Const) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ir.Call) and isinstance(expr.func, ir.Attribute) and \
            expr.func.attr == "model" and isinstance(expr.func.value, ir.Name) and \
            expr.func.value.id == "lmql" and expr.args and \
            isinstance(expr.args[0], ir.Const) and isinstance(expr.args[0].value, str):
        return lmql_model(expr.args[0].value)
    return None


# ------------------------------------------------------------------------ re


_COMPILED = type(regex.compile(""))


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str, flags: int) -> Any:
    try:
        return regex.compile(pattern, flags | regex.VERSION0)
    except regex.error as error:
        raise LmqRuntimeError(f"invalid regular expression {pattern!r}: {error}") from None


class _Re:
    """``re`` over the ``regex`` engine, each call bounded (see the module docstring)."""

    def __init__(self, limits: Limits, tick: Callable[[], None]) -> None:
        self.limits = limits
        self.tick = tick

    def namespace(self) -> Namespace:
        functions = {name: Native(f"re.{name}", getattr(self, name)) for name in RE_FUNCTIONS}
        return Namespace("re", {**functions, **RE_FLAGS})

    def _pattern(self, pattern: Any, flags: int = 0) -> Any:
        if isinstance(pattern, _COMPILED):  # a method of a compiled pattern
            return pattern
        if isinstance(pattern, Namespace) and pattern.kind == "pattern":
            return pattern.attributes["_compiled"]
        if not isinstance(pattern, str) or not isinstance(flags, int):
            raise LmqRuntimeError("a regular expression is a string (and flags an int)")
        if len(pattern) > PATTERN_SIZE:
            raise LmqLimitError(f"the regular expression has more than {PATTERN_SIZE:,} "
                                "characters")
        return _compiled(pattern, flags)

    def _run(self, call: Callable[[], Any], pattern: Any) -> Any:
        try:
            return call()
        except TimeoutError:
            raise LmqLimitError(f"the regular expression {pattern.pattern!r} took longer "
                                f"than {REGEX_SECONDS} s on its text (it backtracks "
                                "exponentially; make its repetitions unambiguous)") from None

    def _matches(self, pattern: Any, string: str, flags: int = 0) -> Iterable[Any]:
        compiled = self._pattern(pattern, flags)
        found = self._run(lambda: compiled.finditer(_text(string), timeout=REGEX_SECONDS),
                          compiled)
        while True:
            item = self._run(lambda: next(found, None), compiled)
            if item is None:
                return
            self.tick()
            yield item

    def compile(self, pattern: Any, flags: int = 0) -> Namespace:
        compiled = self._pattern(pattern, flags)
        methods = {name: Native(f"Pattern.{name}", functools.partial(getattr(self, name),
                                                                      compiled))
                   for name in ("match", "fullmatch", "search", "findall", "finditer",
                                "sub", "subn", "split")}
        space = Namespace(compiled.pattern, {**methods, "pattern": compiled.pattern,
                                             "_compiled": compiled})
        space.kind = "pattern"
        return space

    def _one(self, method: str, pattern: Any, string: Any, flags: int) -> Namespace | None:
        compiled = self._pattern(pattern, flags)
        self.tick()
        found = self._run(lambda: getattr(compiled, method)(_text(string),
                                                            timeout=REGEX_SECONDS), compiled)
        return None if found is None else _match(found)

    def match(self, pattern: Any, string: Any, flags: int = 0) -> Namespace | None:
        return self._one("match", pattern, string, flags)

    def fullmatch(self, pattern: Any, string: Any, flags: int = 0) -> Namespace | None:
        return self._one("fullmatch", pattern, string, flags)

    def search(self, pattern: Any, string: Any, flags: int = 0) -> Namespace | None:
        return self._one("search", pattern, string, flags)

    def finditer(self, pattern: Any, string: Any, flags: int = 0) -> list[Namespace]:
        return self._collect(_match(m) for m in self._matches(pattern, string, flags))

    def findall(self, pattern: Any, string: Any, flags: int = 0) -> list[Any]:
        def value(found: Any) -> Any:
            groups = found.groups()
            if not groups:
                return found.group()
            return groups[0] if len(groups) == 1 else groups
        return self._collect(value(m) for m in self._matches(pattern, string, flags))

    def split(self, pattern: Any, string: Any, maxsplit: int = 0,
              flags: int = 0) -> list[Any]:
        text, position = _text(string), 0
        parts: list[Any] = []
        for count, found in enumerate(self._matches(pattern, text, flags)):
            if maxsplit and count >= maxsplit:
                break
            parts.extend((text[position:found.start()], *found.groups()))
            position = found.end()
            sizes.check_size(parts, self.limits, "the result of re.split")
        parts.append(text[position:])
        return parts

    def subn(self, pattern: Any, repl: Any, string: Any, count: int = 0,
             flags: int = 0) -> tuple[str, int]:
        if not isinstance(repl, str):
            raise LmqRuntimeError("re.sub takes a replacement string (functions are not "
                                  "available)")
        text, size, position, done = _text(string), 0, 0, 0
        pieces: list[str] = []
        for found in self._matches(pattern, text, flags):
            if count and done >= count:
                break
            piece = text[position:found.start()] + found.expand(repl)
            size += len(piece)
            if size > self.limits.string_size:
                raise LmqLimitError("the result of re.sub would pass the string limit "
                                    f"{self.limits.string_size:,} (limits.string_size)")
            pieces.append(piece)
            position, done = found.end(), done + 1
        pieces.append(text[position:])
        return sizes.check_size("".join(pieces), self.limits, "the result of re.sub"), done

    def sub(self, pattern: Any, repl: Any, string: Any, count: int = 0,
            flags: int = 0) -> str:
        return self.subn(pattern, repl, string, count, flags)[0]

    def escape(self, pattern: Any) -> str:
        return sizes.check_size(regex.escape(_text(pattern)), self.limits, "re.escape")

    def _collect(self, items: Iterable[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            out.append(item)
            if len(out) > self.limits.collection_size:
                sizes.check_size(out, self.limits, "the list of matches")
        return out


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise LmqRuntimeError(f"a regular expression searches a string, not "
                              f"{type(value).__name__}")
    return value


def _match(found: Any) -> Namespace:
    """A match as a namespace with ``re.Match``'s reading methods."""
    methods = {name: Native(f"Match.{name}", getattr(found, name))
               for name in ("group", "groups", "groupdict", "start", "end", "span")}
    space = Namespace(found.group(), {**methods, "string": found.string,
                                      "lastindex": found.lastindex})
    space.kind = "match"
    return space


# ------------------------------------------------------------------------ json


def _json(limits: Limits) -> Namespace:
    def loads(text: Any) -> Any:
        if not isinstance(text, (str, bytes)):
            raise LmqRuntimeError(f"json.loads takes a string, not {type(text).__name__}")
        try:
            value = json.loads(text)
        except RecursionError:
            raise LmqLimitError("the JSON text is nested too deeply") from None
        except ValueError as error:
            raise LmqRuntimeError(f"json.loads: {error}") from None
        sizes.check_extent(value, limits, "the value of json.loads")
        return value

    def dumps(value: Any, *, indent: int | str | None = None, sort_keys: bool = False,
              ensure_ascii: bool = True, separators: Any = None) -> str:
        sizes.check_extent(value, limits, "the value of json.dumps")
        if isinstance(indent, int) and indent > 64:
            raise LmqLimitError("json.dumps indent is at most 64")
        try:
            text = json.dumps(value, indent=indent, sort_keys=sort_keys,
                              ensure_ascii=ensure_ascii, separators=separators,
                              default=_record_fields)
        except (TypeError, ValueError) as error:
            raise LmqRuntimeError(f"json.dumps: {error}") from None
        return sizes.check_size(text, limits, "the result of json.dumps")

    return Namespace("json", {"loads": Native("json.loads", loads),
                              "dumps": Native("json.dumps", dumps)})


def _record_fields(value: Any) -> Any:
    fields = getattr(value, "as_dict", None)
    if fields is None:
        raise TypeError(f"{type(value).__name__} values are not JSON data")
    return fields()


# ------------------------------------------------------------------------ math


def _math(limits: Limits) -> Namespace:
    digits = limits.int_digits

    def bounded(name: str, log10: float) -> None:
        if log10 > digits:
            raise LmqLimitError(f"math.{name} would make an integer of about {log10:,.0f} "
                                f"digits (limits.int_digits is {digits:,})")

    def integer(value: Any, name: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise LmqRuntimeError(f"math.{name} takes non-negative integers")
        return value

    def factorial(n: Any) -> int:
        bounded("factorial", math.lgamma(integer(n, "factorial") + 1) / math.log(10))
        return math.factorial(n)

    def comb(n: Any, k: Any) -> int:
        n, k = integer(n, "comb"), integer(k, "comb")
        if k <= n:
            bounded("comb", (math.lgamma(n + 1) - math.lgamma(k + 1)
                             - math.lgamma(n - k + 1)) / math.log(10))
        return math.comb(n, k)

    def perm(n: Any, k: Any = None) -> int:
        n = integer(n, "perm")
        k = n if k is None else integer(k, "perm")
        if k <= n:
            bounded("perm", (math.lgamma(n + 1) - math.lgamma(n - k + 1)) / math.log(10))
        return math.perm(n, k)

    def prod(values: Any, *, start: Any = 1) -> Any:
        items = list(values) if not isinstance(values, (list, tuple)) else values
        sizes.check_size(items, limits, "the argument of math.prod")
        bits = sum(abs(v).bit_length() for v in (*items, start)
                   if isinstance(v, int) and not isinstance(v, bool))
        bounded("prod", bits / 3.33)
        return math.prod(items, start=start)

    table: dict[str, Any] = {name: Native(f"math.{name}", getattr(math, name))
                             for name in MATH_FLOATS if hasattr(math, name)}
    table.update({name: Native(f"math.{name}", function) for name, function in (
        ("factorial", factorial), ("comb", comb), ("perm", perm), ("prod", prod))})
    return Namespace("math", {**table, **MATH_CONSTANTS})
