"""Branches never share mutable state: beam branches (forked program states), samples and
batch rows each hold their own copy of every mutable value, whatever container holds it
(a tuple, a dict, a dict view, a running loop's items, a nested query's scope), and the
host's own values are never changed by a program."""

from __future__ import annotations

import pytest

import lmq
from lmq.checks import compile_source
from lmq.limits import Limits
from lmq.runtime.interpreter.program import ProgramState

TINY = "tiny-random"
CHOICE = '"Pick:[A]" where A in [" red", " blue"]\n'


def beam(body: str, **params):
    results = lmq.query("beam(n=2)\n" + "".join("    " + line + "\n"
                                                for line in body.splitlines()),
                        model=TINY)(**params)
    assert len(results) == 2
    return results


@pytest.mark.parametrize("setup, use, read", [
    ("t = ([],)", "t[0].append(A)", "t[0]"),
    ("t = ({'k': []},)", "t[0]['k'].append(A)", "t[0]['k']"),
    ("d = {'k': [[]]}", "d['k'][0].append(A)", "d['k'][0]"),
    ("d = {'k': []}\nv = d.values()", "d['k'].append(A)", "list(v)[0]"),
    ("s = [[]]\nt = (s, s)", "t[0][0].append(A)", "t[1][0]"),
    ("t = ((([],),),)", "t[0][0][0].append(A)", "t[0][0][0]"),
])
def test_beam_branches_copy_every_reachable_mutable_value(setup, use, read):
    results = beam(f"{setup}\n{CHOICE}{use}\nreturn {read}")
    values = sorted(tuple(r.return_value) for r in results)
    assert values == [(" blue",), (" red",)]
    for result in results:
        assert result.return_value == [result.variables["A"]]


def test_a_running_loop_keeps_its_own_items_in_each_branch():
    results = beam('xs = ["x"]\nfor x in xs:\n    "{x}:[A]" where A in [" red", " blue"]\n'
                   '    if len(xs) < 3:\n        xs.append(A)\nreturn xs')
    for result in results:
        assert result.return_value == ["x", *result.values["A"][:2]]


def test_a_nested_query_shares_its_argument_with_its_caller_in_each_branch():
    results = beam('query q(xs):\n    "Pick:[B]" where B in [" red", " blue"]\n'
                   '    xs.append(B)\n    return B\nys = []\n"[R: q(ys)]"\nreturn ys')
    for result in results:
        assert result.return_value == [result.variables["R"]]


def test_forks_are_independent_without_a_model():
    checked = compile_source('t = ([], {"k": []})\nd = {"a": 1}\nv = d.keys()\n"[A]"\n'
                             't[0].append(A)\nt[1]["k"].append(A)\nd[A] = 2\n'
                             'return [t, list(v)]\n')
    state = ProgramState(checked.program, {}, {}, Limits())
    assert state.run() is not None
    twin = state.fork()
    for program, text in ((state, "one"), (twin, "two")):
        program.fill(text)
        assert program.run() is None
    assert state.return_value == [(["one"], {"k": ["one"]}), ["a", "one"]]
    assert twin.return_value == [(["two"], {"k": ["two"]}), ["a", "two"]]


def test_samples_and_batch_rows_get_their_own_parameters():
    shared: list[str] = []
    q = lmq.query('xs.append("seen")\n"[A]" where len(TOKENS(A)) < 2\nreturn len(xs)\n',
                  model=TINY)
    samples = q.execute([{"xs": shared}], seed=1)[0]
    sampled = lmq.query('sample(n=3)\n    xs.append("seen")\n'
                        '    "[A]" where len(TOKENS(A)) < 2\n    return len(xs)\n',
                        model=TINY)(xs=shared)
    assert [r.return_value for r in sampled] == [1, 1, 1]
    rows = q.batch([{"xs": shared}, {"xs": shared}, {"xs": shared}])
    assert [r.return_value for r in rows] == [1, 1, 1]
    assert samples.return_value == 1
    assert shared == []  # the host's list is the host's
