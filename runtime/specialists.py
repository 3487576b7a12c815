"""What a program or caller names as a model, turned into a backend (LANGUAGE.md section 9).

A name is, in this order: a specialist of the configuration (:class:`lmq.config.Specialist`),
a ``[tool.lmq.models]`` alias, a built-in model (``smollm2``, ``tiny-random``) or a spec
(``hf:PATH``, ``gguf:FILE``). What ``lmq.stdlib.routing.route`` returns carries its
specialist with it, so inline candidates (not in the configuration) resolve too.

A specialist with a system prompt or generation settings decodes on a
:class:`SpecialistBackend`: a view of its model's backend with its own name, system prompt
and settings (the decoding loop applies them to the holes the view decodes). The view
shares the model's weights and row storage, but the decoding loop keys contexts and
runtimes by backend, so each specialist keeps its own rows (its system prompt is part of
what they hold) and its own runtime (its model's token index again, from the disk cache,
and its own guides).
Different models, with different tokenizers or not, each keep their own cache and index.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

from lmq.config import Config, Specialist, parse_specialist, resolve_model, specialist_model
from lmq.decoders import DecoderSpec
from lmq.errors import LmqModelError, LmqParameterError, did_you_mean
from lmq.runtime.backends.hf_models import known_models, load_backend

SPEC_PREFIXES = ("hf:", "gguf:")


class SpecialistBackend:
    """A specialist's view of a backend: the same model and rows, its own ``name`` (for the
    trace) and ``system`` prompt (read by :class:`lmq.runtime.decoding.context.RowContext`).
    Everything else is the base backend's."""

    def __init__(self, base: Any, specialist: Specialist) -> None:
        self.base = base
        self.specialist = specialist
        self.name = f"{specialist.name} ({getattr(base, 'name', 'model')})"
        self.system = specialist.system or ""
        self.settings = dict(specialist.settings)  # read by Decoding.decoder_for

    def __getattr__(self, attribute: str) -> Any:  # only for what __init__ did not set
        if attribute == "base":
            raise AttributeError(attribute)
        return getattr(self.base, attribute)


# Views live as long as the process, like their base backends: runtimes are keyed by id().
_VIEWS: dict[tuple[int, str, str, tuple], SpecialistBackend] = {}
_VIEWS_LOCK = threading.Lock()


def specialist_backend(base: Any, specialist: Specialist) -> SpecialistBackend:
    """The process-wide view of ``base`` for ``specialist`` (one per name and prompt)."""
    key = (id(base), specialist.name, specialist.system or "", specialist.settings)
    with _VIEWS_LOCK:
        view = _VIEWS.get(key)
        if view is None:
            view = _VIEWS[key] = SpecialistBackend(base, specialist)
        return view


class ModelResolver:
    """Resolves the models of one run, each name once: ``resolver(name)`` is the backend
    for an inline ``from`` value (None: the run's ``default``). ``decoder`` is the run's
    decoder with the default model's generation settings, if it is a specialist."""

    def __init__(self, config: Config, default: Any, decoder: DecoderSpec) -> None:
        check_model_object(default)
        self.config = config
        self.default = default
        self._backends: dict[Any, Any] = {}
        specialist = self.specialist(default)
        if specialist is not None and specialist.settings:
            decoder = dataclasses.replace(decoder, **dict(specialist.settings))
        self.decoder = decoder

    def specialist(self, model: Any) -> Specialist | None:
        """The specialist ``model`` names, if it names one."""
        carried = getattr(model, "specialist", None)  # a routing decision
        if isinstance(model, str) and isinstance(carried, Mapping):
            return parse_specialist(getattr(model, "name", str(model)), carried)
        if isinstance(model, str):
            return self.config.specialists.get(model)
        return None

    def __call__(self, model: Any) -> Any:
        model = self.default if model is None else model
        check_model_object(model, "the model of an inline 'from'")
        if not isinstance(model, str):
            return model  # a backend object passed by the host
        specialist = self.specialist(model)
        key: Any = specialist if specialist is not None else str(model)
        if key not in self._backends:
            if specialist is not None:
                self._backends[key] = self._load_specialist(specialist)
            else:
                self._backends[key] = self._load(str(model))
        return self._backends[key]

    def _load(self, name: str, adapter: str | None = None) -> Any:
        spec = resolve_model(name, self.config)
        if spec in self.config.specialists:
            raise LmqModelError(f"the alias '{name}' names the specialist '{spec}'",
                                hint="an alias names a model; use the specialist's name")
        if not spec.startswith(SPEC_PREFIXES):
            known = [info.name for info in known_models()]
            if spec not in known:
                names = [*self.config.specialists, *self.config.models, *known]
                raise LmqModelError(f"unknown model or specialist '{name}'",
                                    hint=did_you_mean(name, names) or "known: "
                                    + ", ".join([*names, "hf:PATH", "gguf:FILE"]))
        return load_backend(spec, adapter=adapter)

    def _load_specialist(self, specialist: Specialist) -> Any:
        base = self._base(specialist)
        return specialist_backend(base, specialist) if specialist.system or \
            specialist.settings else base

    def _base(self, specialist: Specialist) -> Any:
        """The backend a specialist runs on: its model, else the run's default model (or,
        when that is a specialist, that one's model)."""
        model: Any = specialist.model
        if model is None:
            default = self.specialist(self.default)
            model = self.default if default is None else \
                specialist_model(default, self.config)
        if not isinstance(model, str):
            if specialist.adapter is not None:
                raise LmqModelError(f"specialist '{specialist.name}' has an adapter, so it "
                                    "needs a model name or spec, not a backend object")
            return model
        if model in self.config.specialists:
            raise LmqModelError(f"specialist '{specialist.name}' runs on '{model}', which "
                                "is a specialist too", hint="name a model, alias or spec")
        return self._load(model, specialist.adapter)


def check_model_object(model: Any, what: str = "parameter 'model'") -> None:
    """A model is a name or spec (``str``) or a backend object (it has ``forward``)."""
    if model is not None and not isinstance(model, str) and not hasattr(model, "forward"):
        raise LmqParameterError(f"{what} must be a model name, spec or backend object, "
                                f"not {type(model).__name__}")
