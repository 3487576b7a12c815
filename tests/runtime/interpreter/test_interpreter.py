"""The interpreter on its own: programs are driven by hand, each hole filled by the test.

No model is involved: ``ProgramState.run`` pauses at every hole and ``fill`` resumes it, so
the Python subset, the sandbox, nested queries, forking and limits are tested exactly.
"""

from __future__ import annotations

import pytest

from lmq.checks import compile_source
from lmq.errors import LmqLimitError, LmqRuntimeError, LmqSandboxError
from lmq.limits import Limits
from lmq.runtime.interpreter.program import ProgramState


def state_of(source: str, params=None, tools=None, limits=None, output=None):
    checked = compile_source(source)
    return ProgramState(checked.program, params or {}, tools or {}, limits or Limits(), output)


def drive(state: ProgramState, answers: dict[str, list[str]] | None = None) -> ProgramState:
    """Run to the end, filling each hole with the next answer for its name."""
    answers = {k: list(v) for k, v in (answers or {}).items()}
    while (request := state.run()) is not None:
        state.fill(answers[request.hole.name].pop(0))
    return state


def test_python_subset_runs():
    source = '''
xs = [i * i for i in range(5) if i % 2 == 0]
d = {k: v for k, v in zip("abc", [1, 2, 3])}
a, b = 1, 2
a += 10
total = 0
for x in xs:
    if x > 10:
        break
    elif x == 0:
        continue
    else:
        total += x
n = 0
while n < 3:
    n += 1
label = "big" if total > 3 else "small"
"{xs} {d['b']} {a} {b} {total} {n} {label} {sorted({3, 1, 2})} {'-'.join(['p', 'q'])}"
'''
    state = drive(state_of(source))
    assert state.prompt == "[0, 4, 16] 2 11 2 4 3 big [1, 2, 3] p-q"


def test_holes_bind_values_and_prompt_keeps_raw_text():
    state = drive(state_of('"A:[N: int] B:[@upper W]"\n',
                           tools={"upper": str.upper}),
                  {"N": ["42"], "W": ["hi"]})
    assert state.variables == {"N": 42, "W": "HI"}
    assert state.prompt == "A:42 B:hi"


def test_loop_rebinds_hole():
    state = drive(state_of('for i in range(3):\n    "{i}:[X] "\n'), {"X": ["a", "b", "c"]})
    assert state.values == {"X": ["a", "b", "c"]}
    assert state.variables == {"X": "c"}


def test_nested_query_return_removes_its_text():
    source = '''
query ask(q):
    "{q}? [A]"
    return A.strip() + "!"

"Start [R: ask('why')] end"
'''
    state = drive(state_of(source), {"A": [" because "]})
    assert state.variables == {"R": "because!"}
    assert state.prompt == "Start because! end"


def test_nested_query_macro_keeps_its_text():
    source = 'query m():\n    "<[A]>"\n\n"x[M: m()]y"\n'
    state = drive(state_of(source), {"A": ["z"]})
    assert state.variables == {"M": "<z>"}
    assert state.prompt == "x<z>y"


def test_return_at_top_level_ends_program():
    state = drive(state_of('"a[A]"\nreturn A + "!"\n"never"\n'), {"A": ["b"]})
    assert state.return_value == "b!"
    assert state.prompt == "ab"


def test_fork_is_independent():
    state = state_of('xs = []\nfor i in range(2):\n    "[X]"\n    xs.append(X)\n"{xs}"\n')
    assert state.run() is not None
    twin = state.fork()
    state.fill("a")
    twin.fill("b")
    drive(state, {"X": ["c"]})
    drive(twin, {"X": ["d"]})
    assert state.prompt.endswith("['a', 'c']")
    assert twin.prompt.endswith("['b', 'd']")


def test_print_goes_to_output():
    lines: list[str] = []
    drive(state_of('print("hello", 3)\n', output=lines.append))
    assert lines == ["hello 3\n"]


@pytest.mark.parametrize("source", [
    'x = "a".__class__\n',
    'x = [].__class__.__bases__\n',
    'x = "{}".format(1)\n',
])
def test_sandbox_rejects_private_and_format(source):
    with pytest.raises(LmqSandboxError):
        drive(state_of(source))


def test_tool_objects_are_opaque():
    class Secret:
        path = "/etc/passwd"

    with pytest.raises(LmqSandboxError):
        drive(state_of('x = make().path\n', tools={"make": Secret}))


def test_tool_errors_are_reported_with_the_tool():
    def boom(x):
        raise ValueError("bad input")

    with pytest.raises(LmqRuntimeError, match="tool 'boom' raised ValueError"):
        drive(state_of('y = boom(1)\n', tools={"boom": boom}))


def test_step_limit():
    with pytest.raises(LmqLimitError, match="steps"):
        drive(state_of('while True:\n    pass\n', limits=Limits(steps=1000)))


@pytest.mark.parametrize("source,bound", [
    ('x = "a" * 100000000\n', "string"),
    ('x = list(range(10 ** 8))\n', "items"),
    ('x = 10 ** 100000\n', "digits"),
    ('x = [i for i in range(2000000)]\n', "items"),
])
def test_value_size_limits(source, bound):
    with pytest.raises(LmqLimitError, match=bound):
        drive(state_of(source))


def test_nested_query_depth_limit():
    source = 'query r():\n    "[X: r()]"\n\n"[Y: r()]"\n'
    with pytest.raises(LmqLimitError, match="depth"):
        drive(state_of(source, limits=Limits(depth=5)))


def test_runtime_errors_carry_position():
    with pytest.raises(LmqRuntimeError) as info:
        drive(state_of('x = 1\ny = x / 0\n'))
    assert info.value.line == 2
    assert "ZeroDivisionError" in str(info.value)


def test_a_role_tag_ends_a_knowledge_section():
    state = drive(state_of('"{:context}The doc.\\n{:user}Q?{:assistant}[A]"\n'), {"A": ["x"]})
    tagged = [(segment.text, segment.knowledge, segment.role) for segment in state.context]
    assert ("The doc.\n", "context", None) in tagged
    assert ("Q?", None, "user") in tagged
