"""Host objects are opaque (LANGUAGE.md section 3): no method a host wrote runs on a
program's behalf — not a special method, not a subclass's override, not a method lmq's own
code or the standard library would call — except the tools themselves.

Every hostile object here trips a :class:`Canary` from any method it defines; each test
ends by checking that none was tripped. Programs run in the interpreter alone where no
model is needed, on ``tiny-random`` where one is.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from programs import interpret

import lmq
from lmq.errors import LmqError, LmqParameterError, LmqRuntimeError, LmqSandboxError
from lmq.runtime.backends.base import Backend

TINY = "tiny-random"


class Canary:
    def __init__(self) -> None:
        self.tripped: list[str] = []


CANARY = Canary()


def trap(name: str):
    def method(self, *args, **kwargs):
        CANARY.tripped.append(name)
        raise AssertionError(f"host method {name} ran")
    return method


SPECIAL = ("__index__", "__int__", "__float__", "__bool__", "__len__", "__iter__",
           "__getitem__", "__contains__", "__add__", "__radd__", "__mul__", "__eq__",
           "__lt__", "__hash__", "__str__", "__repr__", "__format__", "__call__",
           "__getattr__", "lower", "translate", "get_vocab", "forward", "checked")


def hostile(base: type = object, name: str = "Proxy") -> type:
    """A class whose every special and duck-typed method trips the canary."""
    methods = {method: trap(method) for method in SPECIAL if method != "__repr__"
               or base is object}
    methods["__hash__"] = trap("__hash__")
    return type(name, (base,), methods)


Proxy = hostile()


class Spoof:
    """Claims to be a backend through ``__class__``: ``isinstance`` would believe it."""

    @property
    def __class__(self):  # type: ignore[override]
        return Backend

    def __getattr__(self, name):
        CANARY.tripped.append(name)
        raise AssertionError(f"host attribute {name} read")


@pytest.fixture(autouse=True)
def no_host_code():
    CANARY.tripped.clear()
    yield
    assert CANARY.tripped == []


run = interpret


def refused(source: str, kind=LmqError, **kwargs) -> LmqError:
    with pytest.raises(kind) as info:
        interpret(source, **kwargs)
    assert str(info.value)
    return info.value


# ------------------------------------------------------------------ special methods


@pytest.mark.parametrize("source, rule", [
    ("y = [10, 20, 30][k]\n", "list indices must be integers or slices, not Opaque"),
    ("y = k + 1\n", "unsupported operand"),
    ("y = 1 + k\n", "unsupported operand"),
    ("y = k * 2\n", "unsupported operand"),
    ("y = len(k)\n", "has no len()"),
    ("if k:\n    pass\n", "a Proxy object has no truth value in lmq programs"),
    ("y = k and 1\n", "a Proxy object has no truth value"),
    ("y = not k\n", "no truth value"),
    ("y = any([k])\n", "no truth value"),
    ("y = list(k)\n", "is not iterable"),
    ("for x in k:\n    pass\n", "cannot iterate over a Proxy"),
    ("y = [x for x in k]\n", "cannot iterate over a Proxy"),
    ("y = enumerate(k)\n", "has no len()"),
    ("y = sorted([k, k])\n", "'<' not supported"),
    ("y = k < 1\n", "'<' not supported"),
    ("y = 1 in k\n", "is not iterable"),
    ("y = int(k)\n", "int() argument"),
    ("y = range(k)\n", "cannot be interpreted as an integer"),
    ("y = k.lower()\n", "attributes of Proxy objects are not reachable"),
    ("y = k()\n", "is not callable in lmq programs"),
    ("y = k[0]\n", "Proxy objects cannot be indexed"),
    ('y = f"{k:>10}"\n', "unsupported format string"),
    ('"{k:>10}"\n', "unsupported format string"),
])
def test_no_special_method_of_an_opaque_object_runs(source, rule):
    error = refused(source, params={"k": Proxy()})
    assert rule in error.message, error.message
    assert error.line is not None


def test_what_an_opaque_object_can_do():
    """Stored, passed back to tools, compared by identity, hashed, written."""
    first, other = Proxy(), Proxy()
    tools = {"get": lambda: first, "same": lambda a, b: a is b,
             "kind": lambda a: type(a).__name__}
    state = run('a = get()\nb = get()\nxs = [a]\nd = {a: 1}\ns = {a, b}\n'
                '"{a == b} {a is b} {a == c} {a != c} {a is None} {same(a, xs[0])} '
                '{kind(a)} {d[b]} {len(s)} {a in xs} {a} {[a]}"\nreturn [a, c]\n',
                params={"c": other}, tools=tools)
    assert state.prompt == ("True True False True False True Proxy 1 1 True <Proxy object> "
                            "[<Proxy object>]")
    from lmq.runtime.interpreter.boundary import hand_out

    returned = hand_out(state.return_value)
    assert returned[0] is first and returned[1] is other


# ------------------------------------------------------------------ subclass overrides


def test_subclass_overrides_never_run():
    Text, Table, Items, Number = (hostile(str, "Text"), hostile(dict, "Table"),
                                  hostile(list, "Items"), hostile(int, "Number"))
    params = {"s": Text("ab"), "d": Table({"k": 1}), "xs": Items([1, 2, 3]), "n": Number(7)}
    state = run('"{s + \'t\'} {d[\'k\']} {len(xs)} {[x for x in xs]} {n + 1} {s.upper()} '
                '{n in xs} {d}"\n', params=params)
    assert state.prompt == "abt 1 3 [1, 2, 3] 8 AB False {'k': 1}"
    types = {name: type(value) for name, value in state.globals.variables.items()}
    assert types == {"s": str, "d": dict, "xs": list, "n": int}


def test_nested_subclasses_and_library_types_become_basic_values():
    Point = collections.namedtuple("Point", "x y")
    key = type("Key", (str,), {"upper": trap("upper"), "__add__": trap("__add__")})
    params = {"p": [Point(1, 2), collections.OrderedDict(a=np.float64(0.5)),
                    collections.defaultdict(list, b=[np.float64(1.5)]), frozenset({key("k")})]}
    state = run('"{p}"\n', params=params)
    assert state.prompt == "[(1, 2), {'a': 0.5}, {'b': [1.5]}, frozenset({'k'})]"
    value = state.globals.variables["p"]
    assert [type(v) for v in value] == [tuple, dict, dict, frozenset]
    assert type(value[1]["a"]) is float and type(next(iter(value[3]))) is str


def test_tool_results_are_converted_and_copied():
    kept = [1, 2]
    tools = {"numbers": lambda: hostile(list, "Items")([hostile(int, "Number")(5)]),
             "kept": lambda: kept, "grow": lambda xs: xs.append(99) or len(xs)}
    state = run('a = numbers()\nb = kept()\nb.append(3)\nc = [0]\nn = grow(c)\n'
                '"{a} {a[0] + 1} {b} {c} {n}"\n', tools=tools)
    assert state.prompt == "[5] 6 [1, 2, 3] [0] 2"
    assert kept == [1, 2]  # the program changed its copy, the tool its own


# ------------------------------------------------------------------ lmq's own code


def test_a_query_hole_reads_nothing_of_a_non_query():
    for target in (Proxy(), Spoof()):
        error = refused('"Hi[R: n]"\n', tools={"n": target})
        assert "is filled by something that is not a query" in error.message


@pytest.mark.parametrize("make", [Proxy, Spoof], ids=["proxy", "spoofed-class"])
def test_an_object_used_as_a_model_is_refused_by_its_type(make):
    model = make()
    tools = {"proxy": lambda: model}
    with pytest.raises(LmqParameterError) as info:
        lmq.query('p = proxy()\n"Hi[A]" from p where len(TOKENS(A)) < 2\n', model=TINY,
                  tools=tools)()
    assert "the model of an inline 'from' must be a model name, spec or backend object, " \
        "not Proxy" in info.value.message or "not Spoof" in info.value.message
    with pytest.raises(LmqParameterError) as info:
        lmq.query('"Hi[A]" where len(TOKENS(A)) < 2\n', model=model)()
    assert "must be a model name, spec or backend object" in info.value.message


def test_an_object_passed_to_classify_as_a_model():
    source = ('from lmq.stdlib.labels import classify\n'
              'return classify("text", ["a", "b"], model=proxy())\n')
    with pytest.raises(LmqRuntimeError) as info:
        lmq.query(source, model=TINY, tools={"proxy": Proxy})()
    assert "classify(): 'model' must be a model name or spec, not Proxy" in info.value.message
    assert info.value.line == 2


@pytest.mark.parametrize("call, rule", [
    ("normalize_answer(p)", "normalize_answer(): 'text' must be a string, not Proxy"),
    ("is_correct(p, 'x')", "is_correct(): 'answer' must be a string or None, not Proxy"),
    ("render_sections(p)", "render_sections(): 'question' must be a string or None"),
    ("precedence_text(p)", "precedence_text(): 'order' must be a list of strings"),
    ("precedence_text([p])", "'order[...]' must be a string, not Proxy"),
    ("parse_labels(p, ['a'])", "parse_labels(): 'output' must be a string"),
    ("label_metrics([p], [['a']])", "label_metrics(): 'predictions[...]' must be a list"),
    ("calibrate_threshold([{'scores': {'a': p}, 'labels': []}])",
     "calibrate_threshold(): 'scores[...]' must be a number, not Proxy"),
    ("psi([[p]], [1])", "psi(): 'matrix[...][...]' must be a number, not Proxy"),
    ("typo_variants(p)", "typo_variants(): 'text' must be a string"),
    ("template_variants('q', [p])", "'templates[...]' must be a string"),
    ("hierarchical('task', check=p)", "hierarchical(): 'check' must be None, a function"),
    ("hp_score([p])", "hp_score(): 'results[...]' must be a number"),
    ("note(p)", "note(): 'statements' must be a list of strings"),
    ("recall('q', k=p)", "recall(): 'k' must be an integer"),
    ("route('q', [p])", "'names[...]' must be a string"),
    ("route(p, ['a'])", "route(): 'text' must be a string"),
    ("decision(p)", "decision() takes what route() returned"),
    ("embed(p)", "embed(): 'text' must be a string"),
    ("fuse(p, 'a', ['b'])", "'model' must be a model name or spec, not Proxy"),
    ("posix(p, ['a'])", "posix(): 'query_source' must be a string"),
    ("cascade_answer(p)", "cascade_answer(): 'question' must be a string"),
])
def test_stdlib_functions_check_their_arguments_by_type(call, rule):
    imports = ("from lmq.stdlib.knowledge import normalize_answer, is_correct, "
               "render_sections, precedence_text, cascade_answer\n"
               "from lmq.stdlib.labels import parse_labels, label_metrics, "
               "calibrate_threshold\n"
               "from lmq.stdlib.posix import psi, typo_variants, template_variants, posix\n"
               "from lmq.stdlib.hierarchical import hierarchical, hp_score\n"
               "from lmq.stdlib.notes import note, recall\n"
               "from lmq.stdlib.routing import route, decision, embed\n"
               "from lmq.stdlib.fusion import fuse\n")
    error = refused(imports + f"y = {call}\n", kind=LmqRuntimeError, params={"p": Proxy()})
    assert rule in error.message, error.message
    assert error.line == 8


def test_a_function_passed_to_the_stdlib_is_called_through_the_sandbox():
    """``check=`` of ``hierarchical``: an opaque object (even a callable one) is refused
    before anything of it is used; a function the program may call is called through the
    sandbox, its result admitted before its truth value is taken."""
    source = ('from lmq.stdlib.hierarchical import hierarchical\n'
              'from lmq.stdlib.knowledge import normalize_answer\n'
              'r = hierarchical("2+2?", check=check, levels=["role"], steps=2,\n'
              '                 answer_constraint="len(TOKENS(ANSWER)) < 3")\n'
              'return r["attempts"][0]["passed"]\n')
    with pytest.raises(LmqRuntimeError) as info:
        lmq.query(source, model=TINY)(check=Proxy())
    assert "hierarchical(): 'check' must be None, a function" in info.value.message
    answer = lmq.query(source.replace("check=check", "check=normalize_answer"), model=TINY)()
    assert answer.return_value in (True, False)


def test_key_functions_and_predicates_return_admitted_values():
    tools = {"rank": lambda item: Proxy(), "check": lambda value: Proxy()}
    error = refused('y = sorted(["a", "b"], key=rank)\n', tools=tools)
    assert "'<' not supported" in error.message
    with pytest.raises(LmqError) as info:
        lmq.query('"[A]" where check(A) and len(TOKENS(A)) < 2\n', model=TINY,
                  tools=tools)()
    assert "predicate 'check' failed" in info.value.message
    assert "no truth value" in info.value.message


def test_results_hand_the_host_its_objects_back():
    handle = Proxy()
    result = lmq.query('h = get()\n"[A]" where len(TOKENS(A)) < 2\nreturn {"h": [h]}\n',
                       model=TINY, tools={"get": lambda: handle})()
    assert result.return_value["h"][0] is handle


def test_numpy_scalars_and_arrays():
    """A numpy float is a float; a numpy int or array is a host object (opaque)."""
    state = run('"{f + 1} {f.is_integer()}"\n', params={"f": np.float64(2.0)})
    assert state.prompt == "3.0 True"
    for value in (np.int64(3), np.arange(3)):
        error = refused("y = v + 1\n", params={"v": value})
        assert "unsupported operand" in error.message


def test_str_subclass_of_the_stdlib_keeps_only_str_methods():
    """``route`` returns a ``Routed`` (lmq's own ``str`` subclass): programs see a str."""
    state = run('from lmq.stdlib.routing import decision\n"{r.upper()} {r + \'!\'}"\n',
                params={"r": "tiny-random"})
    assert state.prompt == "TINY-RANDOM tiny-random!"


def test_sandbox_error_names_the_opaque_type_at_a_line():
    # through a variable: an attribute of a parameter that no plain value has is a compile error
    error = refused('v = h\nv.read()\n', kind=LmqSandboxError, params={"h": Proxy()})
    assert "attributes of Proxy objects are not reachable" in error.message
    assert error.line == 2
