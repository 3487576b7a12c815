"""The llama.cpp backend beyond the conformance suite: the same model on two engines gives
the same tokens, SmolLM2's Q4_1 GGUF decodes greedily exactly as llama-cpp-python's own
``Llama`` does, the vocabulary matches transformers' byte for byte, the KV pool grows, and
what the backend cannot do is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lmq
from lmq.errors import LmqModelError
from lmq.runtime.backends import llama_models, registry
from lmq.runtime.engine import shared_engine

llama_cpp = pytest.importorskip("llama_cpp")

PROMPTS = ["The history of the city of Rome begins",
           "Q: What is the capital of France?\nA:",
           "Write one sentence about the history of Paris."]
CHATS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"},
     {"role": "assistant", "content": "Paris"}],
]


@pytest.fixture(scope="module")
def both():
    engine = shared_engine()
    return engine.backend("llama:tiny-random"), engine.backend("tiny-random")


def greedy(backend, ids, n):
    row = backend.new_rows(1)[0]
    try:
        logits, out = backend.forward({row: ids}), []
        for _ in range(n):
            out.append(int(np.asarray(logits[0]).argmax()))
            logits = backend.forward({row: out[-1:]})
        return out
    finally:
        backend.release([row])


def test_the_same_model_on_both_engines_gives_the_same_tokens(both):
    llama, hf = both
    for prompt in PROMPTS:
        ids = hf.vocabulary.encode(prompt)
        assert llama.vocabulary.encode(prompt) == ids
        assert greedy(llama, ids, 24) == greedy(hf, ids, 24), prompt
    row_l, row_h = llama.new_rows(1)[0], hf.new_rows(1)[0]
    ids = hf.vocabulary.encode(PROMPTS[0])
    gap = np.abs(llama.forward({row_l: ids})[0] - hf.forward({row_h: ids})[0].numpy()).max()
    llama.release([row_l])
    hf.release([row_h])
    assert gap < 0.05  # float32 weights; llama.cpp keeps its KV cache in float16


def test_the_vocabulary_is_transformers_byte_for_byte(both):
    llama, hf = both
    lv, hv = llama.vocabulary, hf.vocabulary
    assert lv.token_bytes() == hv.token_bytes()
    assert (lv.size, lv.eos_ids, lv.bos_id) == (hv.size, hv.eos_ids, hv.bos_id)
    engine = shared_engine()
    assert engine.runtime(llama).index.fingerprint == engine.runtime(hf).index.fingerprint
    for messages in CHATS:
        for generation in (False, True):
            assert lv.render_chat(messages, generation) == hv.render_chat(messages, generation)
    assert [lv.special_text(i) for i in range(17)] == [hv.special_text(i) for i in range(17)]
    text = "<|im_start|>user\nhi<|im_end|> 中文 😀"
    for special in (True, False):
        assert lv.encode(text, special) == hv.encode(text, special)
    ids = hv.encode(text)
    assert lv.decode(ids) == hv.decode(ids)


@pytest.mark.smollm2
def test_smollm2_greedy_equals_llama_cpp_pythons_own():
    backend = llama_models.load("llama:smollm2")
    own = llama_cpp.Llama(str(llama_models.gguf_path("llama:smollm2")), n_ctx=2048,
                          n_threads=2, flash_attn=True, verbose=False)
    for prompt in PROMPTS:
        ids = backend.vocabulary.encode(prompt)
        expected = []
        for token in own.generate(ids, temp=0.0, top_k=1, reset=True):
            expected.append(token)
            if len(expected) == 48:
                break
        assert greedy(backend, ids, 48) == expected, prompt


@pytest.mark.smollm2
def test_a_program_on_the_packaged_model():
    result = lmq.query('"Q: What is the capital of France?\\nA:[A]" where STOPS_AT(A, "\\n") '
                       'and len(TOKENS(A)) < 20', model="llama:smollm2")()
    assert "Paris" in result["A"] and result["A"].endswith("\n")


def test_the_kv_pool_grows_and_stays_exact(monkeypatch):
    monkeypatch.setattr("lmq.runtime.backends.llama.INITIAL_CELLS", 256)
    backend = llama_models.load("llama:tiny-random")
    hf = shared_engine().backend("tiny-random")
    rows = backend.new_rows(3)
    contexts = {row: hf.vocabulary.encode(PROMPTS[i % 3]) * 12 for i, row in enumerate(rows)}
    backend.forward(contexts)  # more tokens than the pool had
    more = {row: [100 + i] for i, row in enumerate(rows)}
    logits = backend.forward(more)
    assert backend.stats.compactions >= 1 and backend._cells > 256
    for k, row in enumerate(rows):
        reference = hf.new_rows(1)[0]
        expected = hf.forward({reference: contexts[row] + more[row]})[0]
        hf.release([reference])
        torch.testing.assert_close(torch.from_numpy(logits[k]), expected, atol=0.05, rtol=0)
    backend.release(rows)


def test_what_the_backend_cannot_do_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(LmqModelError, match="PEFT adapters are not supported by the llama.cpp"):
        llama_models.load("llama:smollm2", adapter=str(tmp_path))
    with pytest.raises(LmqModelError, match="not found"):
        llama_models.load(f"llama:{tmp_path / 'none.gguf'}")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(LmqModelError, match="cannot load the GGUF file"):
        llama_models.load(f"llama:{broken}")
    with pytest.raises(LmqModelError, match="runs on 'cpu' or 'cuda'"):
        llama_models.load("llama:tiny-random", device="tpu")
    backend = shared_engine().backend("llama:tiny-random")
    with pytest.raises(LmqModelError, match="at most 256 rows"):
        backend.new_rows(257)


def test_built_in_names_pick_their_backend(monkeypatch):
    monkeypatch.setenv("LMQ_BACKEND", "auto")
    assert registry.canonical("smollm2") == "llama:smollm2"  # installed here
    assert registry.canonical("smollm2", adapter="adapters/law") == "smollm2"
    assert registry.canonical("tiny-random") == "tiny-random"
    monkeypatch.setenv("LMQ_BACKEND", "llama")
    assert registry.canonical("tiny-random") == "llama:tiny-random"
    monkeypatch.setenv("LMQ_BACKEND", "transformers")
    assert registry.canonical("smollm2") == "smollm2"
    assert registry.canonical("hf:models/x") == "hf:models/x"
    monkeypatch.setenv("LMQ_BACKEND", "lama")
    with pytest.raises(LmqModelError, match="did you mean 'llama'"):
        registry.canonical("smollm2")


def test_fusion_across_engines_of_one_vocabulary():
    """Both builds share one token index, so their logits combine: fuse() with the
    llama.cpp build as the large model and the transformers build as base and expert."""
    source = ('from lmq.stdlib.fusion import fuse\n'
              '"Q: hi\\nA:[A]" from fuse("llama:tiny-random", base="tiny-random", '
              'experts=["tiny-random"]) where len(TOKENS(A)) < 5\n')
    result = lmq.query(source, model="tiny-random")()
    decisions = [entry["decisions"] for entry in result.trace if "decisions" in entry]
    steps = decisions[0]["steps"]
    assert len(steps) == len(result.logprobs["A"]) and all(0 <= s["alpha"] <= 2 for s in steps)
    assert {"llama:tiny-random", "tiny-random"} <= {
        name.strip() for entry in result.trace if "model" in entry
        for name in entry["model"].split(",")}


PREFER = '''argmax
    "{:instruction}Assume the tower is in Rome.\\n"
    "{:context}The tower is in Paris.\\n"
    "Q: Where is the tower?\\nA:[A]" where len(TOKENS(A)) < 4
prefer
    instruction > context > parametric with mode=MODE
'''


@pytest.mark.parametrize("mode", ["contrastive", "prompt", "cascade"])
def test_knowledge_preference_runs_on_llama(mode):
    """Companion rows, views and cascades decode on llama.cpp as on transformers."""
    source = PREFER.replace("MODE", f'"{mode}"')
    on_llama = lmq.query(source, model="llama:tiny-random")()
    on_hf = lmq.query(source, model="tiny-random")()
    assert on_llama.variables == on_hf.variables


def test_specialists_batches_and_the_command_line_run_on_llama(tmp_path, monkeypatch, capsys):
    from lmq.cli import main

    (tmp_path / "lmq.toml").write_text('[specialists.brief]\nmodel = "llama:tiny-random"\n'
                                       'system = "Answer in one word."\nmax_tokens = 2\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LMQ_CONFIG", raising=False)
    result = lmq.query('"Q: hi\\nA:[A]"', model="brief")()
    assert len(result.logprobs["A"]) <= 2
    assert {e["model"] for e in result.trace if "model" in e} == {"brief (llama:tiny-random)"}
    answers = lmq.query('"{x}:[A]" where len(TOKENS(A)) < 3', model="llama:tiny-random").batch(
        [{"x": str(i)} for i in range(5)])
    assert not answers.errors and answers.stats["instances"] == 5
    (tmp_path / "p.lmq").write_text('"{x}:[A]" where len(TOKENS(A)) < 3\n')
    (tmp_path / "in.jsonl").write_text('{"x": "a"}\n{"x": "b"}\n')
    assert main(["run", "p.lmq", "--model", "llama:tiny-random", "--inputs", "in.jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.startswith('{"line": ') for line in lines] == [True, True]
