"""Functions, records, assert and the lmq-owned modules in the interpreter alone (no
model: each hole is filled by the test): their meaning, and the limits they run under."""

from __future__ import annotations

import pytest

from lmq.checks import compile_source
from lmq.errors import LmqCompileError, LmqLimitError, LmqRuntimeError, LmqSyntaxError
from lmq.limits import Limits
from lmq.runtime.interpreter.program import ProgramState


def run(source: str, fill: str = "x", limits: Limits | None = None, params=None):
    checked = compile_source(source, "t.lmq")
    state = ProgramState(checked.program, params or {}, {}, limits or Limits(),
                         output=lambda text: None)
    while state.run() is not None:
        state.fill(fill)
    return state


def test_functions_defaults_closures_recursion_and_lambda() -> None:
    state = run('''
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)
def adder(k=10):
    def add(x):
        return x + k
    return add
def nothing():
    pass
return [fib(12), adder()(1), adder(k=2)(1), sorted(["bb", "a"], key=lambda s: len(s)),
        nothing()]
''')
    assert state.return_value == [144, 11, 3, ["a", "bb"], None]


def test_a_function_reads_the_programs_names_at_call_time() -> None:
    state = run('x = 1\ndef get():\n    return x\nx = 2\nreturn get()\n')
    assert state.return_value == 2


def test_recursion_is_bounded_by_limits_depth() -> None:
    source = "def down(n):\n    return down(n + 1)\nreturn down(0)\n"
    with pytest.raises(LmqLimitError, match=r"nested deeper than 5 \(limits.depth\)"):
        run(source, limits=Limits(depth=5))


def test_function_statements_count_as_steps() -> None:
    source = "def spin():\n    while True:\n        pass\nspin()\n"
    with pytest.raises(LmqLimitError, match="limits.steps"):
        run(source, limits=Limits(steps=1000))


def test_a_function_cannot_hold_a_prompt() -> None:
    with pytest.raises(LmqCompileError, match="cannot hold prompt statements"):
        compile_source('def f():\n    x = 1\n    "[A]"\n')


def test_a_functions_docstring_is_not_a_prompt() -> None:
    state = run('def f():\n    """Doc with [brackets] and {braces}."""\n    return 1\nreturn f()\n')
    assert state.return_value == 1 and state.prompt == ""


def test_records_are_values_and_hole_types() -> None:
    state = run('''
@dataclass
class Point:
    x: int
    y: int = 0
@dataclass
class Shape:
    name: str
    points: list[Point]
p = Point(1)
"[S: Shape]"
return [p.x, p.y, p == Point(1, 0), repr(p), S.points[0].y, S.name]
''', fill='{"name":"tri","points":[{"x":1,"y":2}]}')
    assert state.return_value == [1, 0, True, "Point(x=1, y=0)", 2, "tri"]
    assert state.prompt == '{"name":"tri","points":[{"x":1,"y":2}]}'


@pytest.mark.parametrize("source, message", [
    ("@dataclass\nclass P:\n    x: dict\n", "unknown field type 'dict'"),
    ("@dataclass\nclass P:\n    x: int\n    def f(self):\n        pass\n",
     "can only hold typed fields"),
    ("class P:\n    x: int\n", "classes are not available"),
    ("@dataclass\nclass P(Base):\n    x: int\n", "classes are not available"),
    ("@other\ndef f():\n    pass\n", "the decorator '@other' is not available"),
    ("async def f():\n    pass\n", "'async def' is not available"),
    ("@lmql.query\ndef q():\n    return 1\n", "must hold its program as its docstring"),
    ("x = context.interpreter\n", "'context.interpreter' is not available"),
    ("x = lmql.F('a')\n", "'lmql.F' is not available"),
    ("import os\n", "'import os' is not allowed"),
    ("from re import nope\n", "lmq's 're' has no name 'nope'"),
    ("query q():\n    \"[A]\"\nx = q()\n", "the query 'q' is called in an expression"),
])
def test_definition_errors(source: str, message: str) -> None:
    with pytest.raises(LmqCompileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_source(source)


@pytest.mark.parametrize("statement", ["try", "with", "raise", "global", "del", "yield"])
def test_unsupported_statements_name_themselves(statement: str) -> None:
    source = {"try": "try:\n    x = 1\nexcept:\n    pass\n", "with": "with a as b:\n    pass\n",
              "raise": "raise ValueError('x')\n", "global": "global x\n",
              "del": "del x\n", "yield": "yield 1\n"}[statement]
    with pytest.raises(LmqSyntaxError, match=f"'{statement}' statements are not available"):
        compile_source(source)


def test_assert_names_its_condition() -> None:
    with pytest.raises(LmqRuntimeError) as caught:
        run('x = 2\nassert x > 3, "too small"\n')
    assert caught.value.message == "assertion failed: x > 3 (too small)"
    assert caught.value.line == 2
    assert run("assert 1 < 2\nreturn 1\n").return_value == 1


def test_modules() -> None:
    state = run(r'''
import re, json, math
from re import findall as every
m = re.match(r"(\w+)@(\w+)", "me@host rest")
p = re.compile(r"\d+")
return [m.group(2), m.span(), every(r"\d", "a1b22"), p.sub("#", "a1b22"),
        re.split(r",\s*", "a, b,c"), json.loads(json.dumps({"a": [1, None]})),
        math.factorial(5), math.floor(math.pi), re.search("z", "abc")]
''')
    assert state.return_value == ["host", (0, 7), ["1", "2", "2"], "a#b#",
                                  ["a", "b", "c"], {"a": [1, None]}, 120, 3, None]


def test_module_limits(monkeypatch) -> None:
    with pytest.raises(LmqLimitError, match="limits.int_digits"):
        run("import math\nx = math.factorial(10 ** 6)\n")
    # fib(60) backtracking steps: no machine finishes them, so the last-resort bound
    # (shortened here to keep the test quick) always ends the call
    monkeypatch.setattr("lmq.runtime.interpreter.modules.REGEX_SECONDS", 0.5)
    with pytest.raises(LmqLimitError, match="backtracks exponentially"):
        run('import re\nx = re.search(r"(a|aa)+$", "' + "a" * 60 + '!")\n')
    with pytest.raises(LmqLimitError, match="limits.string_size"):
        run('import re\nx = re.sub("", "yyyy", "' + "a" * 1000 + '")\n',
            limits=Limits(string_size=2000))
    with pytest.raises(LmqLimitError, match="limits.steps"):
        run('import re\nx = re.findall("a", "' + "a" * 5000 + '")\n', limits=Limits(steps=1000))


def test_context_prompt_and_lmql_model() -> None:
    state = run('"Hello [A]"\nreturn [context.prompt, lmql.model("random"), '
                'lmql.model("smollm2", endpoint="x")]\n', fill="you")
    assert state.return_value == ["Hello you", "tiny-random", "smollm2"]


def test_a_fork_runs_its_own_functions_on_its_own_values() -> None:
    checked = compile_source('n = 1\ndef get():\n    return n\n"[A]"\nn = len(A)\n'
                             'return [get(), context.prompt]\n')
    state = ProgramState(checked.program, {}, {}, Limits(), output=lambda text: None)
    assert state.run() is not None
    twin = state.fork()
    for instance, text in ((state, "ab"), (twin, "abcd")):
        instance.fill(text)
        assert instance.run() is None
    assert state.return_value == [2, "ab"] and twin.return_value == [4, "abcd"]
