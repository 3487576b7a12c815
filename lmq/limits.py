"""The bounds every run observes (LANGUAGE.md section 11)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Configurable bounds; each overrun raises an ``LmqLimitError`` naming the bound."""

    steps: int = 1_000_000  # statements and loop iterations per program instance
    depth: int = 32  # nested-query depth
    string_size: int = 10_000_000  # characters in any string value
    collection_size: int = 1_000_000  # items in any list, dict, set, tuple or range
    int_digits: int = 10_000  # decimal digits of any integer
    timeout: float | None = None  # wall-clock seconds per run
