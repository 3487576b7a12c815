"""TransformersBackend: the :class:`~lmq.runtime.backends.base.Backend` contract on a
``transformers`` causal LM, with one KV cache kept for the whole program.

The cache is one :class:`~lmq.runtime.backends.slot_cache.SlotCache` (its module docstring
gives the layout): a row lives in one slot, all slots share one column axis, and ``_valid``
marks which columns of each slot hold the row's tokens.

Costs (measured on SmolLM2-135M, 2 CPU cores): a forward over fed rows that occupy a contiguous
slot range reads the storage through views (no copy); other subsets gather their slots first
(a copy of their cache, about what attention reads anyway). Decoding beats ``model.generate``,
which concatenates the whole cache every step (see bench/bench_backend.py).

``score`` scores all continuations in one forward on top of the row's cache using tree attention:
the continuations' prefixes form a trie whose nodes are fed as one sequence with a 4D mask (each
node sees the row's context, its ancestors and itself), so the context is never copied.
"""

from __future__ import annotations

import heapq
import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

import numpy as np
import torch

from lmq.runtime.backends.base import Backend, BackendStats
from lmq.runtime.backends.hf_vocabulary import HfVocabulary, eos_ids
from lmq.runtime.backends.slot_cache import SlotCache, as_index


@dataclass
class _Row:
    slot: int
    tokens: list[int] = field(default_factory=list)


def _locked(method: Callable) -> Callable:
    @wraps(method)
    def wrapper(self: TransformersBackend, *args: Any, **kwargs: Any) -> Any:
        with self._lock, torch.inference_mode():
            return method(self, *args, **kwargs)
    return wrapper


class TransformersBackend(Backend):
    """The backend contract on a loaded ``transformers`` causal LM (eval mode, on its device)
    and its tokenizer. Everything of the contract, ``fork``/``select`` and ``score``
    included.

    ``compact_min`` is the number of garbage columns (columns of the shared axis that the longest
    row does not use) that triggers a compaction; compaction also happens instead of growing the
    column capacity when at least a quarter of it is garbage.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str = "model", *,
                 slots: int = 8, columns: int = 256, compact_min: int = 256) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = str(model.device)
        self.stats = BackendStats()
        config = model.config.get_text_config(decoder=True)
        head = model.get_output_embeddings()
        self.vocab_size = int(head.out_features if head is not None else config.vocab_size)
        generation = getattr(model, "generation_config", None)
        self.vocabulary = HfVocabulary(tokenizer, self.vocab_size, eos_ids(tokenizer, generation))
        self.context_length = int(getattr(config, "max_position_embeddings", 0) or 8192)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._compact_min = compact_min
        self._lock = threading.RLock()
        self._rows: dict[int, _Row] = {}
        self._next_handle = 0
        self._free = list(range(slots))
        self._t = 0
        self._torch_device = model.device
        self._cache = SlotCache(config.num_hidden_layers, slots, columns)
        with torch.inference_mode():
            self._valid = torch.zeros((slots, columns), dtype=torch.bool, device=model.device)
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._base = getattr(model, model.base_model_prefix, None)
        self._head = head
        self._softcap = getattr(config, "final_logit_softcapping", None)
        self._eager = getattr(config, "_attn_implementation", "sdpa") == "eager"

    # -- rows ------------------------------------------------------------------------------

    @_locked
    def new_rows(self, n: int) -> list[int]:
        return [self._new_row(slot) for slot in self._alloc_slots(n)]

    def length(self, row: int) -> int:
        return len(self._row(row).tokens)

    def tokens(self, row: int) -> list[int]:
        """The token ids of the row's context (a copy)."""
        return list(self._row(row).tokens)

    @property
    def live_rows(self) -> int:
        return len(self._rows)

    @_locked
    def fork(self, row: int, n: int) -> list[int]:
        parent = self._row(row)
        slots = self._alloc_slots(n)
        if slots:
            self._copy_slots([parent.slot] * n, slots)
        return [self._new_row(slot, list(parent.tokens)) for slot in slots]

    @_locked
    def select(self, rows: Sequence[int]) -> list[int]:
        parents = [self._row(r) for r in rows]
        slots = self._alloc_slots(len(parents))
        if slots:
            self._copy_slots([p.slot for p in parents], slots)
        return [self._new_row(slot, list(p.tokens)) for slot, p in zip(slots, parents)]

    @_locked
    def rollback(self, row: int, n_tokens: int) -> None:
        rec = self._row(row)
        if n_tokens < 0 or n_tokens > len(rec.tokens):
            raise ValueError(f"cannot roll back {n_tokens} tokens of a row of {len(rec.tokens)}")
        if n_tokens == 0:
            return
        columns = self._valid[rec.slot, : self._t].nonzero().squeeze(1)[-n_tokens:]
        self._valid[rec.slot, columns] = False
        del rec.tokens[-n_tokens:]

    @_locked
    def release(self, rows: Sequence[int]) -> None:
        for handle in rows:
            rec = self._rows.pop(handle, None)
            if rec is None:
                raise KeyError(f"unknown row {handle}")
            self._valid[rec.slot] = False
            heapq.heappush(self._free, rec.slot)
        if not self._rows:
            self._t = 0

    # -- model calls -----------------------------------------------------------------------

    @_locked
    def forward(self, feeds: Mapping[int, Sequence[int]]) -> torch.Tensor:
        handles = list(feeds)
        if not handles:
            return torch.empty((0, self.vocab_size), dtype=torch.float32, device=self.device)
        recs = [self._row(h) for h in handles]
        seqs = [list(feeds[h]) for h in handles]
        lens = np.array([len(s) for s in seqs], dtype=np.int64)
        if lens.min() < 1:
            raise ValueError("every fed row needs at least one token")
        self._check_ids(seqs)
        batch, width = len(seqs), int(lens.max())
        self._reserve_columns(width)
        t = self._t
        ids = np.full((batch, width), self._pad_id, dtype=np.int64)
        positions = np.empty((batch, width), dtype=np.int64)
        new_valid = np.arange(width)[None, :] < lens[:, None]
        for i, (rec, seq) in enumerate(zip(recs, seqs)):
            ids[i, : len(seq)] = seq
            positions[i] = len(rec.tokens) + np.arange(width)
        slots = [rec.slot for rec in recs]
        select = as_index(slots, self._torch_device)
        self._valid[select, t : t + width] = torch.from_numpy(new_valid).to(self._torch_device)
        mask = self._valid[select, : t + width]
        self._cache.select, self._cache.t0 = select, t
        ids_t = torch.from_numpy(ids).to(self._torch_device)
        pos_t = torch.from_numpy(positions).to(self._torch_device)
        kwargs = {"attention_mask": mask, "position_ids": pos_t, self._cache_kw: self._cache,
                  "use_cache": True}
        try:
            logits = self._last_logits(ids_t, kwargs, lens)
        except BaseException:
            self._valid[:, t:] = False  # columns >= t stay free for everyone
            raise
        self._t = t + width
        for rec, seq in zip(recs, seqs):
            rec.tokens.extend(seq)
        self.stats.forward_passes += 1
        self.stats.tokens_fed += int(lens.sum())
        self.stats.rows_fed += batch
        return logits.float()

    def _last_logits(self, ids: torch.Tensor, kwargs: dict[str, Any],
                     lens: np.ndarray) -> torch.Tensor:
        """Logits ``[B, vocab]`` of each row's last real token (rows are right-padded)."""
        width = ids.shape[1]
        if (lens == width).all():
            # The path model.generate takes.
            return self.model(input_ids=ids, logits_to_keep=1, **kwargs).logits[:, -1]
        rows = torch.arange(len(lens), device=self._torch_device)
        last = torch.from_numpy(lens - 1).to(self._torch_device)
        if self._base is not None and self._head is not None:
            # Ragged rows: the head runs on each row's last token only.
            hidden = self._base(input_ids=ids, **kwargs).last_hidden_state
            logits = self._head(hidden[rows, last])
            if self._softcap:
                logits = torch.tanh(logits / self._softcap) * self._softcap
            return logits
        return self.model(input_ids=ids, logits_to_keep=0, **kwargs).logits[rows, last]

    @_locked
    def score(self, row: int, continuations: Sequence[Sequence[int]],
              first_logits: torch.Tensor | None = None) -> list[list[float]]:
        rec = self._row(row)
        conts = [list(c) for c in continuations]
        self._check_ids(conts)
        need_root = first_logits is None and any(conts)
        if need_root and not rec.tokens:
            raise ValueError("scoring after an empty context needs first_logits")
        # Trie of the prefixes that must be fed: c[:j] for 1 <= j < len(c); node 0 is the root
        # (the row's last token, re-fed to get its logits) when first_logits is missing.
        nodes: dict[tuple[int, ...], int] = {}
        tokens: list[int] = []
        parents: list[int] = []
        depth: list[int] = []
        if need_root:
            tokens.append(rec.tokens[-1])
            parents.append(-1)
            depth.append(-1)
        for c in conts:
            for j in range(1, len(c)):
                prefix = tuple(c[:j])
                if prefix not in nodes:
                    nodes[prefix] = len(tokens)
                    tokens.append(c[j - 1])
                    parents.append(nodes[prefix[:-1]] if j > 1 else -1)
                    depth.append(j - 1)
        logprobs: torch.Tensor | None = None
        if tokens:
            logprobs = self._tree_forward(rec, tokens, parents, depth, need_root)
        first = None
        if first_logits is not None:
            first = torch.log_softmax(first_logits.reshape(-1).float(), dim=-1).cpu()
        out: list[list[float]] = []
        for c in conts:
            scores = []
            for j, token in enumerate(c):
                if j == 0:
                    dist = first if first is not None else logprobs[0]  # type: ignore[index]
                else:
                    dist = logprobs[nodes[tuple(c[:j])]]  # type: ignore[index]
                scores.append(float(dist[token]))
            out.append(scores)
        self.stats.score_calls += 1
        return out

    def _tree_forward(self, rec: _Row, tokens: list[int], parents: list[int], depth: list[int],
                      has_root: bool) -> torch.Tensor:
        """Log-softmax ``[len(tokens), vocab]`` (on CPU) of the trie nodes fed after the row."""
        q = len(tokens)
        self._reserve_columns(q)
        t, n = self._t, len(rec.tokens)
        # Each node sees its ancestors and itself, never the root's column: the root re-feeds the
        # row's last token, whose original column every node already sees.
        tree = np.zeros((q, q), dtype=bool)
        for i in range(q):
            j = i
            while j >= 0:
                tree[i, j] = True
                j = parents[j]
        if has_root:
            tree[:, 0] = False
        positions = np.array([n + d for d in depth], dtype=np.int64)
        device = self._torch_device
        context = self._valid[rec.slot, :t]
        mask = torch.cat([context.expand(q, t), torch.from_numpy(tree).to(device)], dim=1)
        mask = mask[None, None]
        if self._eager:
            zero = torch.zeros((), dtype=self.model.dtype, device=device)
            mask = torch.where(mask, zero, torch.finfo(self.model.dtype).min)
        self._cache.select, self._cache.t0 = slice(rec.slot, rec.slot + 1), t
        logits = self.model(
            input_ids=torch.tensor([tokens], device=device),
            position_ids=torch.from_numpy(positions)[None].to(device),
            attention_mask=mask, use_cache=True, logits_to_keep=0,
            **{self._cache_kw: self._cache},
        ).logits[0]
        self.stats.forward_passes += 1
        self.stats.tokens_fed += q
        self.stats.rows_fed += 1
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    # -- slots and columns -----------------------------------------------------------------

    def _row(self, handle: int) -> _Row:
        try:
            return self._rows[handle]
        except KeyError:
            raise KeyError(f"unknown row {handle} (released or never allocated)") from None

    def _new_row(self, slot: int, tokens: list[int] | None = None) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self._rows[handle] = _Row(slot, tokens or [])
        return handle

    def _alloc_slots(self, n: int) -> list[int]:
        if n < 0:
            raise ValueError("cannot allocate a negative number of rows")
        if len(self._free) < n:
            old = self._cache.cap_slots
            new = max(2 * old, old + n - len(self._free))
            self._resize(new, self._cache.cap_columns)
            for slot in range(old, new):
                heapq.heappush(self._free, slot)
        return [heapq.heappop(self._free) for _ in range(n)]

    def _copy_slots(self, sources: list[int], targets: list[int]) -> None:
        src = as_index(sources, self._torch_device)
        dst = as_index(targets, self._torch_device)
        t = self._t
        for storage in self._cache.storages():
            storage[dst, :, :t] = storage[src, :, :t]
        self._valid[dst] = self._valid[src]

    def _resize(self, slots: int, columns: int) -> None:
        self._cache.resize(slots, columns)
        valid = torch.zeros((slots, columns), dtype=torch.bool, device=self._torch_device)
        valid[: self._valid.shape[0], : self._valid.shape[1]] = self._valid
        self._valid = valid

    def _reserve_columns(self, width: int) -> None:
        """Make room for ``width`` new columns, compacting when garbage dominates."""
        longest = max((len(r.tokens) for r in self._rows.values()), default=0)
        garbage = self._t - longest
        cap = self._cache.cap_columns
        if garbage >= self._compact_min and garbage > longest or (
                self._t + width > cap and longest + width <= cap * 3 // 4 and garbage > 0):
            self._compact()
        if self._t + width > cap:
            self._resize(self._cache.cap_slots, max(2 * cap, self._t + width))

    def _compact(self) -> None:
        """Move every row's valid columns to the front, in order (keys keep their positions)."""
        t = self._t
        moves = []
        for rec in self._rows.values():
            columns = self._valid[rec.slot, :t].nonzero().squeeze(1)
            moves.append((rec.slot, columns))
        for storage in self._cache.storages():
            for slot, columns in moves:
                storage[slot, :, : len(columns)] = storage[slot, :, columns]
        self._valid[:, :t] = False
        for slot, columns in moves:
            self._valid[slot, : len(columns)] = True
        self._t = max((len(c) for _, c in moves), default=0)
        self.stats.compactions += 1

    def _check_ids(self, seqs: Sequence[Sequence[int]]) -> None:
        for seq in seqs:
            for token in seq:
                if not 0 <= token < self.vocab_size:
                    raise ValueError(f"token id {token} outside the vocabulary "
                                     f"(0..{self.vocab_size - 1})")
