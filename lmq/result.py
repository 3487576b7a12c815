"""The value of a run (LANGUAGE.md section 10).

A :class:`Result` is plain data: it prints readably, converts to JSON (``to_dict``,
``to_json``) and renders as HTML in notebooks (``_repr_html_``, :mod:`lmq.html`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lmq import ir


@dataclass
class Result:
    """What one program instance produced.

    ``variables`` maps each hole to its last value, ``values`` to all of its values in
    order; ``prompt`` is the final prompt text (tags removed); ``logprobs`` holds the
    per-token log-probabilities of each hole's last value; ``score`` is their total over
    all holes; ``stats`` counts the forward passes and tokens of this instance's rows;
    ``trace`` lists the model calls of the run this result came from.

    ``segments`` splits ``prompt`` into ``(text, hole)`` pieces in order (``hole`` is the
    name of the hole whose value the text is, or None for prompt text; their texts join to
    ``prompt``); ``constraints`` maps each top-level hole to its constraints as written.
    """

    variables: dict[str, Any]
    values: dict[str, list[Any]]
    prompt: str
    return_value: Any = None
    distribution: dict[str, dict[str, float]] = field(default_factory=dict)
    logprobs: dict[str, list[float]] = field(default_factory=dict)
    score: float = 0.0
    trace: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    segments: list[tuple[str, str | None]] = field(default_factory=list)
    constraints: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.variables[name]

    def __contains__(self, name: object) -> bool:
        return name in self.variables

    def __iter__(self) -> Iterator[str]:
        return iter(self.variables)

    def to_dict(self, trace: bool = True) -> dict[str, Any]:
        """A JSON-ready dict of every field (values that JSON cannot hold become their
        ``repr``); ``trace=False`` leaves the trace out."""
        data = {
            "variables": _jsonable(self.variables),
            "values": _jsonable(self.values),
            "prompt": self.prompt,
            "return_value": _jsonable(self.return_value),
            "distribution": _jsonable(self.distribution),
            "logprobs": _jsonable(self.logprobs),
            "score": _jsonable(self.score),
            "trace": _jsonable(self.trace),
            "stats": _jsonable(self.stats),
            "segments": [[text, hole] for text, hole in self.segments],
            "constraints": self.constraints,
        }
        if not trace:
            del data["trace"]
        return data

    def to_json(self, **kwargs: Any) -> str:
        trace = kwargs.pop("trace", True)
        return json.dumps(self.to_dict(trace=trace), ensure_ascii=False, allow_nan=False,
                          **kwargs)

    def __repr__(self) -> str:
        shown = [f"{name}={_short(value)}" for name, value in self.variables.items()]
        if self.return_value is not None:
            shown.append(f"return_value={_short(self.return_value)}")
        shown.append(f"score={self.score:.3f}" if math.isfinite(self.score)
                     else f"score={self.score}")
        return f"Result({', '.join(shown)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's text display: the repr, then the prompt."""
        printer.text(repr(self) if cycle else f"{self!r}\n{self.prompt}")

    def _repr_html_(self) -> str:
        from lmq.html import result_html

        return result_html(self)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def _jsonable(value: Any) -> Any:
    """``value`` as strict JSON data: non-finite floats become the strings ``"inf"``,
    ``"-inf"``, ``"nan"``; objects JSON cannot hold become their ``repr``."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


class BatchResults(list):
    """The answers of ``Query.batch``, in input order (a :class:`Result`, a list of them
    for branching decoders, or the input's ``LmqError``), with ``stats`` for the whole
    batch: ``forward_passes`` counts each shared forward pass once."""

    stats: dict[str, Any]

    def __init__(self, items: Any = (), stats: dict[str, Any] | None = None) -> None:
        super().__init__(items)
        self.stats = dict(stats or {})

    def _repr_html_(self) -> str:
        from lmq.html import results_html

        return results_html(list(self))

    @property
    def errors(self) -> list[tuple[int, Exception]]:
        """``(index, error)`` of each input that failed."""
        return [(i, item) for i, item in enumerate(self) if isinstance(item, Exception)]


# ------------------------------------------------------------------------ constraints


def hole_constraints(program: ir.Program) -> dict[str, str]:
    """Each top-level hole's constraints as written in the source (its type or pattern,
    then the conjuncts of the ``where`` clauses that mention it), for legends and hovers.
    A hole filled in several statements lists each statement's distinct constraints."""
    from lmq.constraints import constraints_for

    text = program.source.text
    found: dict[str, list[str]] = {}
    for stmt in _prompts(program.body):
        for part in stmt.parts:
            if not isinstance(part, ir.Hole):
                continue
            pieces = found.setdefault(part.name, [])
            if part.query is not None:
                pieces.append(f"nested query {text[part.query.span.start:part.query.span.end]}"
                              if part.query.span.end else "nested query")
            elif part.type:
                pieces.append(part.type)
            elif part.regex is not None:
                pieces.append(f"r{part.regex!r}")
            try:
                items = constraints_for(part.name, stmt.where, program.where)
            except Exception:  # noqa: BLE001 - the checks reported it; show what is there
                items = []
            for item in items:
                pieces.append(text[item.span.start:item.span.end] if item.span.end
                              else type(item).__name__)
    if program.distribution is not None:
        distribution = program.distribution
        found.setdefault(distribution.hole, []).append(
            text[distribution.span.start:distribution.span.end].strip())
    return {name: " and ".join(dict.fromkeys(pieces)) for name, pieces in found.items()}


def _prompts(body: tuple[ir.Stmt, ...]) -> Iterator[ir.Prompt]:
    """The prompt statements of a body, nested blocks included, query definitions not."""
    for stmt in body:
        if isinstance(stmt, ir.Prompt):
            yield stmt
        elif isinstance(stmt, ir.If):
            yield from _prompts(stmt.body)
            yield from _prompts(stmt.orelse)
        elif isinstance(stmt, (ir.For, ir.While)):
            yield from _prompts(stmt.body)
