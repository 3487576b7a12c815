"""Model specs → backends: one table entry per kind of backend.

A spec is a built-in name (``smollm2``, ``tiny-random``) or ``PREFIX:REST``, where the
prefix names the backend that loads it: ``hf:PATH`` (a transformers model folder),
``gguf:FILE`` (a GGUF file, dequantised once into a transformers folder), ``llama:FILE``
(a GGUF file run by llama.cpp as it is; ``llama:smollm2`` and ``llama:tiny-random`` are the
built-in models there), ``llama-server:URL``, ``vllm:URL``, ``sglang:URL`` (a model on a
serving engine, :mod:`lmq.runtime.backends.served_models`). A new backend
is one entry of :data:`KINDS` and one module with two functions:

* ``load(spec, *, device, dtype, adapter) -> Backend`` — a new backend for the spec
  (the :class:`~lmq.runtime.engine.Engine` keeps it);
* ``options(device, dtype) -> tuple`` — the settings a load with these arguments ends up
  with (defaults resolved), so that equal loads share one backend.

The module is imported only when a spec of its kind loads, so a kind whose package is not
installed costs nothing until used (and is then an :class:`LmqModelError` saying what to
install).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lmq.errors import LmqModelError, did_you_mean
from lmq.runtime.backends.base import Backend


@dataclass(frozen=True)
class Kind:
    """A kind of backend: its spec ``prefix``, the ``module`` that loads it, and how its
    specs are written (``form``, for help and errors)."""

    prefix: str
    module: str
    form: str


KINDS = (
    Kind("hf", "lmq.runtime.backends.hf_models", "hf:PATH (a transformers model folder)"),
    Kind("gguf", "lmq.runtime.backends.hf_models",
         "gguf:FILE (a GGUF file, converted once for transformers)"),
    Kind("llama", "lmq.runtime.backends.llama_models",
         "llama:FILE (a GGUF file run by llama.cpp; llama:smollm2, llama:tiny-random)"),
    Kind("llama-server", "lmq.runtime.backends.served_models",
         "llama-server:http://HOST:PORT (llama.cpp's server)"),
    Kind("vllm", "lmq.runtime.backends.served_models", "vllm:http://HOST:PORT (a vLLM server)"),
    Kind("sglang", "lmq.runtime.backends.served_models",
         "sglang:http://HOST:PORT (an SGLang server)"),
)
NAMES = {"smollm2": "hf", "tiny-random": "hf"}  # built-in names and the kind that loads them
BACKEND_CHOICES = ("auto", "transformers", "llama")


def canonical(spec: str, adapter: str | None = None) -> str:
    """The spec a built-in name loads as, by ``LMQ_BACKEND``: ``auto`` (the default) runs
    ``smollm2`` on llama.cpp when llama-cpp-python is installed (the same weights, several
    times faster on a CPU: bench/RESULTS.md) unless an adapter needs transformers;
    ``llama`` runs both built-in names there, ``transformers`` neither. Other specs as
    they are."""
    if spec not in NAMES:
        return spec
    choice = os.environ.get("LMQ_BACKEND", "auto").strip().lower() or "auto"
    if choice not in BACKEND_CHOICES:
        raise LmqModelError(f"unknown LMQ_BACKEND {choice!r}",
                            hint=did_you_mean(choice, BACKEND_CHOICES)
                            or "choose " + ", ".join(BACKEND_CHOICES))
    llama = choice == "llama" or (choice == "auto" and spec == "smollm2" and adapter is None
                                  and importlib.util.find_spec("llama_cpp") is not None)
    return f"llama:{spec}" if llama else spec


def known_models() -> list[Any]:
    """The built-in models of every kind, with where each comes from (``lmq models``)."""
    from lmq.runtime.backends import hf_models, llama_models

    return [*hf_models.known_models(), *llama_models.known_models()]


def kind_of(spec: str, known: Iterable[str] = ()) -> Kind:
    """The kind of backend ``spec`` loads with; an unknown prefix or name is an
    :class:`LmqModelError` with a suggestion (among ``known`` names too)."""
    prefix, colon, _ = spec.partition(":")
    by_prefix = {kind.prefix: kind for kind in KINDS}
    if colon and prefix in by_prefix:
        return by_prefix[prefix]
    if spec in NAMES:
        return by_prefix[NAMES[spec]]
    if colon and prefix.isidentifier():
        raise LmqModelError(f"unknown kind of model '{prefix}:' in '{spec}'",
                            hint=did_you_mean(prefix, by_prefix)
                            or "specs are " + ", ".join(kind.form for kind in KINDS))
    names = [*known, *NAMES]
    raise LmqModelError(f"unknown model '{spec}'", hint=did_you_mean(spec, names)
                        or "known models: " + ", ".join([*names, *(k.form for k in KINDS)]))


def _module(spec: str) -> Any:
    return importlib.import_module(kind_of(spec).module)


def cache_key(spec: str, *, adapter: str | None = None, device: str | None = None,
              dtype: str | None = None) -> tuple:
    """What makes two loads the same backend."""
    return (spec, adapter, *_module(spec).options(device, dtype))


def load(spec: str, *, adapter: str | None = None, device: str | None = None,
         dtype: str | None = None) -> Backend:
    """A new backend for ``spec``."""
    backend = _module(spec).load(spec, device=device, dtype=dtype, adapter=adapter)
    assert isinstance(backend, Backend)
    return backend
