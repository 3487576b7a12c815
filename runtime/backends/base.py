"""The backend protocol: what the decoding loop may ask of a language model.

A backend holds *rows*: sequence slots, each with its own context (the tokens fed to it so far)
kept as a KV cache for the whole program, so text appended between holes is never re-encoded.
Rows are named by integer handles; a handle is never reused after ``release``.

Everything crossing this boundary is plain data: token ids in, float32 logits out, row handles.
A backend never sees interpreter state (STYLE.md principle 7). Prompt and generated token
counts are kept by the decoding loop; a backend only counts its own work (:class:`BackendStats`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


@dataclass
class BackendStats:
    """Counters of the work a backend did. ``tokens_fed`` sums the tokens of every row of every
    forward (padding excluded); ``rows_fed`` sums the rows of every forward; ``score()`` forwards
    count as forward passes and add their fed tokens."""

    forward_passes: int = 0
    tokens_fed: int = 0
    rows_fed: int = 0
    score_calls: int = 0
    compactions: int = 0

    def snapshot(self) -> dict[str, int]:
        """The counters as a new dict (later work does not change it)."""
        return asdict(self)


@runtime_checkable
class Backend(Protocol):
    """A causal language model behind row handles.

    Contracts shared by every implementation:

    * ``forward`` appends each fed row's tokens (1..L of them, lengths may differ) to that row in
      one model forward and returns float32 logits ``[len(feeds), vocab_size]`` for each row's last
      fed token, in the order of ``feeds``' keys, on the backend's ``device``. The caller may
      modify the returned tensor in place (masking); the backend keeps no reference to it.
    * ``fork`` / ``select`` return new handles whose context is a copy of their parent's; parents
      stay valid until released.
    * ``rollback(row, n)`` makes the row exactly as if its last ``n`` tokens had never been fed.
    * ``score`` leaves the row unchanged.
    """

    name: str
    tokenizer: Any
    vocab_size: int
    eos_token_ids: frozenset[int]
    device: str
    stats: BackendStats

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no special tokens added."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (special tokens included as text)."""
        ...

    def new_rows(self, n: int) -> list[int]:
        """Allocate ``n`` empty rows; returns their handles."""
        ...

    def forward(self, feeds: Mapping[int, Sequence[int]]) -> torch.Tensor:
        """Append tokens to rows; float32 logits ``[len(feeds), vocab_size]`` of each last token."""
        ...

    def fork(self, row: int, n: int) -> list[int]:
        """``n`` new rows whose context is a copy of ``row``'s."""
        ...

    def select(self, rows: Sequence[int]) -> list[int]:
        """New rows, the i-th a copy of ``rows[i]`` (repeats allowed: beam reordering).

        The given rows stay valid; release the old beams afterwards."""
        ...

    def rollback(self, row: int, n_tokens: int) -> None:
        """Forget the last ``n_tokens`` tokens of ``row``."""
        ...

    def release(self, rows: Sequence[int]) -> None:
        """Free rows no longer needed; their handles become invalid."""
        ...

    def length(self, row: int) -> int:
        """Number of tokens in the row's context."""
        ...

    def score(self, row: int, continuations: Sequence[Sequence[int]],
              first_logits: torch.Tensor | None = None) -> list[list[float]]:
        """Per-token log-probabilities of each continuation after the row's context.

        ``result[k][j] = log p(continuations[k][j] | context + continuations[k][:j])``. All
        continuations are scored in one forward on top of the row's cache; the row is unchanged.
        ``first_logits`` are the row's last *unmasked* logits ``[vocab_size]`` if the caller has
        them (then continuations of length 1 need no forward at all)."""
        ...
