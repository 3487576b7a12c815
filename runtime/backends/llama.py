"""LlamaBackend: the :class:`~lmq.runtime.backends.base.Backend` contract on llama.cpp,
through llama-cpp-python's low-level API, running a GGUF model in its own quantization.

One llama.cpp context holds every row. A row is a *sequence* of the context's unified KV
cache (``kv_unified``: all sequences share one pool of ``n_ctx`` cells, so a row takes only
the cells its tokens need, and ``fork`` shares the parent's cells instead of copying them).
A forward is one ``llama_decode`` of a batch in which each fed row's tokens carry its
sequence id and positions, with logits requested for each row's last token only;
``rollback`` and ``release`` remove cells of a sequence (``llama_memory_seq_rm``), ``fork``
and ``select`` add a sequence to a parent's cells (``llama_memory_seq_cp``). ``score``
feeds each continuation on a temporary copy of the row in the same single decode and
removes the copies afterwards. When the pool is full the context is rebuilt twice as large
and the live rows are fed again (counted in ``stats.compactions``): rare, and exact.

Masks are lmq's own; nothing of llama.cpp's samplers or grammars is used. Logits are copied
out of llama.cpp's buffer into a numpy array the caller owns (one 196 KB copy per row for
SmolLM2, a few microseconds), since the next decode overwrites the buffer.

Flash attention is on (1.8x the tokens per second at 16 rows on the 2-core build machine,
``bench/bench_llama.py``); llama-cpp-python's ``Llama(flash_attn=True)`` on the same file
decodes greedily token for token alike (``tests/runtime/backends/test_llama.py``). Threads
default to the CPUs this process may use (``LMQ_THREADS``
overrides). llama.cpp's OpenMP threads spin between steps unless ``OMP_WAIT_POLICY`` is
``passive`` (3.4 s against 20 ms per token on the 2-core build machine, ENVIRONMENT.md): this
module sets it, unless it is set already, before llama.cpp loads.
"""

from __future__ import annotations

import ctypes
import heapq
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from lmq.errors import LmqModelError
from lmq.runtime.backends.base import Backend, BackendStats
from lmq.runtime.backends.llama_vocabulary import LlamaVocabulary

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
import llama_cpp as api  # noqa: E402  (after the OpenMP setting above)

MAX_ROWS = 256  # llama.cpp's LLAMA_MAX_SEQ: sequences of one context
INITIAL_CELLS = 8192


def _silence() -> Any:
    """Route llama.cpp's log lines nowhere (kept referenced: ctypes frees callbacks)."""
    callback = api.llama_log_callback(lambda level, text, data: None)
    api.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


_LOG_CALLBACK = _silence()
api.llama_backend_init()


class _Handles:
    """The llama.cpp objects a backend owns, freed when the backend goes (a finalizer, so
    also at interpreter exit, before the ``llama_cpp`` module is torn down)."""

    def __init__(self, model: Any) -> None:
        self.model, self.ctx = model, None
        self.free_context, self.free_model = api.llama_free, api.llama_model_free

    def replace(self, ctx: Any) -> None:
        if self.ctx:
            self.free_context(self.ctx)
        self.ctx = ctx

    def close(self) -> None:
        self.replace(None)
        if self.model:
            self.free_model(self.model)
            self.model = None


@dataclass
class _Row:
    seq: int
    tokens: list[int] = field(default_factory=list)


class _Batch:
    """A ``llama_batch`` over numpy arrays this object owns (one sequence id per token)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        base = self.seq.ctypes.data
        self.seq_ptrs = (ctypes.POINTER(api.llama_seq_id) * capacity)(*[
            ctypes.cast(base + 4 * i, ctypes.POINTER(api.llama_seq_id)) for i in range(capacity)])
        self.struct: Any = cast(Any, api.llama_batch())  # (its fields are typed as arrays)
        self.struct.token = self.token.ctypes.data_as(ctypes.POINTER(api.llama_token))
        self.struct.embd = None
        self.struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(api.llama_pos))
        self.struct.n_seq_id = self.n_seq.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.struct.seq_id = self.seq_ptrs
        self.struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))

    def fill(self, jobs: Sequence[tuple[int, int, Sequence[int], bool]]) -> list[int]:
        """Lay out ``(seq, first position, tokens, logits for every token)`` jobs (otherwise
        for the last token only); returns the batch index of each output."""
        at, outputs = 0, []  # type: tuple[int, list[int]]
        for seq, start, tokens, every in jobs:
            n = len(tokens)
            self.token[at:at + n] = tokens
            self.pos[at:at + n] = np.arange(start, start + n)
            self.seq[at:at + n] = seq
            self.logits[at:at + n] = 1 if every else 0
            self.logits[at + n - 1] = 1
            outputs.extend(range(at, at + n) if every else [at + n - 1])
            at += n
        self.struct.n_tokens = at
        return outputs


class LlamaBackend(Backend):
    """A GGUF model on llama.cpp; the whole contract, ``fork``/``select`` and ``score``
    included. ``gpu`` offloads every layer (a llama.cpp built with GPU support)."""

    def __init__(self, path: str, name: str = "model", *, threads: int | None = None,
                 gpu: bool = False) -> None:
        self.name = name
        self.device = "cuda" if gpu else "cpu"
        self.stats = BackendStats()
        params = api.llama_model_default_params()
        params.n_gpu_layers = -1 if gpu else 0
        self._model = api.llama_model_load_from_file(path.encode(), params)
        if not self._model:
            raise LmqModelError(f"llama.cpp cannot load the GGUF file {path}")
        self._handles = _Handles(self._model)
        weakref.finalize(self, self._handles.close)
        self.vocabulary = LlamaVocabulary(api, self._model)
        self.context_length = int(api.llama_model_n_ctx_train(self._model)) or 8192
        self._threads = threads or int(os.environ.get("LMQ_THREADS", 0)) or \
            len(os.sched_getaffinity(0))
        self._n_vocab = self.vocabulary.size
        self._lock = threading.RLock()
        self._rows: dict[int, _Row] = {}
        self._next_handle = 0
        self._free = list(range(MAX_ROWS))
        self._ctx: Any = None
        self._cells = 0
        self._batch = _Batch(512)
        self._open(INITIAL_CELLS)

    # -- the context -----------------------------------------------------------------------

    def _open(self, cells: int) -> None:
        params = api.llama_context_default_params()
        params.n_ctx = cells
        params.n_batch = cells
        params.n_ubatch = 512
        params.n_seq_max = MAX_ROWS
        params.kv_unified = True
        params.flash_attn_type = api.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.n_threads = params.n_threads_batch = self._threads
        params.no_perf = True
        ctx = api.llama_init_from_model(self._model, params)
        if not ctx:
            raise LmqModelError(f"llama.cpp cannot make a context of {cells} tokens for "
                                f"'{self.name}'")
        self._handles.replace(ctx)
        self._ctx, self._cells = ctx, cells
        self._memory = api.llama_get_memory(ctx)

    def _grow(self, needed: int) -> None:
        """A context with room for ``needed`` more tokens; live rows are fed again."""
        cells = self._cells * 2
        while cells < sum(len(r.tokens) for r in self._rows.values()) + needed:
            cells *= 2
        self._open(cells)
        self.stats.compactions += 1
        rows = [r for r in self._rows.values() if r.tokens]
        for start in range(0, len(rows), 16):
            self._decode([(r.seq, 0, r.tokens, False) for r in rows[start:start + 16]])

    def _decode(self, jobs: Sequence[tuple[int, int, Sequence[int], bool]]) -> list[int]:
        size = sum(len(tokens) for _, _, tokens, _ in jobs)
        if size > self._batch.capacity:
            self._batch = _Batch(max(size, 2 * self._batch.capacity))
        if size > self._cells:
            self._grow(size)
        outputs = self._batch.fill(jobs)
        status = api.llama_decode(self._ctx, self._batch.struct)
        if status == 1:  # no room in the KV cache: grow it, feed the rows again, retry
            self._grow(size)
            outputs = self._batch.fill(jobs)
            status = api.llama_decode(self._ctx, self._batch.struct)
        if status != 0:
            raise LmqModelError(f"llama.cpp failed to decode a batch of {size} tokens "
                                f"(status {status}) on '{self.name}'")
        self.stats.forward_passes += 1
        self.stats.tokens_fed += size
        self.stats.rows_fed += len(jobs)
        return outputs

    def _logits(self, outputs: Sequence[int]) -> np.ndarray:
        out = np.empty((len(outputs), self._n_vocab), dtype=np.float32)
        for k, index in enumerate(outputs):
            pointer = api.llama_get_logits_ith(self._ctx, index)
            out[k] = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        return out

    # -- rows ------------------------------------------------------------------------------

    def new_rows(self, n: int) -> list[int]:
        with self._lock:
            return [self._new_row(seq) for seq in self._alloc(n)]

    def length(self, row: int) -> int:
        return len(self._row(row).tokens)

    def tokens(self, row: int) -> list[int]:
        """The token ids of the row's context (a copy)."""
        return list(self._row(row).tokens)

    def fork(self, row: int, n: int) -> list[int]:
        with self._lock:
            return self.select([row] * n)

    def select(self, rows: Sequence[int]) -> list[int]:
        with self._lock:
            parents = [self._row(r) for r in rows]
            out = []
            for seq, parent in zip(self._alloc(len(parents)), parents):
                api.llama_memory_seq_cp(self._memory, parent.seq, seq, -1, -1)
                out.append(self._new_row(seq, list(parent.tokens)))
            return out

    def rollback(self, row: int, n_tokens: int) -> None:
        with self._lock:
            rec = self._row(row)
            if n_tokens < 0 or n_tokens > len(rec.tokens):
                raise ValueError(f"cannot roll back {n_tokens} tokens of a row of "
                                 f"{len(rec.tokens)}")
            if n_tokens:
                api.llama_memory_seq_rm(self._memory, rec.seq, len(rec.tokens) - n_tokens, -1)
                del rec.tokens[-n_tokens:]

    def release(self, rows: Sequence[int]) -> None:
        with self._lock:
            for handle in rows:
                rec = self._rows.pop(handle, None)
                if rec is None:
                    raise KeyError(f"unknown row {handle}")
                api.llama_memory_seq_rm(self._memory, rec.seq, -1, -1)
                heapq.heappush(self._free, rec.seq)

    # -- model calls -----------------------------------------------------------------------

    def forward(self, feeds: Mapping[int, Sequence[int]]) -> np.ndarray:
        with self._lock:
            recs = [self._row(h) for h in feeds]
            seqs = [list(feeds[h]) for h in feeds]
            if not recs:
                return np.empty((0, self._n_vocab), dtype=np.float32)
            if min(len(s) for s in seqs) < 1:
                raise ValueError("every fed row needs at least one token")
            self._check_ids(seqs)
            outputs = self._decode([(rec.seq, len(rec.tokens), seq, False)
                                    for rec, seq in zip(recs, seqs)])
            for rec, seq in zip(recs, seqs):
                rec.tokens.extend(seq)
            return self._logits(outputs)

    def score(self, row: int, continuations: Sequence[Sequence[int]],
              first_logits: Any = None) -> list[list[float]]:
        with self._lock:
            rec = self._row(row)
            conts = [list(c) for c in continuations]
            self._check_ids(conts)
            need_root = first_logits is None and any(conts)
            if need_root and not rec.tokens:
                raise ValueError("scoring after an empty context needs first_logits")
            first = None if first_logits is None else _log_softmax(np.asarray(
                first_logits, dtype=np.float32).reshape(-1))
            if need_root:
                first = self._root_logprobs(rec)
            longer = [i for i, c in enumerate(conts) if len(c) > 1]
            later: dict[int, np.ndarray] = {}
            for start in range(0, len(longer), max(len(self._free), 1)):
                later.update(self._continuation_logprobs(rec, conts, longer[start:start + len(
                    self._free)]))
            self.stats.score_calls += 1
            out = []
            for i, c in enumerate(conts):
                scores = [float(first[c[0]])] if c else []  # type: ignore[index]
                scores += [float(later[i][j - 1, token]) for j, token in enumerate(c) if j]
                out.append(scores)
            return out

    def _root_logprobs(self, rec: _Row) -> np.ndarray:
        """Log-probabilities after the row's context: its last token fed again on a copy."""
        (seq,) = self._alloc(1)
        try:
            api.llama_memory_seq_cp(self._memory, rec.seq, seq, -1, -1)
            api.llama_memory_seq_rm(self._memory, seq, len(rec.tokens) - 1, -1)
            outputs = self._decode([(seq, len(rec.tokens) - 1, rec.tokens[-1:], False)])
            return _log_softmax(self._logits(outputs)[0])
        finally:
            api.llama_memory_seq_rm(self._memory, seq, -1, -1)
            heapq.heappush(self._free, seq)

    def _continuation_logprobs(self, rec: _Row, conts: list[list[int]],
                               which: list[int]) -> dict[int, np.ndarray]:
        """``{i: log-probabilities [len(conts[i]) - 1, vocab]}`` after each prefix of the
        continuations ``which``, each fed on its own copy of the row, in one decode."""
        if not which:
            return {}
        seqs = self._alloc(len(which))
        try:
            for seq in seqs:
                api.llama_memory_seq_cp(self._memory, rec.seq, seq, -1, -1)
            outputs = self._decode([(seq, len(rec.tokens), conts[i][:-1], True)
                                    for seq, i in zip(seqs, which)])
            logprobs, at = _log_softmax(self._logits(outputs)), 0
            found = {}
            for i in which:
                n = len(conts[i]) - 1
                found[i], at = logprobs[at:at + n], at + n
            return found
        finally:
            for seq in seqs:
                api.llama_memory_seq_rm(self._memory, seq, -1, -1)
                heapq.heappush(self._free, seq)

    # -- bookkeeping -----------------------------------------------------------------------

    def _row(self, handle: int) -> _Row:
        try:
            return self._rows[handle]
        except KeyError:
            raise KeyError(f"unknown row {handle} (released or never allocated)") from None

    def _new_row(self, seq: int, tokens: list[int] | None = None) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self._rows[handle] = _Row(seq, tokens or [])
        return handle

    def _alloc(self, n: int) -> list[int]:
        if n < 0:
            raise ValueError("cannot allocate a negative number of rows")
        if n > len(self._free):
            raise LmqModelError(f"the llama.cpp backend holds at most {MAX_ROWS} rows at a "
                                f"time ('{self.name}' has {len(self._rows)} and needs {n} more)",
                                hint="use fewer samples, beams or batch inputs at once")
        return [heapq.heappop(self._free) for _ in range(n)]

    def _check_ids(self, seqs: Sequence[Sequence[int]]) -> None:
        for seq in seqs:
            for token in seq:
                if not 0 <= token < self._n_vocab:
                    raise ValueError(f"token id {token} outside the vocabulary "
                                     f"(0..{self._n_vocab - 1})")


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
