"""Escape attempts: every one is rejected at compile time or stopped at run time with an
``LmqError`` that names the rule it broke; none reaches the filesystem, the network or the
host's globals.

Programs run in the interpreter alone (no model): each hole is filled by the test.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from programs import interpret

from lmq.checks import compile_source
from lmq.errors import LmqError, LmqRuntimeError, LmqSandboxError
from lmq.limits import Limits

SANDBOX = "(sandbox)"


run = interpret


def refused(source: str, *, params=None, tools=None, kind=LmqError) -> LmqError:
    with pytest.raises(kind) as info:
        run(source, params, tools)
    error = info.value
    assert str(error)  # renders without failing
    return error


class Canary:
    """Host code a program must never reach: any call trips it."""

    def __init__(self) -> None:
        self.tripped: list[str] = []

    def trip(self, why: str = "called") -> str:
        self.tripped.append(why)
        return "tripped"


# ------------------------------------------------------------------ compile time


@pytest.mark.parametrize("source, rule", [
    ("import os\n", "'import os' is not allowed in lmq programs (sandbox)"),
    ("import lmq.stdlib.labels\n", "is not allowed in lmq programs (sandbox)"),
    ("from os import system\n", "importing from 'os' is not allowed in lmq programs (sandbox)"),
    ("from subprocess import run\n", "importing from 'subprocess' is not allowed"),
    ("from lmq import runtime\n", "importing from 'lmq' is not allowed"),
    ("from lmq.runtime.backends.hf_models import load_model\n", "importing from 'lmq.runtime.backends.hf_models'"),
    ("from lmq.stdlib import labels\n", "importing from 'lmq.stdlib' is not allowed"),
    ("from lmq.stdlib.labels.x import y\n", "importing from 'lmq.stdlib.labels.x'"),
    ("from lmq.stdlib.labels import _private\n", "'_private' is not available"),
    ("from lmq.stdlib.labels import classify as _c\n", "'_c' is not available"),
])
def test_imports_outside_stdlib_are_compile_errors(source, rule):
    with pytest.raises(LmqSandboxError) as info:
        compile_source(source)
    assert rule in info.value.message
    assert SANDBOX in info.value.message
    assert info.value.line == 1


@pytest.mark.parametrize("expression", [
    "''.__class__", "[].__class__.__base__", "().__class__.__bases__[0].__subclasses__()",
    "len.__self__", "print.__globals__", "x.__dict__", "x._private", "x.__getattribute__",
    "'a'.__mul__(3)", "x.__reduce_ex__(2)",
])
def test_private_attributes_are_compile_errors(expression):
    with pytest.raises(LmqSandboxError) as info:
        compile_source(f"y = {expression}\n")
    assert "is not available in lmq programs (sandbox)" in info.value.message


@pytest.mark.parametrize("name", [
    "__import__", "__builtins__", "_", "__name__", "__loader__", "__spec__", "_secret",
])
def test_private_names_are_compile_errors(name):
    with pytest.raises(LmqSandboxError) as info:
        compile_source(f"y = {name}\n")
    assert f"'{name}' is not available in lmq programs (sandbox)" in info.value.message


@pytest.mark.parametrize("name", [
    "open", "eval", "exec", "compile", "getattr", "setattr", "delattr", "hasattr", "type",
    "vars", "globals", "locals", "dir", "input", "breakpoint", "help", "exit", "quit",
    "memoryview", "object", "super", "classmethod", "staticmethod", "property", "id",
    "iter", "next", "map", "filter", "bytes", "bytearray", "frozenset", "callable", "hash",
    "issubclass", "format", "chr", "ord",
])
def test_builtins_outside_the_list_are_compile_errors(name):
    for source in (f"y = {name}\n", f"y = {name}('x')\n", f'"{{{name}}}"\n'):
        with pytest.raises(LmqSandboxError) as info:
            compile_source(source)
        assert f"'{name}' is not available in lmq programs (sandbox)" in info.value.message


@pytest.mark.parametrize("source", [
    'y = "{}".format(1)\n', 'y = "{a}".format_map({"a": 1})\n', 'f = "x".format\n',
    '"{\'{0.__class__}\'.format(1)}"\n',
])
def test_str_format_is_a_compile_error(source):
    with pytest.raises(LmqSandboxError) as info:
        compile_source(source)
    assert "is not available in lmq programs (sandbox)" in info.value.message


@pytest.mark.parametrize("source, rule", [
    ('"{x.__class__}"\n', "'__class__' is not available"),
    ('"{x.__class__.__mro__}"\n', "is not available"),
    ("y = f'{x.__init__.__globals__}'\n", "is not available"),
    ('"[A]" where A in [x.__class__.__name__]\n', "'__name__' is not available"),
    ('"{x!r}"\n', "conversions such as '!r' are not available"),
    ('"{x:{y}}"\n', "invalid interpolation"),
    ('"[@__import__ A]"\n', "is not available"),
    ('"[A: __import__]"\n', "is not available"),
    ('query _q():\n    "[A]"\n', "'_q' is not available"),
    ('query q(_p):\n    "[A]"\n', "'_p' is not available"),
    ('"[_A]"\n', "'_A' is not available"),
    ('for _i in range(3):\n    pass\n', "'_i' is not available"),
    ('y = [_z for _z in range(3)]\n', "'_z' is not available"),
])
def test_interpolation_and_hole_tricks_are_compile_errors(source, rule):
    with pytest.raises(LmqError) as info:
        compile_source(source)
    assert rule in info.value.message


def test_attribute_assignment_is_a_compile_error():
    with pytest.raises(LmqError) as info:
        compile_source("x.attr = 1\n")
    assert "not allowed" in info.value.message


# ------------------------------------------------------------------ run time


def test_subclass_methods_of_basic_values_are_unreachable(tmp_path):
    """numpy.float64 is a float: its ``tofile``/``dump`` would write files. It enters the
    program as a plain float."""
    target = tmp_path / "pwned"
    for method in ("tofile", "dump"):
        # through a variable: `t.tofile` of a parameter is already a compile error
        error = refused(f'v = t\ny = v.{method}("{target}")\n',
                        params={"t": np.float64(1.5)}, kind=LmqSandboxError)
        assert f"'float' object has no attribute '{method}'" in error.message
    assert not target.exists()
    # the float methods themselves still work, on the value
    state = run('"{t.is_integer()} {t.hex()} {t.real}"\n', params={"t": np.float64(2.0)})
    assert state.prompt == "True 0x1.0000000000000p+1 2.0"


def test_host_str_subclass_keeps_only_str_methods():
    canary = Canary()

    class Trap(str):
        def run(self):
            return canary.trip("run")

        def upper(self):  # an override must not run either
            return canary.trip("upper")

    for source in ('v = s\ny = v.run()\n', 'v = s\nf = v.run\n', 'v = s\n"{v.run}"\n',
                   'y = [s][0].run()\n'):
        error = refused(source, params={"s": Trap("hi")}, kind=LmqSandboxError)
        assert "'str' object has no attribute 'run'" in error.message
    state = run('"{s.upper()} {s.split(\'i\')}"\n', params={"s": Trap("hi")})
    assert state.prompt == "HI ['h', '']"
    assert canary.tripped == []


def test_tool_results_are_opaque():
    canary = Canary()

    class Handle:
        path = "/etc/passwd"

        def read(self):
            return canary.trip("read")

        def __getitem__(self, key):
            return canary.trip("getitem")

    tools = {"get": lambda: Handle(), "inspect": lambda h: type(h).__name__}
    for source, rule in [
        ("h = get()\ny = h.read()\n", "attributes of Handle objects are not reachable"),
        ("h = get()\ny = h.path\n", "attributes of Handle objects are not reachable"),
        ("h = get()\ny = h[0]\n", "Handle objects cannot be indexed"),
        ("h = get()\nfor c in h:\n    pass\n", "cannot iterate over a Handle"),
        ("h = get()\ny = [c for c in h]\n", "cannot iterate over a Handle"),
        ("h = get()\nh[0] = 1\n", "cannot assign items of a Handle"),
    ]:
        error = refused(source, tools=tools)
        assert rule in error.message, (source, error.message)
    # ...but they can be passed to tools, compared and printed
    state = run('h = get()\n"{inspect(h)} {h == h} {h is None}"\n', tools=tools)
    assert state.prompt == "Handle True False"
    assert canary.tripped == []


def test_callables_inside_tool_results_cannot_be_called():
    canary = Canary()
    tools = {"config": lambda: {"run": canary.trip, "items": [canary.trip]},
             "module": lambda: os}
    for source in ('c = config()\ny = c["run"]("ls")\n',
                   'c = config()\nf = c["items"][0]\ny = f()\n',
                   'm = module()\ny = m.system("true")\n',
                   'c = config()\ny = sorted(["a", "b"], key=c["run"])\n',
                   'c = config()\ny = max(["a", "b"], key=c["run"])\n',
                   'c = config()\nxs = ["a"]\nxs.sort(key=c["run"])\n'):
        error = refused(source, tools=tools, kind=LmqSandboxError)
        assert "not callable in lmq programs" in error.message or \
            "not reachable" in error.message, (source, error.message)
    assert canary.tripped == []


def test_values_of_tools_cannot_become_predicates():
    canary = Canary()
    tools = {"config": lambda: {"check": canary.trip}}
    error = refused('c = config()\ncheck = c["check"]\n"[A]" where check(A)\n', tools=tools,
                    kind=LmqSandboxError)
    assert "'check' is not callable in lmq programs" in error.message
    assert canary.tripped == []


def test_builtin_types_and_methods_give_no_way_out():
    for source, rule in [
        ("y = str.mro()\n", "attributes of type objects are not reachable"),
        ("y = dict.fromkeys([1])\n", "attributes of type objects are not reachable"),
        ("y = {}.fromkeys([1])\n", "is not callable in lmq programs"),
        ("y = ''.maketrans('a', 'b')\n", "is not callable in lmq programs"),
        ("y = (1).to_bytes(2, 'big')\ny.decode()\n", "attributes of bytes objects"),
        ("y = 'a'.encode()\nz = y.decode()\n", "attributes of bytes objects"),
        ("y = enumerate('ab')\nz = y.gi_frame\n", "'list' object has no attribute"),
        ("y = {}.keys()\nz = y.mapping\n", "attributes of dict_keys objects"),
        ("y = range(3)\nz = y.start\n", "attributes of range objects"),
        ("y = isinstance\nz = y.x\n", "attributes of builtin_function_or_method objects"),
    ]:
        error = refused(source, kind=LmqSandboxError)
        assert rule in error.message, (source, error.message)


def test_dict_views_are_iterable():
    state = run('d = {"a": 1, "b": 2}\nfor k, v in d.items():\n    "{k}={v} "\n'
                '"{[k for k in d.keys()]} {sum(d.values())}"\n')
    assert state.prompt == "a=1 b=2 ['a', 'b'] 3"


def test_recursion_between_queries_stops_at_the_depth_limit():
    source = ('query ping(n):\n    "[A: pong(n + 1)]"\n'
              'query pong(n):\n    "[B: ping(n + 1)]"\n'
              '"[R: ping(0)]"\n')
    with pytest.raises(LmqRuntimeError) as info:
        run(source, limits=Limits(depth=8))
    assert "nested queries are deeper than 8 (limits.depth)" in info.value.message
    assert info.value.line in (2, 4)


def test_no_attempt_touches_the_host(tmp_path, monkeypatch):
    """A batch of attempts in a scratch directory: nothing is written, the host module's
    globals are untouched."""
    monkeypatch.chdir(tmp_path)
    before = dict(globals())
    attempts = [
        'y = t.tofile("pwned")\n', 'import os\n', 'y = open("pwned", "w")\n',
        'y = "".__class__.__base__.__subclasses__()\n', 'y = t.dump("pwned")\n',
        'y = globals()["os"]\n', 'y = vars(t)\n', 'y = getattr(t, "tofile")("pwned")\n',
    ]
    for source in attempts:
        with pytest.raises(LmqError):
            run(source, params={"t": np.float64(1.0)})
    assert list(tmp_path.iterdir()) == []
    assert set(globals()) == set(before)
