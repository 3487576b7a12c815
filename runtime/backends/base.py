"""The backend contract: what the decoding loop may ask of a language model.

A backend is one loaded model behind three pieces of plain data: a :class:`Vocabulary`
(token bytes, special ids, BOS/EOS, chat rendering), row handles, and logits. lmq builds
its own token index and masks from the vocabulary, so a backend never sees a constraint,
and it never sees interpreter state (STYLE.md principle 7).

**Rows.** A row is a sequence slot with its own context (the tokens fed to it so far),
kept as a KV cache for the whole program: text appended between holes is fed once and
never re-encoded. Rows are named by integer handles, never reused after ``release``.

A backend **must**:

* ``new_rows(n)``, ``release(rows)``, ``length(row)``;
* ``forward(feeds)``: append each fed row's tokens (1..L of them, lengths may differ: a
  prompt, the tokens a constraint forced, or the last generated token) to that row and
  return float32 logits ``[len(feeds), vocabulary.size]`` for each row's last fed token,
  in the order of ``feeds``, as a torch tensor on :attr:`device` or a numpy array (host
  memory; the loop wraps it without a copy). Every fed row advances in this one call: a
  batch of program instances, samples, beam branches and companion rows costs one model
  step. The caller owns the result and may keep or modify it; later calls must not
  change it;
* ``rollback(row, n)``: make the row exactly as if its last ``n`` tokens had never been
  fed (a stop phrase that ends inside a token, a rejected cascade attempt);
* count its own work in :attr:`stats` (prompt and generated tokens are the loop's).

A backend **may** (the defaults raise :class:`LmqModelError` naming the feature and the
backend, so a program that needs one fails clearly instead of decoding differently):

* ``fork(row, n)`` / ``select(rows)``: new rows whose context copies a parent's (beam
  search; parents stay valid until released);
* ``score(row, continuations, first_logits)``: exact per-token log-probabilities of
  token sequences after the row's context, in one batched pass, leaving the row as it is
  (``distribution`` clauses, label scoring, the cascade of ``prefer``).

Loading goes through :mod:`lmq.runtime.backends.registry` (one entry per spec prefix);
a specialist decodes on a :class:`ModelView` of a backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Union

from lmq.errors import LmqModelError

if TYPE_CHECKING:
    import numpy as np
    import torch

Logits = Union["torch.Tensor", "np.ndarray"]
"""float32 ``[rows, vocabulary.size]``: a torch tensor on the backend's device or a numpy
array in host memory."""


@dataclass
class BackendStats:
    """Counters of the work a backend did. ``tokens_fed`` sums the tokens of every row of
    every forward (padding excluded); ``rows_fed`` sums the rows of every forward;
    ``score()`` forwards count as forward passes and add their fed tokens."""

    forward_passes: int = 0
    tokens_fed: int = 0
    rows_fed: int = 0
    score_calls: int = 0
    compactions: int = 0

    def snapshot(self) -> dict[str, int]:
        """The counters as a new dict (later work does not change it)."""
        return asdict(self)


class Vocabulary(ABC):
    """A model's tokens as lmq needs them.

    ``size`` is the width of the logits (ids past the tokenizer's own count exist and are
    special); ``eos_ids`` end a hole where its constraint accepts (the end-of-sequence and
    end-of-turn tokens); ``bos_id`` starts an empty context (None: the first EOS id does).
    """

    size: int
    eos_ids: frozenset[int]
    bos_id: int | None

    @abstractmethod
    def token_bytes(self) -> list[bytes | None]:
        """The exact bytes of each id's text, byte-level pieces and partial UTF-8 included;
        None for special tokens (control and added tokens, which a content mask never
        allows) and for ids without a token. At most ``size`` entries."""

    @abstractmethod
    def special_text(self, token_id: int) -> str:
        """How a special token is written (``"<|im_end|>"``), for traces and streams."""

    @abstractmethod
    def encode(self, text: str, parse_special: bool = True) -> list[int]:
        """Token ids of ``text`` as the model's own tokenizer splits it, no BOS/EOS added.
        With ``parse_special`` a special token written in the text (chat markup such as
        ``<|im_start|>``) is that token; without, it is plain text."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens included as text."""

    def render_chat(self, messages: Sequence[Mapping[str, str]],
                    add_generation_prompt: bool) -> str | None:
        """The chat template applied to ``messages`` (``{"role", "content"}``), or None
        when the model has no template (roles then render as ``role: text`` lines)."""
        return None


class Backend(ABC):
    """A causal language model behind row handles; see the module docstring for what a
    backend must and may do."""

    name: str
    vocabulary: Vocabulary
    device: str
    context_length: int
    stats: BackendStats

    @abstractmethod
    def new_rows(self, n: int) -> list[int]:
        """Allocate ``n`` empty rows; returns their handles."""

    @abstractmethod
    def forward(self, feeds: Mapping[int, Sequence[int]]) -> Logits:
        """Append tokens to rows; float32 logits ``[len(feeds), size]`` of each last token."""

    @abstractmethod
    def rollback(self, row: int, n_tokens: int) -> None:
        """Forget the last ``n_tokens`` tokens of ``row``."""

    @abstractmethod
    def release(self, rows: Sequence[int]) -> None:
        """Free rows no longer needed; their handles become invalid."""

    @abstractmethod
    def length(self, row: int) -> int:
        """Number of tokens in the row's context."""

    def fork(self, row: int, n: int) -> list[int]:
        """``n`` new rows whose context is a copy of ``row``'s."""
        raise unsupported("beam search (copying a row's context)", self)

    def select(self, rows: Sequence[int]) -> list[int]:
        """New rows, the i-th a copy of ``rows[i]`` (repeats allowed: beam reordering).
        The given rows stay valid; release the old beams afterwards."""
        raise unsupported("beam search (copying a row's context)", self)

    def score(self, row: int, continuations: Sequence[Sequence[int]],
              first_logits: Logits | None = None) -> list[list[float]]:
        """Per-token log-probabilities of each continuation after the row's context.

        ``result[k][j] = log p(continuations[k][j] | context + continuations[k][:j])``,
        all in one pass; the row is unchanged. ``first_logits`` are the row's last
        *unmasked* logits ``[size]`` if the caller has them (continuations of length 1
        then need no forward at all)."""
        raise unsupported("scoring continuations (distribution, label scores)", self)


END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>",
               "<|end_of_text|>", "</s>")
"""End-of-turn markers of common chat templates: one ends a hole like end-of-sequence when
the model's template mentions it and the vocabulary has it as a single token (the same rule
for every backend, so one model's holes end alike on each)."""


def end_of_turn_ids(template: str, token_id: Callable[[str], int | None]) -> set[int]:
    """The ids of the :data:`END_OF_TURN` markers ``template`` uses; ``token_id(marker)`` is
    the marker's single token id, None when it is not one token."""
    found = (token_id(marker) for marker in END_OF_TURN if marker in template)
    return {token for token in found if token is not None}


def unsupported(feature: str, backend: Backend) -> LmqModelError:
    """The error for a program that needs a feature ``backend`` does not offer."""
    return LmqModelError(f"{feature} is not supported by the {type(backend).__name__} "
                         f"backend of model '{backend.name}'")


@dataclass(frozen=True, eq=False)
class ModelView:
    """What a hole decodes on: a backend, plus a specialist's system prompt (it opens each
    conversation the view decodes) and generation settings (``temperature``, ``top_k``,
    ``top_p``, ``max_tokens``: they override the run decoder's). A specialist's adapter is
    merged into its backend's weights when the backend loads, so it is part of the
    backend. Views compare by identity: each keeps its own rows, since its system prompt is
    part of what they hold; views of one backend share its forward passes, token index and
    compiled constraints."""

    backend: Backend
    name: str
    system: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
