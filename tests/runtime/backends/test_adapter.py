"""PEFT adapters: ``Engine.backend(spec, adapter=...)`` merges a LoRA adapter into the model,
a specialist's ``adapter`` (relative to its lmq.toml) reaches it, and a broken adapter
folder is a clear :class:`LmqModelError`.

The adapter is built offline for the seeded tiny-random model, with deterministic non-zero
LoRA weights (LoRA's default B = 0 would leave the model unchanged). The tests needing peft
skip where it is not installed; the folder checks run before peft is imported, so they
run everywhere.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from lmq.errors import LmqModelError  # noqa: E402
from lmq.runtime.backends.adapters import adapter_merger as _adapter_merger  # noqa: E402
from lmq.runtime.backends.hf_models import build_tiny_random  # noqa: E402
from lmq.runtime.engine import shared_engine  # noqa: E402

PROMPT_IDS = [1, 504, 2593, 314, 3158, 28, 1048]
PROGRAM = '"Question: what is the capital of France?\\nAnswer:[A]" where len(TOKENS(A)) == 4'


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A rank-2 LoRA adapter on q_proj and v_proj of tiny-random, saved with
    ``save_pretrained``; A and B drawn from a seeded generator."""
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0,
                             target_modules=["q_proj", "v_proj"])
    with warnings.catch_warnings():  # transformers' is_gradient_checkpointing deprecation
        warnings.simplefilter("ignore", FutureWarning)
        model = peft.get_peft_model(build_tiny_random(), config)
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        lora = [(name, param) for name, param in sorted(model.named_parameters())
                if "lora_A" in name or "lora_B" in name]
        assert len(lora) == 8  # 2 layers x (q_proj, v_proj) x (A, B)
        for _, param in lora:
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    folder = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(folder)
    assert (folder / "adapter_config.json").is_file()
    return folder


@pytest.fixture(scope="module")
def reference(adapter):
    """tiny-random with the adapter merged by peft directly (not through lmq)."""
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = PeftModel.from_pretrained(build_tiny_random(), str(adapter))
    return model.merge_and_unload().eval()


def last_logits(backend, ids: list[int]):
    row = backend.new_rows(1)[0]
    try:
        return backend.forward({row: ids})[0].float().cpu()
    finally:
        backend.release([row])


# -- shared_engine().backend(spec, adapter=...) -----------------------------------------------------

def test_adapter_changes_the_logits_like_a_direct_peft_merge(adapter, reference):
    base = shared_engine().backend("tiny-random", device="cpu", dtype="float32")
    tuned = shared_engine().backend("tiny-random", device="cpu", dtype="float32", adapter=str(adapter))
    assert tuned is not base and tuned.model is not base.model
    assert tuned.name == "tiny-random+adapter"
    assert type(tuned.model).__name__ == "LlamaForCausalLM"  # merged: a plain model
    assert not any("lora" in name for name, _ in tuned.model.named_parameters())

    with torch.no_grad():
        expected = reference(torch.tensor([PROMPT_IDS])).logits[0, -1]
    base_logits, tuned_logits = last_logits(base, PROMPT_IDS), last_logits(tuned, PROMPT_IDS)
    assert (tuned_logits - base_logits).abs().max() > 0.1
    torch.testing.assert_close(tuned_logits, expected, rtol=1e-4, atol=1e-4)
    # the base model's backend is untouched by the merge
    with torch.no_grad():
        untouched = build_tiny_random()(torch.tensor([PROMPT_IDS])).logits[0, -1]
    torch.testing.assert_close(base_logits, untouched, rtol=1e-4, atol=1e-4)
    # memoised per (spec, adapter, device, dtype)
    assert shared_engine().backend("tiny-random", device="cpu", dtype="float32",
                        adapter=str(adapter)) is tuned


# -- a specialist's adapter in lmq.toml --------------------------------------------------

@pytest.fixture
def project(tmp_path, monkeypatch, adapter):
    """tmp_path/lmq.toml declaring the specialist ``tuned``, the adapter next to it, and
    the working directory a subfolder (so a cwd-relative path would miss the adapter)."""
    for name in ("LMQ_MODEL", "LMQ_CONFIG", "LMQ_DECODER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LMQ_DEVICE", "cpu")
    monkeypatch.setenv("LMQ_DTYPE", "float32")
    shutil.copytree(adapter, tmp_path / "adapter")
    (tmp_path / "lmq.toml").write_text('[specialists.tuned]\nmodel = "tiny-random"\n'
                                       'adapter = "adapter"\n'
                                       '[specialists.lost]\nmodel = "tiny-random"\n'
                                       'adapter = "no-such-adapter"\n')
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def test_specialist_adapter_is_resolved_against_lmq_toml_and_used(project, reference):
    import lmq
    from lmq.runtime.backends.hf import TransformersBackend
    from lmq.runtime.backends.hf_models import load_model

    _, tokenizer = load_model("tiny-random", device="cpu", dtype="float32")
    direct = TransformersBackend(reference, tokenizer, name="direct")
    tuned = lmq.run(PROGRAM, model="tuned", decoder="argmax")
    expected = lmq.run(PROGRAM, model=direct, decoder="argmax")
    base = lmq.run(PROGRAM, model="tiny-random", decoder="argmax")

    assert tuned.trace[0]["model"] == "tiny-random+adapter"
    assert tuned["A"] == expected["A"]
    assert tuned.logprobs["A"] == pytest.approx(expected.logprobs["A"], abs=1e-4)
    assert len(tuned.logprobs["A"]) == 4
    assert tuned.logprobs["A"] != pytest.approx(base.logprobs["A"], abs=1e-3)
    # the adapter loaded is the one next to lmq.toml
    backend = shared_engine().backend("tiny-random", adapter=str(project / "adapter"))
    assert tuned.trace[0]["model"] == backend.name


def test_specialist_with_a_missing_adapter_is_a_model_error(project):
    import lmq

    with pytest.raises(LmqModelError, match="no-such-adapter' not found"):
        lmq.run(PROGRAM, model="lost", decoder="argmax")


# -- broken adapter folders (checked before peft is imported or a model loads) -----------

def write_adapter(folder: Path, config=None, weights: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config)
        (folder / "adapter_config.json").write_text(text)
    if weights:
        (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize("case, message", [
    ("missing", "adapter folder '.*missing' not found"),
    ("file", "is not a folder"),
    ("empty", r"is not a PEFT adapter folder \(no adapter_config.json\)"),
    ("not-json", "cannot read .*adapter_config.json"),
    ("not-peft", r"is not a PEFT adapter configuration \(no peft_type\)"),
    ("no-weights", "has no weights"),
])
def test_broken_adapter_folders_are_model_errors(tmp_path, monkeypatch, case, message):
    monkeypatch.setitem(sys.modules, "peft", None)  # these checks come before peft
    folder = tmp_path / case
    if case == "file":
        folder.write_text("not a folder")
    elif case == "empty":
        folder.mkdir()
    elif case == "not-json":
        write_adapter(folder, "{not json")
    elif case == "not-peft":
        write_adapter(folder, ["a", "list"])
    elif case == "no-weights":
        write_adapter(folder, {"peft_type": "LORA"}, weights=False)
    with pytest.raises(LmqModelError, match=message):
        _adapter_merger(str(folder))
    with pytest.raises(LmqModelError, match=message):  # load_backend checks first too
        shared_engine().backend("tiny-random", device="cpu", dtype="float32", adapter=str(folder))


def test_adapter_without_peft_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft raises ImportError
    folder = write_adapter(tmp_path / "ok", {"peft_type": "LORA"})
    with pytest.raises(LmqModelError, match="needs the peft package") as caught:
        _adapter_merger(str(folder))
    assert "pip install peft" in str(caught.value)


@pytest.mark.parametrize("change, message", [
    ({"target_modules": ["no_such_proj"]}, "no_such_proj"),
    ({"r": 4}, "size mismatch"),
])
def test_adapter_not_matching_the_model_is_a_model_error(adapter, tmp_path, change, message):
    folder = tmp_path / "changed"
    shutil.copytree(adapter, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(LmqModelError, match=f"cannot apply the adapter .*{message}"):
        shared_engine().backend("tiny-random", device="cpu", dtype="float32", adapter=str(folder))


def test_adapter_with_corrupt_weights_is_a_model_error(adapter, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(adapter, folder)
    (folder / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(LmqModelError, match="cannot apply the adapter"):
        shared_engine().backend("tiny-random", device="cpu", dtype="float32", adapter=str(folder))
