"""The value of a run (LANGUAGE.md section 10)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    """What one program instance produced.

    ``variables`` maps each hole to its last value, ``values`` to all of its values in
    order; ``prompt`` is the final prompt text (tags removed); ``logprobs`` holds the
    per-token log-probabilities of each hole's last value; ``score`` is their total over
    all holes; ``stats`` counts the forward passes and tokens of this instance's rows.
    """

    variables: dict[str, Any]
    values: dict[str, list[Any]]
    prompt: str
    return_value: Any = None
    distribution: dict[str, dict[str, float]] = field(default_factory=dict)
    logprobs: dict[str, list[float]] = field(default_factory=dict)
    score: float = 0.0
    trace: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.variables[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "variables": _jsonable(self.variables),
            "values": _jsonable(self.values),
            "prompt": self.prompt,
            "return_value": _jsonable(self.return_value),
            "distribution": self.distribution,
            "logprobs": self.logprobs,
            "score": self.score,
            "trace": self.trace,
            "stats": self.stats,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.variables.items())
        return f"Result({shown})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
