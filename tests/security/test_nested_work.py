"""Work a program starts outside itself spends its budget (LANGUAGE.md section 11): the
standard library's programs (``posix`` scoring every variant, ``classify``) and queries
passed as tools count their steps toward the caller's, stop at the caller's timeout, nest
below the caller's depth and hold memory in the caller's pool. And every builtin and
stdlib function bounds its work before it starts.

No wall-clock assertions: a run that would not stop meets a generous timeout instead and
fails the check of the rule it must name.
"""

from __future__ import annotations

import pytest
from programs import interpret

import lmq
from lmq.errors import LmqLimitError
from lmq.limits import Limits
from lmq.runtime.interpreter.budget import Budget
from lmq.runtime.interpreter.program import ProgramState

TINY = "tiny-random"
HANG_GUARD = 120.0
LOOP = 'n = 0\nwhile n < 300000:\n    n += 1\n"{x}[A]"\n'


def stopped(source: str, rule: str, limits: Limits, **kwargs) -> LmqLimitError:
    with pytest.raises(LmqLimitError) as info:
        lmq.query(source, model=TINY, limits=limits, **kwargs)()
    assert rule in info.value.message, info.value.message
    return info.value


def test_posix_runs_its_programs_within_the_callers_steps():
    source = ('from lmq.stdlib.posix import posix\n'
              f'r = posix({LOOP!r}, ["a", "b"], responses=["x", "y"], model="tiny-random")\n')
    error = stopped(source, "the program ran more than 50 steps, counting the nested work "
                    "it started (limits.steps)", Limits(steps=50, timeout=HANG_GUARD))
    assert error.line == 2  # the call, in the caller's program
    assert "in the program 'posix' ran" in error.message


def test_nested_work_stops_at_the_callers_timeout():
    """The inner query has no timeout of its own; the caller's ends it."""
    forever = lmq.query('n = 0\nwhile n >= 0:\n    n += 1\n', limits=Limits(steps=10**12))
    stopped('x = spin()\n"[A]"\n', "(limits.timeout)", Limits(steps=10**12, timeout=0.3),
            tools={"spin": forever})


def test_a_query_tool_that_calls_itself_stops_at_the_depth_limit():
    holder: dict = {}
    again = lmq.query('r = again()\n"[A]" where len(TOKENS(A)) < 2\n', model=TINY,
                      tools={"again": lambda: holder["q"]()}, limits=Limits(depth=8))
    holder["q"] = again
    with pytest.raises(LmqLimitError) as info:
        again()
    assert "nested queries are deeper than 8 (limits.depth)" in info.value.message
    assert info.value.message.count("in the program") == 1
    assert info.value.line == 1


def test_nested_work_counts_toward_the_callers_memory():
    """The caller holds 30 MB, the nested program 30 MB more: together past 40 MB."""
    inner = lmq.query('big = ["a" * 100000 + str(i) for i in range(300)]\n'
                      '"[A]" where len(TOKENS(A)) < 2\n', model=TINY,
                      limits=Limits(memory=10**9))
    source = ('held = ["b" * 100000 + str(i) for i in range(300)]\nr = inner()\n'
              '"[A]" where len(TOKENS(A)) < 2\n')
    stopped(source, "more than 40,000,000 bytes (limits.memory)",
            Limits(memory=40_000_000, timeout=HANG_GUARD), tools={"inner": inner})
    lmq.query(source, model=TINY, tools={"inner": inner})()  # each alone fits


def test_a_budget_outside_a_host_call_has_no_parent():
    budget = Budget.start(Limits(steps=5))
    assert budget.parent is None and Budget.current_limits() == Limits()
    with budget.hosting():
        child = Budget.start(Limits())
        assert child.parent is budget and child.pool is budget.pool
        assert Budget.current_limits() == Limits(steps=5)
        for _ in range(5):
            child.tick()
        with pytest.raises(LmqLimitError) as info:
            child.tick()
        assert "counting the nested work it started" in info.value.message
    assert Budget.start(Limits()).parent is None


# ------------------------------------------------------------------ bounded work


def run(source: str) -> ProgramState:
    return interpret(source, limits=Limits(timeout=HANG_GUARD))


@pytest.mark.parametrize("source, rule", [
    ("y = round(1, -100000000)\n", "round() to -100,000,000 digits"),
    ('y = ("y" * 1250).join("x" * 2000000)\n', "str.join would make"),
    ('y = ("a" * 2000000).translate({97: "b" * 1250})\n', "str.translate would make"),
    ('y = ("a" * 2000).translate(["b" * 9000] * 200)\n', "str.translate would make"),
    ('y = ("%1000000d" * 2500) % tuple(range(2500))\n', "'%' format would make about"),
    ('from lmq.stdlib.posix import psi\nrow = [0.0] * 30000\ny = psi([row] * 30000, [1] * 30000)\n',
     "psi() for a 30,000 x 30,000 matrix takes 900,000,000"),
    ('from lmq.stdlib.posix import typo_variants\ny = typo_variants("ab" * 1000, n=1000000)\n',
     "typo_variants() would make 1,000,000 copies of the text"),
    ('from lmq.stdlib.posix import template_variants\n'
     'y = template_variants("x" * 1000000, ["{q}" * 2000])\n',
     "template_variants() would make the variants of 2,000,006,000 characters"),
    ('from lmq.stdlib.notes import note\ny = note([str(i) for i in range(200000)])\n',
     "note(): a notebook holds at most 1,000 notes"),
    ('from lmq.stdlib.labels import calibrate_threshold\n'
     'item = {"scores": {str(i): i / 1000 for i in range(1000)}, "labels": ["1"]}\n'
     'y = calibrate_threshold([item] * 1000, max=1000)\n',
     "calibrate_threshold() for the items' scores takes 1,001,000"),
    ('from lmq.stdlib.fusion import fuse\ny = fuse("a", "b", ["c"], grid=(0, 1000000, 0.001))\n',
     "fuse() would weigh"),
    ("s = set()\nfor i in range(1024):\n"
     "    s.add(tuple([-1 - ((i >> b) & 1) for b in range(10)]))\n",
     "more than 256 distinct dict keys or set items share one hash value"),
    ("d = {tuple([-1 - ((i >> b) & 1) for b in range(10)]): i for i in range(1024)}\n",
     "share one hash value"),
    ("s = set([tuple([-1 - ((i >> b) & 1) for b in range(10)]) for i in range(1024)])\n",
     "share one hash value"),
    ("b = 7 ** 11000\nxs = [b + i for i in range(600000)]\n", "(limits.memory)"),
])
def test_work_is_bounded_before_it_starts(source, rule):
    with pytest.raises(LmqLimitError) as info:
        run(source)
    assert rule in info.value.message, info.value.message


def test_small_work_still_runs():
    state = run('from lmq.stdlib.posix import psi, typo_variants\n'
                'from lmq.stdlib.labels import calibrate_threshold\n'
                'a = psi([[0.0, -1.0], [-2.0, 0.0]], [1, 1])\n'
                'b = len(typo_variants("hello world", n=3))\n'
                'c = calibrate_threshold([{"scores": {"a": 0.7, "b": 0.3}, "labels": ["a"]}])\n'
                'd = len({(-1,), (-2,)})\ne = round(12345, -2)\n'
                'f = ", ".join("abc")\n"{a} {b} {c} {d} {e} {f}"\n')
    assert state.prompt == "1.5 3 1.01 2 12300 a, b, c"


def test_calibrate_threshold_is_the_brute_force_rule():
    """The sweep gives the threshold of trying every candidate on every item."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from lmq.stdlib.labels import calibrate_threshold, choose_by_threshold, label_metrics

    def brute(items, k):
        values = sorted({p for item in items for p in item["scores"].values()})
        candidates = sorted([1.01] + [(a + b) / 2 for a, b in zip(values, values[1:])],
                            reverse=True)
        best, best_f1 = 1.01, -1.0
        for threshold in candidates:
            predictions = [choose_by_threshold(item["scores"], threshold, k) for item in items]
            f1 = label_metrics(predictions, [item["labels"] for item in items])["micro_f1"]
            if f1 > best_f1 + 1e-12:
                best, best_f1 = threshold, f1
        return round(best, 6)

    labels = st.sampled_from(["a", "b", "c", "A", "d"])
    item = st.fixed_dictionaries({
        "scores": st.dictionaries(labels, st.sampled_from([0.1, 0.2, 0.25, 0.5, 0.9])),
        "labels": st.lists(labels, max_size=3)})

    @settings(max_examples=300, deadline=None)
    @given(st.lists(item, max_size=6), st.integers(1, 5))
    def same(items, k):
        assert calibrate_threshold(items, k) == brute(items, k)

    same()
