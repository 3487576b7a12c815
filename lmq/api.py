"""The embedded Python API: ``lmq.query`` and ``lmq.run``.

Compiling never loads a model; the first call of a :class:`Query` does (and keeps it for
the process), so building queries at import time of an application is cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmq.checks import CheckedProgram, compile_source
from lmq.decoders import DecoderSpec
from lmq.errors import LmqError
from lmq.limits import Limits
from lmq.result import Result


class Query:
    """A compiled lmq program; call it with keyword parameters to run it."""

    def __init__(self, checked: CheckedProgram, model: Any = None,
                 tools: Mapping[str, Any] | None = None, decoder: DecoderSpec | None = None,
                 limits: Limits | None = None) -> None:
        self.checked = checked
        self.model = model
        self.tools = dict(tools or {})
        self.decoder = decoder
        self.limits = limits or Limits()

    @property
    def params(self) -> tuple[str, ...]:
        return self.checked.params

    def __call__(self, **params: Any) -> Result | list[Result]:
        answer = self._execute([params], fail_fast=True)[0]
        assert not isinstance(answer, LmqError)
        return answer

    def _execute(self, inputs: list[Mapping[str, Any]], fail_fast: bool,
                 seed: int | None = None) -> list[Any]:
        from lmq.runtime.run import execute

        decoder = self.decoder
        if seed is not None:
            decoder = dataclasses.replace(decoder or self.checked.decoder, seed=seed)
        return execute(self.checked, inputs, model=self.model, tools=self.tools,
                       decoder=decoder, limits=self.limits, fail_fast=fail_fast)

    def __repr__(self) -> str:
        return f"Query(params={list(self.params)})"


def load_source(source_or_path: str | Path) -> tuple[str, str]:
    """(text, filename) of program text or of a ``.lmq`` file path."""
    if isinstance(source_or_path, Path) or (
            isinstance(source_or_path, str) and source_or_path.endswith(".lmq")
            and "\n" not in source_or_path and Path(source_or_path).is_file()):
        path = Path(source_or_path)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as error:
            raise LmqError(f"cannot read {path}: {error}") from None
    return str(source_or_path), "<string>"


def query(source_or_path: str | Path, *, model: Any = None,
          tools: Mapping[str, Any] | None = None, decoder: DecoderSpec | None = None,
          limits: Limits | None = None) -> Query:
    """Compile an lmq program (source text or a ``.lmq`` path) into a callable Query."""
    text, filename = load_source(source_or_path)
    return Query(compile_source(text, filename), model, tools, decoder, limits)


def run(source: str | Path, *, model: Any = None, tools: Mapping[str, Any] | None = None,
        **params: Any) -> Result | list[Result]:
    """Compile and run a program once."""
    return query(source, model=model, tools=tools)(**params)
