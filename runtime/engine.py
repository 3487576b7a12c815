"""The engine: what runs share, in one object instead of process globals.

An :class:`Engine` holds the loaded backends (one per spec, adapter, device and dtype),
the :class:`~lmq.runtime.backends.base.ModelView` s of specialists on them, the model
runtimes of each backend (token index, chat format, compiled constraints, mask banks) and
the lock that lets one decoding loop at a time drive the backends, which are stateful (row
storage, KV caches). Loading a model takes seconds and its runtime holds megabytes, so
runs share an engine: :func:`shared_engine` is the one every run and stdlib function uses
unless given another (tests make their own to start from nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from lmq.runtime.backends import registry
from lmq.runtime.backends.base import Backend, ModelView
from lmq.runtime.decoding.model_runtime import ModelRuntime, ModelRuntimes


class Engine:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: a stdlib function inside a run scores
        self.runtimes = ModelRuntimes()
        self._backends: dict[tuple, Backend] = {}
        self._views: dict[tuple, ModelView] = {}
        self._loading = threading.Lock()

    def backend(self, spec: str, *, adapter: str | None = None, device: str | None = None,
                dtype: str | None = None) -> Backend:
        """The backend of ``spec`` (:mod:`lmq.runtime.backends.registry`; a built-in name
        as :func:`~lmq.runtime.backends.registry.canonical` says), loaded on first use;
        ``adapter`` is a PEFT adapter folder merged into its weights."""
        spec = registry.canonical(spec, adapter)
        key = registry.cache_key(spec, adapter=adapter, device=device, dtype=dtype)
        with self._loading:
            backend = self._backends.get(key)
            if backend is None:
                backend = registry.load(spec, adapter=adapter, device=device, dtype=dtype)
                self._backends[key] = backend
            return backend

    def view(self, backend: Backend, name: str | None = None, system: str = "",
             settings: Mapping[str, Any] | None = None) -> ModelView:
        """The view of ``backend`` with a specialist's ``name``, ``system`` prompt and
        generation ``settings`` (none: the backend's plain view), the same object each
        time it is asked for."""
        items = tuple(sorted((settings or {}).items()))
        key = (backend, name, system, items)
        with self._loading:
            view = self._views.get(key)
            if view is None:
                label = backend.name if name is None else f"{name} ({backend.name})"
                view = self._views[key] = ModelView(backend, label, system, dict(items))
            return view

    def runtime(self, backend: Backend) -> ModelRuntime:
        """The model runtime of ``backend``, built on first use."""
        return self.runtimes.get(backend)


_shared: Engine | None = None
_shared_lock = threading.Lock()


def shared_engine() -> Engine:
    """The engine runs share by default, made on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Engine()
        return _shared
