"""The slot storage behind TransformersBackend's single KV cache, as a transformers ``Cache``.

Layout (one :class:`SlotCache`, built once by the backend):

* Per layer, keys and values ``[S_cap, H_kv, T_cap, D]``. A row lives in one *slot* (batch
  index); all slots share one column axis. Columns ``< t`` are in use, columns ``>= t`` are free.
* ``valid [S_cap, T_cap]`` (bool, kept by the backend): column ``c`` of slot ``s`` holds one of
  the row's tokens. A forward appends ``L = max(len(feed))`` columns to every slot; short rows
  are right-padded and unfed rows get nothing written. Padding, unfed and rolled-back columns
  stay masked out until a compaction moves every row's valid columns to the front.
* Keys already carry their rotary position, so a row's tokens may sit at any columns; the model
  sees each row's own positions through ``position_ids`` and the per-row validity through a 2D
  attention mask, from which transformers builds the causal mask (column order = time order).
* Storage is zero-initialised and only ever holds finite values: attention multiplies masked
  weights (exactly 0) by values, and ``0 * nan`` would poison a row.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer


class SlotCache(Cache):
    """A transformers ``Cache`` over slot storage; see the module docstring for the layout.

    Before each model call the backend sets ``select`` (a slice or a LongTensor of slots: the
    batch of this call, in order) and ``t0`` (the first column written). ``update`` writes the new
    keys/values at columns ``t0 .. t0+L-1`` of the selected slots and returns columns ``:t0+L``.
    The ``layers`` of the base class are placeholders that answer its layer-type questions.
    """

    def __init__(self, num_layers: int, slots: int, columns: int) -> None:
        super().__init__(layers=[DynamicLayer() for _ in range(num_layers)])
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.cap_slots = slots
        self.cap_columns = columns
        self.select: slice | torch.Tensor = slice(0, 0)
        self.t0 = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if keys is None or values is None:  # shapes and dtype are known at the first call
            heads, dim = key_states.shape[1], key_states.shape[3]
            keys = key_states.new_zeros((self.cap_slots, heads, self.cap_columns, dim))
            values = value_states.new_zeros((self.cap_slots, value_states.shape[1],
                                             self.cap_columns, value_states.shape[3]))
            self.keys[layer_idx], self.values[layer_idx] = keys, values
        end = self.t0 + key_states.shape[2]
        keys[self.select, :, self.t0:end] = key_states
        values[self.select, :, self.t0:end] = value_states
        return keys[self.select, :, :end], values[self.select, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.t0

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.t0 + query_length, 0

    def get_query_offset(self, layer_idx: int = 0) -> int:
        return self.t0

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    def storages(self) -> list[torch.Tensor]:
        """Every allocated key and value tensor."""
        return [t for t in self.keys + self.values if t is not None]

    def resize(self, slots: int, columns: int) -> None:
        """Grow capacity, keeping contents (new space is zero)."""
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                if old is not None:
                    new = old.new_zeros((slots, old.shape[1], columns, old.shape[3]))
                    new[: old.shape[0], :, : old.shape[2]] = old
                    store[i] = new
        self.cap_slots, self.cap_columns = slots, columns


def as_index(slots: list[int], device: torch.device) -> slice | torch.Tensor:
    """A slice when the slots are consecutive (views, no copy), else an index tensor."""
    first = slots[0]
    if slots == list(range(first, first + len(slots))):
        return slice(first, first + len(slots))
    return torch.tensor(slots, dtype=torch.long, device=device)
