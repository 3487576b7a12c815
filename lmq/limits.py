"""The bounds every run observes (LANGUAGE.md section 11)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from lmq.errors import LmqParameterError


@dataclass(frozen=True)
class Limits:
    """Configurable bounds; each overrun raises an ``LmqLimitError`` naming the bound
    (``limits.steps``, ``limits.memory``...).

    ``string_size`` also bounds the prompt of one program instance, everything it prints,
    and any value written out (``str``, ``repr``, ``{value}``). ``nesting`` bounds how
    deeply containers may nest in a value that is written out, compared, hashed or handed
    back to the host. ``memory`` bounds the approximate bytes held by the program's own
    values (not the model's), whatever their size, together for all rows of one instance
    (its samples, its beam branches, and nested work its tools and stdlib calls start); it
    is measured now and then, when the values made since the last measurement pass a
    quarter of it. ``rows`` bounds ``n`` of ``sample`` and ``beam`` (each row holds a KV
    cache and a logits row of the vocabulary's size). ``timeout`` is wall-clock seconds per
    program instance, counted from its start, checked between statements and loop
    iterations (and between decoding steps).

    Nested work (a stdlib function or tool that runs lmq programs while the program waits
    for it) runs under both its own limits and the caller's remaining steps, time, depth
    and memory (:mod:`lmq.runtime.interpreter.budget`)."""

    steps: int = 1_000_000  # statements and loop iterations per program instance
    depth: int = 32  # nested-query depth
    string_size: int = 10_000_000  # characters in any string value
    collection_size: int = 1_000_000  # items in any list, dict, set, tuple or range
    int_digits: int = 10_000  # decimal digits of any integer
    nesting: int = 100  # nesting depth of containers written out, compared or returned
    memory: int = 1_000_000_000  # approximate bytes of the program's values
    rows: int = 256  # rows one instance decodes at once: sample(n) and beam(n)
    timeout: float | None = None  # wall-clock seconds per run

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "timeout":
                if value is None:
                    continue
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and value > 0 and value == value
                expected = "a positive number of seconds or None"
            else:
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
                expected = "a positive integer"
            if not ok:
                raise LmqParameterError(f"limits.{field.name} must be {expected}, "
                                        f"not {value!r}")
