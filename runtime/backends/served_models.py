"""Serving-engine specs → :class:`~lmq.runtime.backends.served.ServedBackend` s.

* ``llama-server:http://HOST:PORT`` — llama.cpp's server;
* ``vllm:http://HOST:PORT`` — vLLM's OpenAI-compatible server;
* ``sglang:http://HOST:PORT`` — SGLang's server.

Options ride on the address as a query, which is not sent: ``tokenizer=`` (a GGUF file,
a transformers model folder, or ``smollm2``/``tiny-random``; default: the file or folder
the server loaded, when it is on this machine), ``inflight=N`` (requests in flight at once;
default: the engine's slot count), ``model=`` (the served model's name, vLLM and SGLang
serving several). ``LMQ_SERVER_API_KEY`` is sent as a bearer token when set.

Connecting probes the server (what it serves, its context, the features it has) and
checks that lmq's copy of the tokenizer splits text exactly as the server's does (its
``/tokenize``): a mismatch is an :class:`LmqModelError`, never silent drift.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from lmq.errors import LmqModelError
from lmq.runtime.backends.base import Vocabulary
from lmq.runtime.backends.served import Dialect, ServedBackend
from lmq.runtime.backends.served_http import Client

DIALECTS = {"llama-server": ("lmq.runtime.backends.served_llama", "LlamaServer"),
            "vllm": ("lmq.runtime.backends.served_vllm", "Vllm"),
            "sglang": ("lmq.runtime.backends.served_sglang", "SGLang")}
OPTIONS = ("tokenizer", "inflight", "model")
# Tokenizer check texts: markup, whitespace runs, digits, accents, CJK and emoji.
PROBE_TEXTS = ("<|im_start|>user\nHello,  world!\n\n\tx = 12345;<|im_end|>",
               " Été, café — naïve. 中文字符 😀🎉 ",
               "def f(a_b):\n    return a_b ** 2  # done   \r\n")


def options(device: str | None, dtype: str | None) -> tuple:
    """A served model runs where the server is: the device and dtype do not apply."""
    return ()


def parse(spec: str) -> tuple[str, str, dict[str, str]]:
    """``(engine kind, server address, options)`` of a spec."""
    kind, _, address = spec.partition(":")
    if kind not in DIALECTS:
        raise LmqModelError(f"unknown serving engine '{kind}' in '{spec}'",
                            hint="write " + ", ".join(f"{k}:http://HOST:PORT" for k in DIALECTS))
    parts = urlsplit(address)
    found = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    for key in found:
        if key not in OPTIONS:
            raise LmqModelError(f"unknown option '{key}' in '{spec}'",
                                hint="options are " + ", ".join(OPTIONS))
    return kind, urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), found


def load(spec: str, *, device: str | None = None, dtype: str | None = None,
         adapter: str | None = None) -> ServedBackend:
    kind, url, found = parse(spec)
    if adapter is not None:
        raise LmqModelError(f"a served model ('{spec}') cannot take an adapter",
                            hint="load the adapter into the engine (vLLM --lora-modules)")
    module, name = DIALECTS[kind]
    dialect: Dialect = getattr(importlib.import_module(module), name)(found.get("model"))
    client = Client(url, api_key=os.environ.get("LMQ_SERVER_API_KEY"))
    info = dialect.probe(client)
    vocabulary = tokenizer_for(found.get("tokenizer"), info.model_path, spec)
    check_tokenizer(vocabulary, dialect, client, spec)
    if info.vocab_size is not None and info.vocab_size != vocabulary.size:
        raise LmqModelError(f"the server at {url} has {info.vocab_size} tokens, lmq's "
                            f"tokenizer {vocabulary.size} ('{spec}')",
                            hint="give the served model's tokenizer with ?tokenizer=PATH")
    inflight = found.get("inflight")
    if inflight is not None and (not inflight.isdigit() or int(inflight) < 1):
        raise LmqModelError(f"inflight must be a positive number, not {inflight!r} ('{spec}')")
    return ServedBackend(spec.partition("?")[0], url, dialect, client, vocabulary, info,
                         int(inflight) if inflight else None)


def tokenizer_for(given: str | None, served_path: str | None, spec: str) -> Vocabulary:
    """lmq's copy of the served model's tokenizer (see the module docstring)."""
    if given in ("smollm2", "tiny-random"):
        from lmq.runtime.backends.hf_models import smollm2_folder, smollm2_gguf

        if importlib.util.find_spec("llama_cpp") is not None:
            return gguf_vocabulary(smollm2_gguf())
        return folder_vocabulary(smollm2_folder())
    path = Path(given).expanduser() if given else \
        Path(served_path) if served_path and Path(served_path).exists() else None
    if path is None:
        raise LmqModelError(f"lmq needs the tokenizer of the model served at '{spec}'",
                            hint="give it with ?tokenizer=PATH (a GGUF file or a "
                            "transformers model folder) after the address")
    if path.is_dir():
        return folder_vocabulary(path)
    if path.is_file() and path.suffix == ".gguf":
        return gguf_vocabulary(path)
    raise LmqModelError(f"tokenizer '{path}' is neither a GGUF file nor a model folder "
                        f"('{spec}')")


def gguf_vocabulary(path: Path) -> Vocabulary:
    """The vocabulary of a GGUF file, read by llama.cpp without its weights."""
    if importlib.util.find_spec("llama_cpp") is None:
        from lmq.runtime.backends.llama_models import LLAMA_INSTALL

        raise LmqModelError(f"reading the tokenizer of {path} needs llama-cpp-python",
                            hint=f"install it with: {LLAMA_INSTALL}")
    from lmq.runtime.backends.llama import api  # llama_cpp, its log silenced
    from lmq.runtime.backends.llama_vocabulary import LlamaVocabulary

    params = api.llama_model_default_params()
    params.vocab_only = True
    model = api.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise LmqModelError(f"llama.cpp cannot read the tokenizer of {path}")
    vocabulary = LlamaVocabulary(api, model)
    vocabulary.model = model  # type: ignore[attr-defined]  # keeps the vocab's owner alive
    return vocabulary


def folder_vocabulary(folder: Path) -> Vocabulary:
    """The vocabulary of a transformers model folder (tokenizer and configs only)."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from lmq.runtime.backends.hf_vocabulary import HfVocabulary, eos_ids

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        config: Any = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise LmqModelError(f"cannot read the tokenizer in {folder}: {error}") from None
    try:
        generation: Any = GenerationConfig.from_pretrained(folder)
    except OSError:
        generation = None
    text = config.get_text_config(decoder=True)
    size = int(getattr(text, "vocab_size", 0) or len(tokenizer))
    return HfVocabulary(tokenizer, max(size, len(tokenizer)), eos_ids(tokenizer, generation))


def check_tokenizer(vocabulary: Vocabulary, dialect: Dialect, client: Client,
                    spec: str) -> None:
    """Raise unless lmq's tokenizer and the server's split the probe texts alike."""
    for text in PROBE_TEXTS:
        ours, theirs = vocabulary.encode(text), dialect.tokenize(client, text)
        if ours != theirs:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                      min(len(ours), len(theirs)))
            raise LmqModelError(
                f"lmq's tokenizer does not match the server's at '{spec}': {text!r} is "
                f"{ours[at:at + 4]} from token {at} here, {theirs[at:at + 4]} there",
                hint="give the served model's own tokenizer with ?tokenizer=PATH")
