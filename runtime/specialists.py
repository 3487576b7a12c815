"""What a program or caller names as a model, turned into a model view (LANGUAGE.md
section 9).

A name is, in this order: a specialist of the configuration (:class:`lmq.config.Specialist`),
a ``[tool.lmq.models]`` alias, a built-in model (``smollm2``, ``tiny-random``) or a spec
(``hf:PATH``, ``gguf:FILE``: :mod:`lmq.runtime.backends.registry`). A router's choice
(:class:`~lmq.runtime.decoding.plans.Routed`, what ``lmq.stdlib.routing.route`` returns)
carries its specialist with it, so inline candidates (not in the configuration) resolve too.

Every model decodes on a :class:`~lmq.runtime.backends.base.ModelView` of its backend: a
specialist's view carries its name, system prompt and generation settings (its adapter is
merged into the backend it loads); a plain model's view carries none. Views of one backend
share its weights, rows and runtime; each keeps its own contexts, since its system prompt
is part of what they hold. Different models, with different tokenizers or not, each keep
their own cache and token index.
"""

from __future__ import annotations

from typing import Any

from lmq.config import Config, Specialist, parse_specialist, resolve_model, specialist_model
from lmq.errors import LmqModelError, LmqParameterError, did_you_mean
from lmq.runtime.backends import registry
from lmq.runtime.backends.base import Backend, ModelView
from lmq.runtime.backends.registry import known_models
from lmq.runtime.decoding.model_choices import Routed
from lmq.runtime.engine import Engine
from lmq.runtime.interpreter.boundary import type_name


class ModelResolver:
    """Resolves the models of one run, each name once: ``resolver(model)`` is the view for
    an inline ``from`` value (None: the run's ``default``)."""

    def __init__(self, config: Config, default: Any, engine: Engine) -> None:
        check_model_object(default)
        self.config = config
        self.default = default
        self.engine = engine
        self._views: dict[Any, ModelView] = {}

    def specialist(self, model: Any) -> Specialist | None:
        """The specialist ``model`` names, if it names one."""
        if _is(model, Routed) and model.specialist is not None:
            return parse_specialist(model.name, model.specialist)
        if _is(model, str):
            return self.config.specialists.get(model)
        return None

    def __call__(self, model: Any = None) -> ModelView:
        model = self.default if model is None else model
        check_model_object(model, "the model of an inline 'from'")
        if _is(model, ModelView):
            return model
        if _is(model, Backend):  # a backend object passed by the host
            return self.engine.view(model)
        specialist = self.specialist(model)
        key: Any = specialist if specialist is not None else str(model)
        if key not in self._views:
            if specialist is not None:
                self._views[key] = self._specialist_view(specialist)
            else:
                self._views[key] = self.engine.view(self._load(str(model)))
        return self._views[key]

    def _load(self, name: str, adapter: str | None = None) -> Backend:
        spec = resolve_model(name, self.config)
        if spec in self.config.specialists:
            raise LmqModelError(f"the alias '{name}' names the specialist '{spec}'",
                                hint="an alias names a model; use the specialist's name")
        try:
            registry.kind_of(spec)
        except LmqModelError as error:
            names = [*self.config.specialists, *self.config.models,
                     *(info.name for info in known_models())]
            raise LmqModelError(f"unknown model or specialist '{name}'",
                                hint=did_you_mean(name, names) or error.hint) from None
        return self.engine.backend(spec, adapter=adapter)

    def _specialist_view(self, specialist: Specialist) -> ModelView:
        base = self._base(specialist)
        if not (specialist.system or specialist.settings):
            return self.engine.view(base)
        return self.engine.view(base, specialist.name, specialist.system or "",
                                dict(specialist.settings))

    def _base(self, specialist: Specialist) -> Backend:
        """The backend a specialist runs on: its model, else the run's default model (or,
        when that is a specialist, that one's model)."""
        model: Any = specialist.model
        if model is None:
            default = self.specialist(self.default)
            model = self.default if default is None else \
                specialist_model(default, self.config)
        if _is(model, (Backend, ModelView)):
            if specialist.adapter is not None:
                raise LmqModelError(f"specialist '{specialist.name}' has an adapter, so it "
                                    "needs a model name or spec, not a backend object")
            return model if _is(model, Backend) else model.backend
        if model in self.config.specialists:
            raise LmqModelError(f"specialist '{specialist.name}' runs on '{model}', which "
                                "is a specialist too", hint="name a model, alias or spec")
        return self._load(model, specialist.adapter)


def check_model_object(model: Any, what: str = "parameter 'model'") -> None:
    """A model is a name or spec (``str``), a backend object (a subclass of
    :class:`~lmq.runtime.backends.base.Backend`) or a model view. Any other object is
    refused by its type alone: nothing of it is read, nothing of it is called."""
    if model is not None and not _is(model, (str, Backend, ModelView)):
        raise LmqParameterError(f"{what} must be a model name, spec or backend object, "
                                f"not {type_name(model)}")


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    """``isinstance`` by the value's type alone (``isinstance`` would believe a
    ``__class__`` the object claims)."""
    return issubclass(type(value), kind)
