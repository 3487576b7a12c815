"""Every bound of LANGUAGE.md section 11 stops a program with an ``LmqLimitError`` that
names it (``limits.NAME``), quickly, before the host pays for the overrun.

Programs run in the interpreter alone (no model). Sizes are refused before the value is
built, so an attack that is stopped only after it has done its damage would run into the
generous hang guard (``HANG_GUARD``) and fail the check of the rule it names.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from lmq.checks import compile_source
from lmq.errors import LmqError, LmqLimitError, LmqParameterError
from lmq.limits import Limits
from lmq.runtime.interpreter.program import ProgramState

HANG_GUARD = 120.0  # seconds; only a hang comes near it
SMALL = Limits(string_size=200_000, collection_size=20_000, memory=40_000_000)


def run(source: str, limits: Limits | None = None, params=None, tools=None, fill="x",
        output=None) -> ProgramState:
    checked = compile_source(source, "attack.lmq")
    state = ProgramState(checked.program, params or {}, tools or {}, limits or Limits(),
                         output or (lambda text: None))
    while state.run() is not None:
        state.fill(fill)
    return state


def stopped(source: str, rule: str, limits: Limits | None = None,
            **kwargs) -> LmqLimitError:
    """Run ``source``; it must stop with an LmqLimitError naming ``rule``, with a line
    number. A run that would hang instead meets a generous ``limits.timeout`` and fails
    the rule check (no wall-clock assertions: the machines are shared)."""
    limits = limits or Limits()
    if limits.timeout is None:
        limits = dataclasses.replace(limits, timeout=HANG_GUARD)
    with pytest.raises(LmqLimitError) as info:
        run(source, limits, **kwargs)
    assert rule in info.value.message, info.value.message
    assert info.value.line is not None
    return info.value


# ------------------------------------------------------------------ steps, depth, time


@pytest.mark.parametrize("source", [
    "while True:\n    pass\n",
    "n = 0\nwhile n >= 0:\n    n += 1\n",
    "for i in range(1000):\n    for j in range(1000):\n        pass\n",
    "x = [[j for j in range(1000)] for i in range(1000)]\n",
    "x = [i for i in range(1000) for j in range(1000)]\n",
    "query q(n):\n    for i in range(n):\n        pass\n    \"[A]\"\n"
    "for k in range(100):\n    \"[R: q(1000)]\"\n",
])
def test_steps(source):
    stopped(source, "the program ran more than 5,000 steps (limits.steps)",
            Limits(steps=5_000))


def test_steps_default_is_one_million():
    assert Limits().steps == 1_000_000
    stopped("while True:\n    pass\n", "more than 1,000,000 steps (limits.steps)")


def test_nested_query_depth():
    source = 'query down(n):\n    "[A: down(n + 1)]"\n"[R: down(0)]"\n'
    error = stopped(source, "nested queries are deeper than 32 (limits.depth)")
    assert error.line == 2
    stopped(source, "deeper than 3 (limits.depth)", Limits(depth=3))
    run('query leaf():\n    "[A]"\nquery mid():\n    "[B: leaf()]"\n"[R: mid()]"\n',
        Limits(depth=2))


def test_timeout_between_statements():
    error = stopped("while True:\n    pass\n", "longer than its timeout of 0.2 s "
                    "(limits.timeout)", Limits(timeout=0.2, steps=10**9))
    assert error.line in (1, 2)


def test_timeout_inside_a_comprehension():
    stopped("x = [i for i in range(10**6) for j in range(10**6)]\n", "(limits.timeout)",
            Limits(timeout=0.2, steps=10**9, collection_size=10**6))


def test_check_deadline_for_the_decoding_loop():
    checked = compile_source('"[A]"\n')
    ProgramState(checked.program, {}, {}, Limits(timeout=3600)).check_deadline()  # not yet
    state = ProgramState(checked.program, {}, {}, Limits(timeout=0.05))
    time.sleep(0.1)
    with pytest.raises(LmqLimitError) as info:
        state.check_deadline()
    assert "(limits.timeout)" in info.value.message
    ProgramState(checked.program, {}, {}, Limits()).check_deadline()  # no timeout: no-op


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize("source, rule", [
    ('x = "a" * 10**100\n', "repeating a string would make"),
    ('x = "ab" * 6_000_000\n', "(limits.string_size)"),
    ('x = [0] * 10**100\n', "repeating a sequence would make"),
    ('x = (1, 2) * 600_000\n', "(limits.collection_size)"),
    ('x = "ab".encode() * 10**10\n', "repeating a string"),
    ('x = (0).to_bytes(10**10, "big")\n', "int.to_bytes length"),
    ('x = "%10000000000d" % 1\n', "'%' format asks for a width of 10,000,000,000"),
    ('x = "%*d" % (10**9, 1)\n', "'%' format asks for a width of 1,000,000,000"),
    ('x = "%.*f" % (10**9, 1.5)\n', "'%' format asks for a width"),
    ('x = "a".center(10**12)\n', "str.center width"),
    ('x = "a".ljust(10**8, "b")\n', "str.ljust width"),
    ('x = "a".zfill(10**9)\n', "str.zfill width"),
    ('x = ("a" * 5000).replace("a", "b" * 5000)\n', "str.replace result"),
    ('x = ("\\t" * 5000).expandtabs(5000)\n', "str.expandtabs result"),
    ('s = "a" * 10**6\nx = "".join([s] * 100)\n', "str.join would make"),
    ('x = f"{1:>99999999999}"\n', "format spec '>99999999999'"),
    ('"{1:^99999999999}"\n', "format spec '^99999999999'"),
    ('"{1.5:.99999999999f}"\n', "format spec '.99999999999f'"),
    ('x = range(10**20)\n', "range has"),
    ('x = range(2 * 10**6)\n', "(limits.collection_size)"),
    ('x = list("a" * 2 * 10**6)\n', "list() of a string"),
    ('x = 2 ** 10 ** 10\n', "integer result would exceed 10,000 digits (limits.int_digits)"),
    ('x = 1 << 10 ** 10\n', "(limits.int_digits)"),
    ('x = -1 << 10 ** 10\n', "(limits.int_digits)"),
    ('x = 10 ** 6000 * 10 ** 6000\n', "(limits.int_digits)"),
    ('x = 7\nfor i in range(100):\n    x = x * x\n', "(limits.int_digits)"),
    ('x = "ab"\nwhile True:\n    x = x + x\n', "(limits.string_size)"),
    ('x = "ab"\nwhile True:\n    x += x\n', "(limits.string_size)"),
    ('x = [1]\nwhile True:\n    x = x + x\n', "(limits.collection_size)"),
    ('x = [1]\nwhile True:\n    x.extend(x)\n', ".extend would make"),
    ('x = [1] * 1000\nwhile True:\n    x *= 2\n', "(limits.collection_size)"),
    ('xs = [[0] * 1000] * 1001\ny = sum(xs, [])\n', "sum() would make 1,001,000 items"),
    ('xs = [[0]] * 100000\ny = sum(xs, [])\n', "sum() of 100,000 sequences would copy"),
    ('x = "a" * 10**6\ny = f"{x}{x}{x}{x}{x}{x}{x}{x}{x}{x}{x}"\n', "f-string would exceed"),
])
def test_value_sizes_are_refused_before_they_are_built(source, rule):
    stopped(source, rule, Limits(steps=10**7))


@pytest.mark.parametrize("source, rule", [
    ("x = []\nwhile True:\n    x.append(1)\n", "the list grown by .append has 20,001 items"),
    ("x = [i for i in range(200) for j in range(200)]\n", "comprehension has 20,001 items"),
    ("d = {}\nfor i in range(200):\n    for j in range(200):\n        d[(i, j)] = i\n",
     "the assigned-to container has 20,001 items"),
    ("s = set()\nfor i in range(200):\n    for j in range(200):\n        s.add((i, j))\n",
     "the set grown by .add has 20,001 items"),
    ("d = {}\nd.update({i: i for i in range(15000)})\nd.update({-i: i for i in range(15000)})\n",
     ".update would make 30,000 items; the limit is 20,000"),
])
def test_collections_grown_item_by_item(source, rule):
    stopped(source, rule, SMALL)


def test_size_limits_are_configurable():
    stopped('x = "a" * 101\n', "the limit is 100 (limits.string_size)",
            Limits(string_size=100))
    stopped("x = list(range(11))\n", "(limits.collection_size)", Limits(collection_size=10))
    stopped("x = 10 ** 20\n", "exceed 5 digits (limits.int_digits)", Limits(int_digits=5))
    stopped("x = 10 ** 4 * 10 ** 4\n", "more than 5 digits (limits.int_digits)",
            Limits(int_digits=5))
    run('x = "a" * 100\ny = list(range(10))\nz = 10 ** 4\n',
        Limits(string_size=100, collection_size=10, int_digits=5))


def test_prompt_size():
    stopped('s = "a" * 100000\nfor i in range(1000):\n    "{s}"\n',
            "the prompt would grow past 10,000,000 characters (limits.string_size)")
    stopped('for i in range(100):\n    "0123456789"\n', "past 500 characters",
            Limits(string_size=500))


def test_print_output_size():
    printed: list[str] = []
    stopped('s = "a" * 1000\nwhile True:\n    print(s)\n',
            "printed more than 100,000 characters (limits.string_size)",
            Limits(string_size=100_000), output=printed.append)
    assert sum(map(len, printed)) <= 100_000


# ------------------------------------------------------------------ shared and deep values

LAUGHS = "x = ['lol']\nfor i in range(64):\n    x = [x, x]\n"
TUPLE_LAUGHS = "x = ('lol',)\nfor i in range(64):\n    x = (x, x)\n"
DEEP = "x = []\nfor i in range(100000):\n    x = [x]\n"


@pytest.mark.parametrize("tail, rule", [
    ('"{x}"\n', "interpolated value is too large"),
    ("y = str(x)\n", "the argument of str() is too large"),
    ("y = repr(x)\n", "the argument of repr() is too large"),
    ("y = f'{x}'\n", "interpolated value is too large"),
    ("print(x)\n", "printed value is too large"),
    ('y = "%s" % (x,)\n', "formatted value is too large"),
    ("return x\n", "the return value is too large"),
    ("y = x == [x[0], x[1]]\n", "the compared value"),
    ("y = x < x\n", "the compared value"),
    ("y = x in [x]\n", "the searched value"),
    ("y = sorted([x, x])\n", "the argument of sorted()"),
    ("y = max([x, x])\n", "the argument of max()"),
    ("y = [x, x].count(x)\n", "the list searched by .count"),
    ("y = [1].index(x)\n", "the argument of .index"),
    ('query q():\n    "[A]"\n    return x\n"[R: q()]"\n', "the value of query 'R' is too large"),
    ('"[@wrap A]"\n', "the value of hole 'A'"),
])
def test_a_value_built_by_sharing_is_not_walked(tail, rule):
    """2**64 leaves in 65 objects: writing, comparing, hashing or returning it would
    never end (nor would copying it item by item)."""
    wrap = {"wrap": lambda value: run_laughs()}
    stopped(LAUGHS + tail, rule, SMALL, tools=wrap)


def run_laughs():
    x: list = ["lol"]
    for _ in range(64):
        x = [x, x]
    return x


@pytest.mark.parametrize("tail, rule", [
    ("y = {x}\n", "set item"), ("y = {x: 1}\n", "dict key"), ("d = {}\nd[x] = 1\n", "dict key"),
    ("y = {1: 2}\nz = y[x]\n", "dict key"), ("y = x in {1: 2}\n", "the compared value"),
    ("y = {1}\ny.add(x)\n", "the argument of .add"), ("y = {k: 1 for k in [x]}\n", "dict key"),
    ("y = {k for k in [x]}\n", "set item"), ("y = set([x])\n", "the argument of set()"),
    ("y = {1: 2}.get(x)\n", "the argument of .get"),
])
def test_a_tuple_built_by_sharing_is_not_hashed(tail, rule):
    stopped(TUPLE_LAUGHS + tail, rule, SMALL)


@pytest.mark.parametrize("tail, rule", [
    ('"{x}"\n', "interpolated value is nested more than 100 levels deep (limits.nesting)"),
    ("return x\n", "the return value is nested more than 100 levels deep"),
    ("y = x == x[0]\n", "(limits.nesting)"),
    ("y = sorted([x])\n", "(limits.nesting)"),
])
def test_deeply_nested_values(tail, rule):
    stopped(DEEP + tail, rule, Limits(steps=10**6))


def test_nesting_is_configurable():
    stopped("x = [[[[1]]]]\ny = str(x)\n", "nested more than 3 levels deep (limits.nesting)",
            Limits(nesting=3))
    assert run("x = [[[1]]]\n\"{x}\"\n", Limits(nesting=3)).prompt == "[[[1]]]"


def test_forking_a_shared_or_deep_value_is_cheap():
    for program in (LAUGHS, DEEP, "x = []\nx.append(x)\n"):
        checked = compile_source(program + '"[A]"\n')
        state = ProgramState(checked.program, {}, {}, Limits(steps=10**6))
        assert state.run() is not None
        twin = state.fork()  # a copy walking the 2**60 shared leaves would never return
        twin.fill("a")
        state.fill("b")
        assert twin.globals.variables["x"] is not state.globals.variables["x"]
    # sharing is kept in the copy: a branch that appends to one alias sees it in the other
    checked = compile_source('a = [1]\nb = [a, a]\n"[A]"\nb[0].append(2)\n"{b}"\n')
    state = ProgramState(checked.program, {}, {}, Limits())
    state.run()
    twin = state.fork()
    twin.fill("x")
    assert twin.run() is None
    assert twin.prompt.endswith("[[1, 2], [1, 2]]")
    state.fill("y")
    state.run()
    assert state.prompt.endswith("[[1, 2], [1, 2]]")


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize("source", [
    "xs = [big + str(i) for i in range(1000)]\n",
    "xs = []\nfor i in range(1000):\n    xs.append(big + str(i))\n",
    "d = {}\nfor i in range(1000):\n    d[i] = big + str(i)\n",
    "xs = [[big + str(i)] for i in range(1000)]\n",
    "xs = {i: big + str(i) for i in range(1000)}\n",
    "xs = [f'{big}{i}' for i in range(1000)]\n",
    "xs = [big[i:] for i in range(1000)]\n",
    "xs = [big.upper() for i in range(1000)]\n",
    "xs = [list(ys) for i in range(1000)]\n",
    "xs = [" + ", ".join(f"big + '{i}'" for i in range(1000)) + "]\n",
    "y = len([" + ", ".join(f"big + '{i}'" for i in range(1000)) + "])\n",
])
def test_memory(source):
    """Every value stays within the size limits; together they would not."""
    program = "big = 'a' * 100000\nys = list(range(10000))\n" + source
    stopped(program, "the program's values take more than 40,000,000 bytes (limits.memory)",
            SMALL)


def test_memory_counts_what_is_held_not_what_was_made():
    """Temporaries that are dropped do not count: 2 GB made, little held."""
    state = run("s = 'x' * 100000\nn = sum([len(s + str(i)) for i in range(20000)])\n"
                "out = ''\nfor i in range(2000):\n    out = out + s[:100]\n\"{n} {len(out)}\"\n",
                SMALL)
    assert state.prompt == "2000088890 200000"
    # sharing one big string a million times holds a million references, not copies
    run("big = 'a' * 100000\nxs = [big for i in range(20000)]\n", SMALL)


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("field, value", [
    ("steps", 0), ("steps", -1), ("steps", 1.5), ("steps", "100"), ("steps", True),
    ("depth", 0), ("string_size", None), ("collection_size", 0), ("int_digits", -5),
    ("nesting", 0), ("memory", 0), ("timeout", 0), ("timeout", -1), ("timeout", "1"),
    ("timeout", float("nan")),
])
def test_limits_are_validated(field, value):
    with pytest.raises(LmqParameterError) as info:
        Limits(**{field: value})
    assert f"limits.{field} must be" in info.value.message


def test_limits_accept_good_values():
    Limits(steps=1, depth=1, string_size=1, collection_size=1, int_digits=1, nesting=1,
           memory=1, timeout=0.001)
    Limits(timeout=None)
    Limits(timeout=5)


# ------------------------------------------------------------------ hash flooding

P = "(2**61 - 1)"  # integers k * P all hash to 0


@pytest.mark.parametrize("source", [
    f"s = set([i * {P} for i in range(3000)])\n",
    f"s = set()\nfor i in range(3000):\n    s.add(i * {P})\n",
    f"d = {{}}\nfor i in range(3000):\n    d[i * {P}] = 1\n",
    f"d = {{i * {P}: 1 for i in range(3000)}}\n",
    f"s = {{(i * {P}, 'x') for i in range(3000)}}\n",
    f"s = set(range(0, {P} * 3000, {P}))\n",
    f"d = dict(zip([i * {P} for i in range(3000)], range(3000)))\n",
    f"d = {{}}\nd.update([(i * {P}, 1) for i in range(3000)])\n",
    f"s = set()\ns.update(range(0, {P} * 3000, {P}))\n",
    f"a = set()\nfor i in range(3000):\n    a = a | {{i * {P}}}\n",
])
def test_hash_collisions(source):
    stopped(source, "more than 256 distinct dict keys or set items share one hash value")


def test_big_keys_without_collisions_are_fine():
    state = run("d = {}\nfor i in range(1000):\n    d[2**70] = i\n"
                "s = {2**62 + i for i in range(1000)}\n\"{len(d)} {len(s)}\"\n")
    assert state.prompt == "1 1000"


# ------------------------------------------------------------------ text that is not text


def test_lone_surrogates_never_reach_the_prompt_or_the_host():
    for source, rule in [
        ('x = "\\ud800"\n"{x}"\n', "the prompt text contains the lone surrogate U+D800"),
        ('"a\\udfffb"\n', "the prompt text contains the lone surrogate U+DFFF"),
        ('print("\\ud800")\n', "printed text contains the lone surrogate"),
        ('return ["ok", "\\ud800"]\n', "the return value contains the lone surrogate"),
    ]:
        with pytest.raises(LmqError) as info:
            run(source)
        assert rule in info.value.message


def test_integers_too_long_to_write_out():
    for source in ("return 10 ** 5000\n", "return [1, 10 ** 5000]\n", '"{10 ** 5000}"\n'):
        with pytest.raises(LmqError) as info:
            run(source)
        assert "4300" in info.value.message or "4,300" in info.value.message
