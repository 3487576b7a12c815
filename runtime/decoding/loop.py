"""The decoding loop: program instances as batch rows, advanced in lockstep.

Every row is a program instance (:class:`~lmq.runtime.decoding.instance.ProgramInstance`)
paused at a hole. Each step, for each model, the rows decoding on it feed their queued
tokens (the text appended since their last step plus the last generated token) in ONE
forward pass, get one logits row each, apply their own mask, and choose their next token;
a row whose hole ends runs its program on to the next hole, and its next text rides along
in the following forward pass. Features (fusion, routing, knowledge preference) reach the
loop only as a hole's plan (:func:`~lmq.runtime.decoding.features.hole_plan`). ``sample(n)`` and
``q.batch`` are just more rows; ``beam(n)`` forks rows (:mod:`lmq.runtime.decoding.beam`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import torch

from lmq.decoders import DecoderSpec
from lmq.errors import LmqError, LmqLimitError, LmqModelError, is_out_of_memory
from lmq.runtime.backends.base import Backend, ModelView
from lmq.runtime.backends.served import ServedBackend
from lmq.runtime.decoding.choosing import greedy_batch, pick_token, single_threaded
from lmq.runtime.decoding.context import Counters, RowContext, forward_logits
from lmq.runtime.decoding.features import hole_plan
from lmq.runtime.decoding.hole_constraint import check_predicates, forced, open_hole, weigh
from lmq.runtime.decoding.holes import HoleRun
from lmq.runtime.decoding.instance import HoleRequest, ProgramInstance
from lmq.runtime.decoding.model_runtime import ModelRuntime, ModelRuntimes
from lmq.runtime.decoding.plans import Plan, review, text_before
from lmq.runtime.decoding.remote import Outcome, check_supported, decode_remote

ModelResolver = Callable[[Any], ModelView]  # inline `from` value (or None) -> model view


@dataclass
class TraceEntry:
    model: str
    rows: int
    tokens_in: int
    tokens_out: int
    mask_ms: float
    forced_tokens: int = 0  # appended without sampling since the previous model call


@dataclass
class Row:
    """One program instance (or one branch of one) being decoded."""

    instance: int
    state: ProgramInstance
    counters: Counters = field(default_factory=Counters)
    contexts: dict[ModelView, RowContext] = field(default_factory=dict)  # one per view
    request: HoleRequest | None = None
    hole: HoleRun | None = None
    view: ModelView | None = None  # what the current hole decodes on
    runtime: ModelRuntime | None = None  # the view's backend's
    plan: Plan | None = None  # companions, view, review of the current hole (prefer, fuse)
    companions: dict[tuple[str, str], RowContext] = field(default_factory=dict)
    rng: torch.Generator | None = None
    score: float = 0.0
    error: LmqError | None = None
    remote: Future | None = None  # the hole a serving engine is decoding

    @property
    def context(self) -> RowContext:
        assert self.view is not None
        return self.contexts[self.view]

    def hole_contexts(self) -> list[RowContext]:
        """The contexts the current hole advances: the main one and its companions."""
        if self.plan is None:
            return [self.context]
        return [self.context] + [self.companions[c.key] for c in self.plan.companions]

    @property
    def active(self) -> bool:
        return self.error is None and not self.state.finished


class Decoding:
    """Runs rows to completion under one decoder."""

    def __init__(self, decoder: DecoderSpec, resolve: ModelResolver, runtimes: ModelRuntimes,
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 force_tokens: bool = True) -> None:
        self.decoder = decoder
        self.resolve = resolve
        self.runtimes = runtimes
        self.on_event = on_event  # streaming: token and hole events, see _emit
        self.force_tokens = force_tokens
        self._pools: dict[Backend, ThreadPoolExecutor] = {}
        self._waiting: dict[Future, Row] = {}
        self.trace: list[TraceEntry] = []
        self.decisions: list[dict[str, Any]] = []  # fusion weights per step, per hole
        self.forward_passes = 0
        self.forced_since_call = 0
        self.mask_seconds = 0.0

    # ------------------------------------------------------------ driving

    def run(self, rows: list[Row], fail_fast: bool) -> list[Row]:
        """Decode until every row has finished or failed. With ``fail_fast`` the first
        error is raised; otherwise it is kept on its row and the other rows go on."""
        try:
            for row in rows:
                self._guard(row, self.advance, fail_fast)
            while True:
                live = self.still_live(rows, fail_fast)
                if not live:
                    return rows
                local = [row for row in live if row.remote is None]
                if local:
                    self.step(local, fail_fast)
                self.collect(block=not local, fail_fast=fail_fast)
        finally:
            for pool in self._pools.values():
                pool.shutdown(wait=False, cancel_futures=True)
            self._pools.clear()

    def still_live(self, rows: list[Row], fail_fast: bool) -> list[Row]:
        """The active rows, after stopping those past their run's ``limits.timeout`` (a long
        hole runs no statements, so the interpreter cannot check it)."""
        for row in rows:
            if row.active:
                self._guard(row, lambda r: r.state.check_deadline(), fail_fast)
        return [row for row in rows if row.active]

    def step(self, live: list[Row], fail_fast: bool) -> None:
        entries, masking = len(self.trace), self.mask_seconds
        logits = self.forward(live)
        with single_threaded(logits[0].device):
            picks = self.pick_greedy(live, logits) if self.decoder.name == "argmax" else {}
            for row, row_logits in zip(live, logits):
                pick = picks.get(id(row))
                self._guard(row, functools.partial(self.choose, logits=row_logits, pick=pick),
                            fail_fast)
        if len(self.trace) > entries:
            self.trace[-1].mask_ms = (self.mask_seconds - masking) * 1000

    def _guard(self, row: Row, action: Callable[[Row], None], fail_fast: bool) -> None:
        try:
            try:
                action(row)
            except Exception as error:  # the last line of defence: the row ran out of memory
                if not is_out_of_memory(error):
                    raise
                raise LmqLimitError("ran out of memory while decoding this row (lower "
                                    "limits.memory, the batch size or the decoder's n)"
                                    ) from None
        except LmqError as error:
            if fail_fast:
                raise
            self.fail(row, error)

    def fail(self, row: Row, error: LmqError) -> None:
        """Stop ``row`` with ``error``, freeing its rows of the backend. The error is kept
        without its traceback: its frames hold the rows, and the cycle would keep every
        failed row's values until the next garbage collection."""
        row.error = error.with_traceback(None)
        self.release(row)
        if self.on_event is not None:
            self.on_event({"event": "failed", "instance": row.instance})

    def forward(self, rows: list[Row]) -> list[torch.Tensor]:
        """One forward pass per model over the contexts with queued tokens (others reuse
        their last logits); each row's logits, combined across its companions."""
        by_model: dict[Any, list[tuple[Row, RowContext]]] = {}
        for row in rows:
            for context in row.hole_contexts():
                if context.pending:  # specialists' views of one model share its passes
                    by_model.setdefault(context.backend, []).append((row, context))
        for backend, pairs in by_model.items():
            feeds = {context.handle: context.take_feed() for _, context in pairs}
            logits = forward_logits(backend, feeds)
            self.forward_passes += 1
            for (_, context), row_logits in zip(pairs, logits):
                context.last_logits = row_logits
            for row in {id(row): row for row, _ in pairs}.values():
                row.counters.forward_passes += 1
            names = dict.fromkeys(context.view.name for _, context in pairs)
            self.trace.append(TraceEntry(", ".join(names), len(feeds),
                                         sum(len(ids) for ids in feeds.values()),
                                         len(feeds), 0.0, self.forced_since_call))
            self.forced_since_call = 0
        with single_threaded(rows[0].context.last_logits.device):
            return [self._combined(row) for row in rows]

    def _combined(self, row: Row) -> torch.Tensor:
        if row.plan is None or row.hole is None:
            return row.context.last_logits
        others = [row.companions[c.key].last_logits for c in row.plan.companions]
        logits, decision = row.plan.combine(row.context.last_logits, others)
        if decision:
            row.plan.decisions.append(decision)
        return logits

    # ------------------------------------------------------------ per row

    def advance(self, row: Row) -> None:
        """Run the row's program to its next hole and set that hole up."""
        while True:
            request = row.state.run()
            row.request = request
            if request is None:
                self.release(row)
                if self.on_event is not None:
                    self.on_event({"event": "done", "instance": row.instance})
                return
            model, row.plan, decision = hole_plan(request, row.state.context)
            if decision is not None:
                self.decisions.append({"instance": row.instance, "hole": request.hole.name,
                                       **decision})
            row.view = self.resolve(model)
            row.runtime = self.runtimes.get(row.view.backend)
            context = self._context(row)
            context.sync(row.plan.segments(row.state.context) if row.plan else
                         row.state.context, row.state.role)
            if context.length == 0:
                context.start_token(row.runtime.start_token)
            served = self._served(row)
            if request.distribution is not None:
                if served is not None:  # scored by the engine now, not after a forward
                    served.append(context.handle, context.take_feed())
                    self.distribution(row, None, request.distribution)
                return
            if row.plan is not None:
                if served is not None and row.plan.companions:
                    raise served.unsupported_feature(
                        "holes decoded with companion rows (fuse, contrastive prefer)",
                        "decode them on a local model")
                self._sync_companions(row)
                row.plan.start_score = row.score
            row.hole = open_hole(request, context, row.runtime, self.decoder_for(row).max_tokens,
                                 row.plan is None, row.state.source)
            if served is not None and row.hole.ending is None:
                self.submit(row)
                return
            if row.hole.ending is None and self.force_tokens:
                self.force(row)
            if row.hole.ending is None:
                return
            self.finish(row)  # the constraint left no choice at all

    def _sync_companions(self, row: Row) -> None:
        """Bring the hole's companion contexts up to date (each sees its own segments)."""
        assert row.plan is not None and row.runtime is not None and row.view is not None
        for companion in row.plan.companions:
            context = row.companions.get(companion.key)
            if context is None:
                view = row.view if companion.model is None else self.resolve(companion.model)
                runtime = self.runtimes.get(view.backend)
                if runtime.index.fingerprint != row.runtime.index.fingerprint:
                    raise LmqModelError(f"{view.name} and {row.view.name} have "
                                        "different vocabularies; logits can only be combined "
                                        "across models with identical tokenizers")
                context = RowContext(view, runtime, view.backend.new_rows(1)[0],
                                     row.context.max_len, row.counters)
                row.companions[companion.key] = context
            context.sync(companion.segments(row.state.context), row.state.role)
            if context.length == 0:
                context.start_token(row.runtime.start_token)

    # ------------------------------------------------------------ serving engines

    def submit(self, row: Row) -> None:
        """Hand the row's hole to its serving engine (:mod:`lmq.runtime.decoding.remote`),
        once it is known to be one the engine can decode exactly. At most the backend's
        ``max_inflight`` holes are in flight (the model spec's ``inflight=N``, else the
        engine's slots); the others queue."""
        backend, hole = row.context.backend, row.hole
        assert isinstance(backend, ServedBackend) and hole is not None
        check_supported(hole, backend, self.decoder_for(row))
        pool = self._pools.get(backend)
        if pool is None:
            pool = self._pools[backend] = ThreadPoolExecutor(
                backend.max_inflight, thread_name_prefix=f"lmq-{backend.engine}")
        row.remote = pool.submit(decode_remote, hole, row.context, row.runtime,
                                 self.decoder_for(row), row.rng, self.force_tokens)
        self._waiting[row.remote] = row

    def collect(self, block: bool, fail_fast: bool) -> None:
        """Take the holes engines have finished (waiting for one when ``block``) and run
        their rows on."""
        if not self._waiting:
            return
        done, _ = wait(list(self._waiting), timeout=None if block else 0,
                       return_when=FIRST_COMPLETED)
        for future in [f for f in self._waiting if f in done]:  # in submission order
            row = self._waiting.pop(future)
            row.remote = None
            self._guard(row, functools.partial(self._landed, future=future), fail_fast)

    def _landed(self, row: Row, future: Future) -> None:
        outcome: Outcome = future.result()  # the hole's error, if it failed, raised here
        hole, runtime = row.hole, row.runtime
        assert hole is not None and runtime is not None
        for token in outcome.tokens:
            self._emit(row, "token", text=runtime.text_bytes[token].decode("utf-8", "replace"),
                       token=token)
        row.score += sum(hole.logprobs) + outcome.end_logprob
        self.forward_passes += 1
        self.finish(row)

    def _served(self, row: Row) -> ServedBackend | None:
        backend = row.view.backend if row.view is not None else None
        return backend if isinstance(backend, ServedBackend) else None

    def _context(self, row: Row) -> RowContext:
        view, runtime = row.view, row.runtime
        assert view is not None and runtime is not None
        if view not in row.contexts:
            handle = view.backend.new_rows(1)[0]
            max_len = self.decoder.max_len or runtime.context_length
            row.contexts[view] = RowContext(view, runtime, handle, max_len, row.counters)
        return row.contexts[view]

    def choose(self, row: Row, logits: torch.Tensor,
               pick: tuple[int, float] | None = None) -> None:
        """Pick the row's next token from its logits (or score a distribution); ``pick``
        is a choice already made for the whole batch by :meth:`pick_greedy`."""
        request = row.request
        assert request is not None and row.runtime is not None
        if request.distribution is not None:
            self.distribution(row, logits, request.distribution)
            return
        assert row.hole is not None
        if pick is None:  # the choice is timed as mask time
            start = time.perf_counter()
            pick = pick_token(row.hole, logits, self.decoder_for(row), row.rng,
                              row.runtime.bank(logits.device))
            self.mask_seconds += time.perf_counter() - start
        self.apply(row, *pick)

    def pick_greedy(self, rows: list[Row],
                    logits: list[torch.Tensor]) -> dict[int, tuple[int, float]]:
        """Greedy choices for all hole rows at once, one stacked mask per model
        (:func:`~lmq.runtime.decoding.choosing.greedy_batch`). Rows whose mask allows nothing are
        left to the per-row path, which reports the error."""
        groups: dict[tuple, list[tuple[Row, torch.Tensor]]] = {}
        for row, row_logits in zip(rows, logits):
            if row.hole is not None and row.request is not None and \
                    row.request.distribution is None:
                key = (id(row.runtime), row_logits.device)
                groups.setdefault(key, []).append((row, row_logits))
        picks: dict[int, tuple[int, float]] = {}
        for pairs in groups.values():
            start = time.perf_counter()
            runtime = pairs[0][0].runtime
            assert runtime is not None
            chosen = greedy_batch([row.hole for row, _ in pairs],  # type: ignore[misc]
                                  [row_logits for _, row_logits in pairs],
                                  runtime.bank(pairs[0][1].device))
            self.mask_seconds += time.perf_counter() - start
            for (row, _), pick in zip(pairs, chosen):
                if pick is not None:
                    picks[id(row)] = pick
        return picks

    def apply(self, row: Row, token: int, logprob: float) -> None:
        """Extend the row's hole with ``token`` (end-of-sequence ends it)."""
        hole, runtime = row.hole, row.runtime
        assert hole is not None and runtime is not None
        row.score += logprob
        if token in runtime.vocabulary.eos_ids and hole.can_end():
            hole.end_of_sequence()
        else:
            hole.push(token, logprob)
            for context in row.hole_contexts():
                context.push_generated(token)
            row.counters.generated_tokens += 1
            self._emit(row, "token", text=runtime.text_bytes[token].decode("utf-8", "replace"),
                       token=token, logprob=logprob)
        if hole.ending is None and self.force_tokens:
            self.force(row)
        if hole.ending is not None:
            self.finish(row)

    def force(self, row: Row) -> None:
        """Append the tokens the constraint leaves no choice about, without sampling
        (:func:`~lmq.runtime.decoding.hole_constraint.forced`): they ride along in the next forward
        pass."""
        hole, runtime = row.hole, row.runtime
        assert hole is not None and runtime is not None
        for token in forced(hole, runtime, row.hole_contexts(), row.counters):
            self.forced_since_call += 1
            self._emit(row, "token", text=runtime.text_bytes[token].decode("utf-8", "replace"),
                       token=token, logprob=0.0)

    def decoder_for(self, row: Row) -> DecoderSpec:
        """What the row's hole decodes with: the run's decoder with the generation settings
        (``temperature``, ``top_k``, ``top_p``, ``max_tokens``) of the specialist whose view
        decodes it, if any. The only place a hole's ``max_tokens`` is decided; the hole's
        own bound and the room left in the context narrow it (:func:`open_hole`)."""
        settings = row.view.settings if row.view is not None else None
        return dataclasses.replace(self.decoder, **settings) if settings else self.decoder

    def finish(self, row: Row) -> None:
        """Close the row's hole: fix up the context, hand the value to the program, and run
        on to the next hole."""
        hole, runtime = row.hole, row.runtime
        assert hole is not None and hole.ending is not None and runtime is not None
        ending = hole.ending
        extra = runtime.vocabulary.encode(ending.tail.decode("utf-8")) if ending.tail else []
        if row.plan is not None and row.plan.review is not None and not self._reviewed(
                row, row.context.hole_tokens[:ending.keep] + extra):
            return
        contexts = row.hole_contexts()
        tokens = contexts[0].close_hole(ending.keep, extra)
        for companion in contexts[1:]:
            companion.close_hole(ending.keep, extra)
        text = ending.value.decode("utf-8", errors="replace")
        check_predicates(hole, text)
        row.state.fill(text, tokens=tuple(tokens), model=row.view,
                       logprobs=hole.logprobs[:ending.keep])
        if row.plan is not None and row.plan.decisions:
            self.decisions.append({"hole": hole.spec.hole, "instance": row.instance,
                                   "steps": row.plan.decisions})
        self._emit(row, "hole", text=text, value=row.state.variables.get(hole.spec.hole, text))
        for context in contexts:
            context.adopt(row.state.context[-1] if text else None, len(tokens))
        row.hole, row.plan = None, None
        self.advance(row)

    def _reviewed(self, row: Row, tokens: list[int]) -> bool:
        """Whether the plan's review keeps the finished value (``tokens`` as they will stand
        in the context). If not, the hole starts again under the next plan (a cascade's
        next source); the discarded attempt's tokens leave the row and its score."""
        hole, plan, request = row.hole, row.plan, row.request
        assert hole is not None and hole.ending is not None and request is not None
        assert plan is not None
        row.plan, passes = review(plan, row.context, hole.ending.value.decode(
            "utf-8", errors="replace"), tokens, text_before(row.state.context, row.state.role))
        self.forward_passes += passes
        if row.plan.review is None:
            return True
        self._emit(row, "retract", text=hole.ending.value.decode("utf-8", errors="replace"))
        row.score = row.plan.start_score = plan.start_score
        row.context.sync(row.plan.segments(row.state.context), row.state.role)
        row.hole = open_hole(request, row.context, row.runtime, self.decoder_for(row).max_tokens,
                             row.plan is None, row.state.source)
        served = self._served(row)
        if served is not None and row.hole.ending is None:
            self.submit(row)
            return False
        if row.hole.ending is None and self.force_tokens:
            self.force(row)
        if row.hole.ending is not None:
            self.finish(row)
        return False

    def distribution(self, row: Row, logits: torch.Tensor | None,
                     values: Sequence[str]) -> None:
        """Score every value as a continuation in one batched pass; bind the likeliest."""
        runtime = row.runtime
        assert runtime is not None and row.request is not None
        sequences = [runtime.vocabulary.encode(value) for value in values]
        _check_scoring(sequences, len(runtime.text_bytes), row.state.limits.memory,
                       row.request)
        scores = runtime.backend.score(row.context.handle, sequences, first_logits=logits)
        self.forward_passes += 1
        row.counters.forward_passes += 1
        probabilities, best = weigh(values, scores)
        assert row.request is not None
        row.state.record_distribution(row.request.hole.name, probabilities)
        row.state.fill(values[best], logprobs=list(scores[best]))
        row.score += sum(scores[best])
        self.advance(row)

    def _emit(self, row: Row, kind: str, **data: Any) -> None:
        """Tell the listener about progress: ``token`` (a token appended to a hole; text is
        the token's own text, possibly a partial character), ``retract`` (the hole's tokens
        so far are dropped and it starts again: a cascade's rejected attempt, whose value is
        the text) and ``hole`` (a value done)."""
        if self.on_event is not None and row.request is not None:
            self.on_event({"event": kind, "instance": row.instance,
                           "hole": row.request.hole.name, **data})

    def release(self, row: Row) -> None:
        for context in [*row.contexts.values(), *row.companions.values()]:
            context.backend.release([context.handle])
        row.contexts.clear()
        row.companions.clear()


def _check_scoring(sequences: Sequence[Sequence[int]], vocabulary: int, memory: int,
                   request: HoleRequest) -> None:
    """A distribution's scoring pass holds a row of logits (and one of log-probabilities)
    per distinct prefix of its values: refuse, before allocating, more than
    ``limits.memory`` allows."""
    prefixes = {tuple(ids[:j]) for ids in sequences for j in range(1, len(ids))}
    size = 8 * vocabulary * len(prefixes)
    if size > memory:
        raise LmqLimitError(f"scoring the {len(sequences):,} values of the distribution of "
                            f"hole '{request.hole.name}' would hold {len(prefixes):,} rows of "
                            f"{vocabulary:,} logits ({size:,} bytes), more than "
                            f"{memory:,} (limits.memory)", request.hole.span)
