"""Configuration: defaults and model aliases from files and ``LMQ_*`` variables.

Where a setting comes from, first match wins:

1. the caller (CLI flag, Python argument, ``%%lmq`` option);
2. the program (its ``from`` and decoder clauses);
3. the environment: ``LMQ_MODEL``, ``LMQ_DECODER``, ``LMQ_BATCH_SIZE``, ``LMQ_LOG_LEVEL``;
4. the configuration file: the nearest ``lmq.toml`` (keys at the top level) or
   ``pyproject.toml`` with a ``[tool.lmq]`` table, looked up from the current directory
   through its parents (in one directory ``lmq.toml`` wins); ``LMQ_CONFIG=FILE`` names
   one explicitly;
5. the built-in defaults (``smollm2``, ``argmax``, batch size 16, log level ``WARNING``).

The file's keys::

    [tool.lmq]
    model = "small"             # default model: a name, an alias or a spec
    decoder = "sample(n=2)"     # default decoder for programs without a decoder clause
    batch_size = 16             # instances decoded together by `lmq run --inputs`
    log_level = "INFO"

    [tool.lmq.models]           # aliases, resolved before a model is loaded
    small = "smollm2"
    local = "hf:models/my-model"   # relative paths are relative to the file

    [tool.lmq.specialists.law]  # a specialist: usable wherever a model name is
    model = "small"             # a name, alias or spec; default: the default model
    description = "Contracts, courts and statutes."   # for lmq.stdlib.routing.route
    examples = ["Can my landlord keep the deposit?"]
    system = "You are a careful legal assistant."     # opens its conversations
    adapter = "adapters/law"    # a PEFT adapter folder (needs the peft package)
    temperature = 0.7           # generation settings: temperature, top_k, top_p,
    max_tokens = 128            #   max_tokens (see :class:`Specialist`)

The file is read afresh on each run (a few ``stat`` calls and a small TOML parse), so an
edit takes effect at once. ``LMQ_NO_CACHE=1`` disables every cache of lmq: compiled
queries, token indexes on disk.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmq.decoders import _check as decoder_argument_problem
from lmq.errors import LmqError, did_you_mean

DEFAULT_MODEL = "smollm2"
DEFAULT_BATCH_SIZE = 16
DEFAULT_LOG_LEVEL = "WARNING"
KEYS = ("model", "decoder", "batch_size", "log_level", "models", "specialists")
GENERATION_KEYS = ("temperature", "top_k", "top_p", "max_tokens")  # DecoderSpec fields
SPECIALIST_KEYS = ("model", "description", "examples", "system", "adapter", *GENERATION_KEYS)


class LmqConfigError(LmqError):
    """A configuration file or variable is malformed."""


@dataclass(frozen=True)
class Config:
    """The settings of one configuration file (empty when there is none)."""

    path: Path | None = None
    model: str | None = None
    decoder: str | None = None
    batch_size: int | None = None
    log_level: str | None = None
    models: Mapping[str, str] = field(default_factory=dict)
    specialists: Mapping[str, Specialist] = field(default_factory=dict)


@dataclass(frozen=True)
class Specialist:
    """A model plus what it is for (LANGUAGE.md section 9), usable wherever a model name is.

    ``model`` is a model name, alias or spec (None: the run's model, else the default
    model, see :func:`specialist_model`); ``description`` and ``examples`` are what
    ``lmq.stdlib.routing.route`` compares a request with; ``system`` opens every
    conversation it decodes (a system turn in a chat, a leading paragraph in a plain
    prompt); ``adapter`` is a PEFT adapter folder merged into the model's weights;
    ``settings`` are generation settings, ``(DecoderSpec field, value)`` pairs: they
    override the run decoder's fields for every hole the specialist decodes, whether it is
    the run's model or runs one statement (inline ``from``, ``route``).
    """

    name: str
    model: str | None = None
    description: str = ""
    examples: tuple[str, ...] = ()
    system: str | None = None
    adapter: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain data, in the configuration's keys (unset ones left out)."""
        entry: dict[str, Any] = {"model": self.model, "description": self.description,
                                 "examples": list(self.examples)}
        for key in ("system", "adapter"):
            if getattr(self, key) is not None:
                entry[key] = getattr(self, key)
        entry.update(self.settings)
        return entry


def parse_specialist(name: str, entry: Any, base: Path | None = None,
                     where: str = "route") -> Specialist:
    """A specialist from its table (or a bare description string). ``base`` anchors
    relative ``hf:``/``gguf:`` models and adapter folders (the configuration's folder);
    ``where`` names the source in error messages."""
    if isinstance(entry, str):
        entry = {"description": entry}
    if not isinstance(entry, Mapping):
        raise LmqConfigError(f"{where}: specialist '{name}' must be a table")
    for key in entry:
        if key == "decoder":
            raise LmqConfigError(f"{where}: specialist '{name}': 'decoder' is not a "
                                 "specialist setting", hint="the program or the caller "
                                 "chooses the decoder; a specialist may set "
                                 + ", ".join(GENERATION_KEYS))
        if key not in SPECIALIST_KEYS:
            raise LmqConfigError(f"{where}: specialist '{name}' has an unknown key '{key}'",
                                 hint=did_you_mean(key, SPECIALIST_KEYS)
                                 or f"keys: {', '.join(SPECIALIST_KEYS)}")
    for key in ("model", "description", "system", "adapter"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise LmqConfigError(f"{where}: specialist '{name}': '{key}' must be a string")
    examples = entry.get("examples", [])
    if not isinstance(examples, (list, tuple)) or \
            not all(isinstance(e, str) for e in examples):
        raise LmqConfigError(f"{where}: specialist '{name}': 'examples' must be a list "
                             "of strings")
    settings = []
    for key in GENERATION_KEYS:
        if key in entry:
            problem = decoder_argument_problem(key, entry[key])
            if problem:
                raise LmqConfigError(f"{where}: specialist '{name}': '{key}' must be "
                                     f"{problem}, not {entry[key]!r}")
            settings.append((key, entry[key]))
    model, adapter = entry.get("model"), entry.get("adapter")
    if base is not None:
        model = anchor_path(model, base) if model is not None else None
        if adapter is not None and not Path(adapter).expanduser().is_absolute():
            adapter = str(base / Path(adapter).expanduser())
    return Specialist(name, model, entry.get("description") or "", tuple(examples),
                      entry.get("system"), adapter, tuple(settings))


def caching_enabled() -> bool:
    """False when ``LMQ_NO_CACHE`` is set to anything but ``""`` or ``"0"``."""
    return os.environ.get("LMQ_NO_CACHE", "") in ("", "0")


def find_config_file(start: Path | None = None) -> Path | None:
    """``LMQ_CONFIG``, else the nearest ``lmq.toml`` or ``pyproject.toml`` with
    ``[tool.lmq]`` from ``start`` (default: the current directory) upwards."""
    explicit = os.environ.get("LMQ_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise LmqConfigError(f"LMQ_CONFIG names no file: {explicit}")
        return path
    folder = (start or Path.cwd()).resolve()
    for directory in (folder, *folder.parents):
        candidate = directory / "lmq.toml"
        if candidate.is_file():
            return candidate
        candidate = directory / "pyproject.toml"
        if candidate.is_file() and _has_lmq_table(candidate):
            return candidate
    return None


def _has_lmq_table(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "tool.lmq" not in text:  # cheap pre-check before parsing
        return False
    try:
        return "lmq" in tomllib.loads(text).get("tool", {})
    except tomllib.TOMLDecodeError:
        return False


def load_config(start: Path | None = None) -> Config:
    """The configuration in force for a run started in ``start`` (default: cwd)."""
    path = find_config_file(start)
    return Config() if path is None else read_config(path)


def read_config(path: Path) -> Config:
    """The configuration of one file (``lmq.toml`` keys at the top level, else
    ``[tool.lmq]``)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise LmqConfigError(f"cannot read configuration {path}: {error}") from None
    if path.name == "pyproject.toml" or "lmq" in data.get("tool", {}):
        data = data.get("tool", {}).get("lmq", {})
    return _validate(data, path)


def _validate(data: dict[str, Any], path: Path) -> Config:
    for key in data:
        if key not in KEYS:
            raise LmqConfigError(f"{path}: unknown key '{key}'",
                                 hint=did_you_mean(key, KEYS) or f"keys: {', '.join(KEYS)}")
    for key in ("model", "decoder", "log_level"):
        if key in data and not isinstance(data[key], str):
            raise LmqConfigError(f"{path}: '{key}' must be a string")
    batch_size = data.get("batch_size")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise LmqConfigError(f"{path}: 'batch_size' must be a positive integer")
    models = data.get("models", {})
    if not isinstance(models, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in models.items()):
        raise LmqConfigError(f"{path}: [models] must map names to spec strings")
    table = data.get("specialists", {})
    if not isinstance(table, dict):
        raise LmqConfigError(f"{path}: [specialists] must be a table of tables")
    both = sorted(set(table) & set(models))
    if both:
        raise LmqConfigError(f"{path}: '{both[0]}' is both a model alias and a specialist")
    return Config(path, data.get("model"), data.get("decoder"), batch_size,
                  data.get("log_level"),
                  {name: anchor_path(spec, path.parent) for name, spec in models.items()},
                  {name: parse_specialist(name, entry, path.parent, str(path))
                   for name, entry in table.items()})


def anchor_path(spec: str, base: Path) -> str:
    """``hf:``, ``gguf:`` and ``llama:`` paths relative to the configuration file's folder
    (``llama:smollm2`` and ``llama:tiny-random`` are names, not paths)."""
    if spec in ("llama:smollm2", "llama:tiny-random"):
        return spec
    for prefix in ("hf:", "gguf:", "llama:"):
        if spec.startswith(prefix):
            target = Path(spec[len(prefix):]).expanduser()
            if not target.is_absolute():
                return prefix + str(base / target)
    return spec


def default_model_name(config: Config | None = None) -> str:
    """``LMQ_MODEL``, else the configuration's ``model``, else ``smollm2``."""
    config = load_config() if config is None else config
    return os.environ.get("LMQ_MODEL") or config.model or DEFAULT_MODEL


def specialist_model(specialist: Specialist, config: Config | None = None) -> str:
    """The model a specialist runs on: its ``model``, else ``LMQ_MODEL`` or the
    configuration's ``model`` unless that names a specialist, else ``smollm2``."""
    if specialist.model is not None:
        return specialist.model
    config = load_config() if config is None else config
    for name in (os.environ.get("LMQ_MODEL"), config.model):
        if name and name not in config.specialists:
            return name
    return DEFAULT_MODEL


def default_decoder_text(config: Config | None = None) -> str | None:
    """``LMQ_DECODER``, else the configuration's ``decoder``, else None (``argmax``)."""
    config = load_config() if config is None else config
    return os.environ.get("LMQ_DECODER") or config.decoder


def default_batch_size(config: Config | None = None) -> int:
    text = os.environ.get("LMQ_BATCH_SIZE")
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise LmqConfigError(f"LMQ_BATCH_SIZE must be a positive integer, not {text!r}")
        return value
    config = load_config() if config is None else config
    return config.batch_size or DEFAULT_BATCH_SIZE


def log_level(config: Config | None = None) -> str:
    if os.environ.get("LMQ_LOG_LEVEL"):
        return os.environ["LMQ_LOG_LEVEL"].upper()
    config = load_config() if config is None else config
    return (config.log_level or DEFAULT_LOG_LEVEL).upper()


def resolve_model(name: str, config: Config | None = None) -> str:
    """Follow ``[tool.lmq.models]`` aliases from ``name`` to a spec string (an alias may
    name another alias; a cycle is an error)."""
    config = load_config() if config is None else config
    seen = [name]
    while name in config.models:
        name = config.models[name]
        if name in seen:
            raise LmqConfigError(f"{config.path}: model aliases form a cycle: "
                                 f"{' -> '.join([*seen, name])}")
        seen.append(name)
    return name
