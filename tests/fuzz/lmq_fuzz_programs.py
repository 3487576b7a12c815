"""Hypothesis strategies for lmq programs, shared by ``tests/fuzz`` and ``bench/fuzz.py``.

:func:`programs` draws a random abstract program of the lmq subset (statements, prompt
strings with holes, interpolations and tags, constraints, nested queries, imports, clauses)
and prints it as source; most are valid, some reach outside the sandbox or misuse names on
purpose. :func:`mutants` applies random character edits to a valid program. :func:`values`
draws parameter values, including hostile ones (huge, deep, subclasses, opaque objects).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from hypothesis import strategies as st

NAMES = ["x", "y", "n", "s", "xs", "d", "k", "v", "i", "j", "p", "q", "t"]
HOLES = ["A", "B", "C", "R"]
PARAMS = ["p", "q", "t"]
BUILTINS = ["len", "str", "int", "float", "bool", "list", "dict", "tuple", "set", "range",
            "enumerate", "zip", "min", "max", "sum", "sorted", "reversed", "abs", "round",
            "any", "all", "print", "repr", "isinstance"]
FORBIDDEN = ["open", "eval", "getattr", "type", "vars", "__import__", "globals", "_x"]
TOOLS = ["tool", "fetch", "upper"]
METHODS = ["upper", "lower", "strip", "split", "join", "replace", "startswith", "count",
           "index", "append", "extend", "pop", "get", "keys", "values", "items", "center",
           "zfill", "find", "to_bytes", "tofile", "sort", "copy"] * 3 + ["format", "__class__"]
BINOPS = ["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^", "@"]
COMPARE = ["<", "<=", "==", "!=", ">", ">=", "in", "not in", "is", "is not"]
TEXT = st.text(st.sampled_from(list("ab xyz019:,.\\\"'{}[]\n\t\u00e9\u4e2d\U0001f600")),
               max_size=8)


def _string(text: str, quote: str = "'") -> str:
    body = (text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")
            .replace("\t", "\\t"))
    return quote + body + quote


# ------------------------------------------------------------------ expressions


def _atom() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-5, 5).map(str),
        st.sampled_from(["10 ** 6", "2 ** 64", "10 ** 100", "0", "1.5", "1e308", "-0.0"]),
        TEXT.map(_string),
        st.sampled_from(["True", "False", "None"]),
        st.sampled_from(NAMES + PARAMS),
        st.sampled_from(BUILTINS + TOOLS),
        st.sampled_from(NAMES * 4 + FORBIDDEN),  # now and then a name outside the sandbox
    )


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    seq = st.lists(inner, max_size=3).map(", ".join)
    return st.one_of(
        st.tuples(inner, st.sampled_from(BINOPS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "not ", "~", "+"]), inner).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(inner, st.sampled_from(COMPARE), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        seq.map(lambda s: f"[{s}]"), seq.map(lambda s: f"({s},)" if s else "()"),
        seq.map(lambda s: f"{{{s}}}" if s else "{1}"),
        st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"),
        st.tuples(inner, st.sampled_from(NAMES), inner, inner).map(
            lambda t: f"[{t[0]} for {t[1]} in {t[2]} if {t[3]}]"),
        st.tuples(inner, st.sampled_from(NAMES), inner).map(
            lambda t: f"{{{t[1]}: {t[0]} for {t[1]} in {t[2]}}}"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, inner, inner).map(lambda t: f"{t[0]}[{t[1]}:{t[2]}]"),
        st.tuples(st.sampled_from(BUILTINS * 2 + TOOLS + FORBIDDEN[:2]), seq).map(
            lambda t: f"{t[0]}({t[1]})"),
        st.tuples(inner, st.sampled_from(METHODS), seq).map(lambda t: f"{t[0]}.{t[1]}({t[2]})"),
        st.tuples(inner, st.sampled_from(METHODS)).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(inner, st.sampled_from(["", ">10", ".3f", ",", "x", "^5", "%"])).map(
            lambda t: f'f"{{{t[0]}{":" + t[1] if t[1] else ""}}}"'),
        st.tuples(inner, inner).map(lambda t: f"sorted({t[0]}, key={t[1]})"),
    )


@functools.lru_cache(maxsize=None)
def expressions(depth: int = 3) -> st.SearchStrategy[str]:
    """Expressions of up to ``depth * 3`` leaves (strategies are built once: building
    them is what takes hypothesis time)."""
    return st.recursive(_atom(), _compound, max_leaves=depth * 3)


# ------------------------------------------------------------------ prompts and constraints


def _constraint(holes: list[str]) -> st.SearchStrategy[str]:
    return _constraint_over(tuple(sorted(set(holes))))


@functools.lru_cache(maxsize=None)
def _constraint_over(holes: tuple[str, ...]) -> st.SearchStrategy[str]:
    hole = st.sampled_from(holes)
    small = expressions(1)
    atom = st.one_of(
        st.tuples(hole, st.sampled_from(["<", "<=", "==", ">", "!="]), st.integers(-1, 6)).map(
            lambda t: f"len(TOKENS({t[0]})) {t[1]} {t[2]}"),
        st.tuples(hole, st.integers(0, 9)).map(lambda t: f"len({t[0]}) < {t[1]}"),
        st.tuples(hole, st.lists(TEXT, max_size=3)).map(
            lambda t: f"{t[0]} in [{', '.join(_string(x, chr(34)) for x in t[1])}]"),
        st.tuples(hole, TEXT).map(lambda t: f"STOPS_AT({t[0]}, {_string(t[1], chr(34))})"),
        st.tuples(hole, TEXT).map(lambda t: f"STARTS_WITH({t[0]}, {_string(t[1], chr(34))})"),
        st.tuples(st.sampled_from(["INT", "FLOAT"]), hole).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(hole, st.sampled_from(["[a-z]+", "[0-9]{1,3}", "(a|b)*", "[", "x{2,1}",
                                         "(?=a)", "\\d+"])).map(
            lambda t: f'REGEX({t[0]}, r"{t[1]}")'),
        st.tuples(hole, small).map(lambda t: f"{t[0]} == {t[1]}"),
        st.tuples(st.sampled_from(["check", "tool"]), hole).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(hole, st.sampled_from(PARAMS)).map(lambda t: f"REGEX({t[0]}, {t[1]})"),
        st.tuples(hole, st.sampled_from(PARAMS)).map(lambda t: f"JSON({t[0]}, {t[1]})"),
        st.sampled_from(["x < 3", "Z in ['a']", "len(TOKENS(Z)) < 2"]),  # not holes
    )
    return st.recursive(atom, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda c: f"not {c}")), max_leaves=4)


def _prompt_part(queries: list[str]) -> st.SearchStrategy[str]:
    return _prompt_part_for(tuple(queries))


@functools.lru_cache(maxsize=None)
def _prompt_part_for(queries: tuple[str, ...]) -> st.SearchStrategy[str]:
    hole = st.sampled_from(HOLES)
    kinds = st.sampled_from(["", ": int", ": float", ": bool", ": r'[a-z]{1,3}'", ": r'['"]
                            + [f": {name}()" for name in queries]
                            + [f": {name}(x)" for name in queries] + [": nope()", ": len"])
    return st.one_of(
        TEXT.map(lambda t: t.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                 .replace("[", "[[").replace("]", "]]").replace("{", "{{").replace("}", "}}")),
        st.tuples(st.sampled_from(["", "", "", "@upper ", "@tool ", "@str.upper ", "@_x "]), hole,
                  kinds).map(lambda t: f"[{t[0]}{t[1]}{t[2]}]"),
        st.tuples(expressions(1).map(lambda e: e.replace('"', "'")),
                  st.sampled_from(["", ":>4", ":.2f", ":x", ":>99999999999"])).map(
            lambda t: f"{{{t[0]}{t[1]}}}"),
        st.sampled_from(["{:system}", "{:user}", "{:assistant}", "{:instruction}",
                         "{:context}", "\\n", "\\u00e9", "[[", "]]"] * 2 + ["{:bogus}"]),
    )


@st.composite
def _prompt(draw: Any, queries: list[str], holes_here: list[str]) -> str:
    parts = draw(st.lists(_prompt_part(queries), min_size=1, max_size=4))
    text = '"' + "".join(parts) + '"'
    holes = [h for h in HOLES if f"[{h}" in text or f" {h}]" in text or f" {h}:" in text]
    holes_here.extend(holes)
    if holes and draw(st.booleans()):
        text += " where " + draw(_constraint(holes))
    return text


# ------------------------------------------------------------------ statements


@st.composite
def _block(draw: Any, depth: int, queries: list[str], holes: list[str],
           in_loop: bool = False, in_query: bool = False) -> list[str]:
    count = draw(st.integers(1, 3))
    lines: list[str] = []
    for _ in range(count):
        lines.extend(draw(_statement(depth, queries, holes, in_loop, in_query)))
    return lines


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line for line in lines]


@st.composite
def _statement(draw: Any, depth: int, queries: list[str], holes: list[str],
               in_loop: bool, in_query: bool) -> list[str]:
    expr = expressions(2)
    name = st.sampled_from(NAMES)
    choices = ["prompt", "prompt", "assign", "augassign", "expr", "pass"]
    if depth > 0:
        choices += ["if", "for", "while"]
    if in_loop:
        choices += ["break", "continue"]
    if in_query:
        choices += ["return"]
    kind = draw(st.sampled_from(choices))
    if kind == "prompt":
        return [draw(_prompt(queries, holes))]
    if kind == "assign":
        target = draw(st.one_of(name, st.tuples(name, name).map(", ".join),
                                st.tuples(name, expr).map(lambda t: f"{t[0]}[{t[1]}]")))
        return [f"{target} = {draw(expr)}"]
    if kind == "augassign":
        return [f"{draw(name)} {draw(st.sampled_from(BINOPS))}= {draw(expr)}"]
    if kind == "expr":
        return [draw(expr)]
    if kind in ("pass", "break", "continue"):
        return [kind]
    if kind == "return":
        return ["return " + draw(expr)]
    body = draw(_block(depth - 1, queries, holes, in_loop or kind != "if", in_query))
    if kind == "if":
        lines = [f"if {draw(expr)}:", *_indent(body)]
        if draw(st.booleans()):
            lines += ["else:", *_indent(draw(_block(depth - 1, queries, holes, in_loop,
                                                    in_query)))]
        return lines
    if kind == "for":
        return [f"for {draw(name)} in {draw(expr)}:", *_indent(body)]
    counter = draw(name)  # a while loop that ends (most of the time)
    return [f"{counter} = 0", f"while {counter} < {draw(st.integers(0, 4))}:",
            f"    {counter} += 1", *_indent(body)]


IMPORTS = ["from lmq.stdlib.labels import classify", "from lmq.stdlib.fusion import fuse",
           "from lmq.stdlib.nope import x", "import os", "from os import system",
           "from lmq.stdlib.labels import _private"]


@st.composite
def programs(draw: Any) -> str:
    """A random program, printed as source."""
    lines: list[str] = []
    queries: list[str] = []
    if draw(st.integers(0, 5)) == 0:
        lines.append(draw(st.sampled_from(IMPORTS)))
    for index in range(draw(st.integers(0, 2))):
        name = f"q{index}"
        params = draw(st.sampled_from(["", "x", "x, y"]))
        body = draw(_block(1, queries + [name], [], in_query=True))
        lines += [f"query {name}({params}):", *_indent(body)]
        queries.append(name)
    holes: list[str] = []
    body = draw(_block(2, queries, holes))
    form = draw(st.sampled_from(["modern", "modern", "standard"]))
    if form == "modern":
        lines += body
    else:
        decoder = draw(st.sampled_from(["argmax", "sample(n=2)", "beam(n=2)",
                                        "argmax(max_len=64)", "sample(temperature=0)"] * 2
                                       + ["bogus"]))
        lines = [decoder, *_indent(lines + body)]
        if draw(st.booleans()):
            lines += ["from", '    "tiny-random"']
        if holes and draw(st.booleans()):
            lines += ["where", "    " + draw(_constraint(sorted(set(holes))))]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ mutations


EDITS = ["\n", " ", "    ", ":", "(", ")", "[", "]", "{", "}", '"', "'", '"""', "\\", "#",
         ",", ".", "=", "@", "_", "where", "from", "query", "import", "\t", "\r", "\x00",
         "\ufeff", "\ud800", "[[", "{{", "r'", "f'", "0x", "1e", "__"]


@st.composite
def mutants(draw: Any, source: str | None = None) -> str:
    """``source`` (or a random program) with a few characters inserted, deleted, swapped
    or duplicated."""
    text = source if source is not None else draw(programs())
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            text = draw(st.sampled_from(EDITS))
            continue
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "swap", "duplicate", "cut"]))
        if edit == "insert":
            text = text[:at] + draw(st.sampled_from(EDITS)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 3)):]
        elif edit == "swap" and at + 1 < len(text):
            text = text[:at] + text[at + 1] + text[at] + text[at + 2:]
        elif edit == "duplicate":
            end = min(len(text), at + draw(st.integers(1, 12)))
            text = text[:end] + text[at:end] + text[end:]
        else:
            text = text[:at]
    return text


# ------------------------------------------------------------------ parameter values


class Opaque:
    """A host object: programs may pass it around, never look inside."""

    def __repr__(self) -> str:
        return "Opaque()"


class Sub(str):
    def danger(self) -> str:  # must stay unreachable
        raise AssertionError("a str subclass method was reached")


@functools.lru_cache(maxsize=None)
def values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.integers(-10**6, 10**6), st.sampled_from([10**400, -(2**70), 0]),
        st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
        TEXT, st.sampled_from(["[a-z]+", "[", "{\"type\": \"string\"}", "x" * 200]),
        st.sampled_from([Opaque(), Sub("sub"), {"type": "integer"}, {"type": "bogus"}]),
    )
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple)), max_leaves=8)


def as_json(value: Any) -> Any:
    """``value`` if it survives a JSON round trip unchanged, else its repr (for CLI args)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)
