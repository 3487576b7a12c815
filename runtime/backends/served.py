"""Models behind a serving engine: vLLM, SGLang or llama.cpp's ``llama-server``.

A :class:`ServedBackend` keeps the interpreter, the token index and every constraint in
lmq; the engine runs the model. Its rows are token lists held here: prompts travel as
token ids, and each hole is one request carrying the whole prefix, so the engine's prefix
cache does the reuse. A served backend has no per-step logits (``forward`` is not
offered); the decoding loop hands it a hole as a :class:`Job` instead
(:mod:`lmq.runtime.decoding.remote`), and the engine generates under the job's
constraint, compiled once into the engine's own form (a regular expression or a GBNF
grammar written from lmq's automaton, :mod:`lmq.runtime.automata.export`). Every token
that comes back is checked against lmq's automaton again, so a value that breaks its
constraint is an error naming the hole, never a result.

An engine is spoken to through a :class:`Dialect` (one module per engine:
``served_llama``, ``served_vllm``, ``served_sglang``) over a :class:`~lmq.runtime.backends.
served_http.Client`; the dialect says which decoding features the engine can give exactly
(:class:`Features`) and lmq refuses the others with an error naming the feature and the
engine.
"""

from __future__ import annotations

import itertools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from lmq.errors import LmqModelError
from lmq.runtime.automata.fsm import ByteDfa
from lmq.runtime.backends.base import Backend, BackendStats, Logits, Vocabulary
from lmq.runtime.backends.served_http import Client


@dataclass(frozen=True)
class Step:
    """One token the engine generated: its id, its log-probability under the model's
    unconstrained distribution (None where the engine reports none) and the model's own
    most likely token there, before any constraint (None where the engine cannot say)."""

    token: int
    logprob: float | None = None
    top: int | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()  # the raw top tokens reported


@dataclass(frozen=True)
class Job:
    """One generation request: continue ``prompt`` by at most ``max_tokens`` tokens.

    ``constraint`` is the language the generated text must stay in, as a byte DFA and
    the state the value stands in now (None: any text); ``allow_end`` False bans the
    end-of-sequence tokens (a token count that may not end yet); ``temperature`` 0 is
    greedy. ``need_top`` asks for :attr:`Step.top` at every step (the hole-ending rule of
    ``argmax``, LANGUAGE.md section 4). ``stops`` are phrases the engine may stop after
    (kept in the output), a saving only: lmq finds the phrases itself."""

    prompt: tuple[int, ...]
    max_tokens: int
    constraint: ByteDfa | None = None
    state: int = 0
    allow_end: bool = True
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    need_top: bool = False
    stops: tuple[str, ...] = ()
    slot: int | None = None  # the engine slot the row keeps its cache in (llama-server)


@dataclass
class Generation:
    """What a request did: ``finish`` is ``"eos"`` (an end-of-sequence token, which is
    the last step), ``"length"`` (``max_tokens`` or the context), ``"stop"`` (a stop
    phrase) or ``"closed"`` (lmq stopped reading); ``computed`` and ``cached`` are the
    prompt tokens the engine evaluated and reused, where it says."""

    finish: str
    computed: int | None = None
    cached: int | None = None


Consume = Callable[[Step], bool]
"""Called with each generated token in order; returns False to stop the request."""


@dataclass(frozen=True)
class Features:
    """What an engine can do exactly (each False is an error naming the feature)."""

    raw_top: bool  # the model's unconstrained top token at each generated step
    streaming: bool  # a request stops as soon as lmq stops reading
    sampling_with_constraint: bool  # exact masked sampling (temperature only)
    score: bool  # exact log-probabilities of given continuations


@dataclass
class ServerInfo:
    """What the capability probe found."""

    model: str  # the engine's name for the model
    context_length: int
    vocab_size: int | None
    slots: int  # requests the engine runs at once (its default for lmq's in-flight cap)
    model_path: str | None = None  # where the engine loaded the model from
    extra: dict = field(default_factory=dict)


class Dialect(ABC):
    """How one engine's HTTP API is spoken."""

    engine: str  # "llama-server", "vLLM", "SGLang"
    features: Features

    def __init__(self, model: str | None = None) -> None:
        self.model = model  # the served model's name, where the server has several
        self.token_bytes: list[bytes] = []  # each id's bytes (set by the backend)

    @abstractmethod
    def probe(self, client: Client) -> ServerInfo:
        """Ask the server what it serves (an :class:`LmqModelError` if it is none of ours)."""

    @abstractmethod
    def tokenize(self, client: Client, text: str) -> list[int]:
        """The server's token ids of ``text`` (special tokens parsed, none added)."""

    @abstractmethod
    def generate(self, client: Client, job: Job, consume: Consume) -> Generation:
        """Run ``job``, calling ``consume`` with each generated token in order."""

    @abstractmethod
    def score(self, client: Client, prompt: Sequence[int],
              continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        """Exact log-probabilities of each continuation's tokens after ``prompt``."""


class ServedBackend(Backend):
    """A model on a serving engine; rows are client-side token lists (module docstring).

    ``max_inflight`` bounds the requests lmq keeps in flight on it (default: the engine's
    slot count). ``url`` is where the engine listens."""

    def __init__(self, name: str, url: str, dialect: Dialect, client: Client,
                 vocabulary: Vocabulary, info: ServerInfo,
                 max_inflight: int | None = None) -> None:
        self.name, self.url, self.dialect, self.client = name, url, dialect, client
        self.vocabulary = vocabulary
        dialect.token_bytes = [data or b"" for data in vocabulary.token_bytes()]
        self.info = info
        self.device = "remote"
        self.context_length = info.context_length
        self.stats = BackendStats()
        self.max_inflight = max(1, max_inflight or info.slots)
        self.computed_tokens = self.cached_tokens = 0  # as the engine reports them
        self._rows: dict[int, list[int]] = {}
        self._slots: dict[int, int] = {}
        self._handles = itertools.count()
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        return self.dialect.engine

    # -- rows: token lists -------------------------------------------------------------

    def new_rows(self, n: int) -> list[int]:
        with self._lock:
            handles = [next(self._handles) for _ in range(n)]
            for handle in handles:
                self._rows[handle] = []
                self._slots[handle] = handle % self.info.slots
            return handles

    def slot(self, row: int) -> int:
        """The engine slot whose cache holds the row's context: a row's requests go to one
        slot (a stream lmq stopped early still occupies its slot for a moment, and the
        engine would otherwise start the next request on another, cold one)."""
        return self._slots[row]

    def append(self, row: int, tokens: Sequence[int]) -> None:
        """Extend the row's context (the tokens travel with its next request)."""
        self._rows[row].extend(tokens)
        self.stats.tokens_fed += len(tokens)

    def tokens(self, row: int) -> tuple[int, ...]:
        return tuple(self._rows[row])

    def forward(self, feeds: Mapping[int, Sequence[int]]) -> Logits:
        raise self.unsupported_feature("per-token logits (fuse, contrastive prefer rows)",
                                       "use the engine for plain holes; combine models "
                                       "on a local backend")

    def fork(self, row: int, n: int) -> list[int]:
        raise self.unsupported_feature("beam search", "use argmax or sample(n)")

    def select(self, rows: Sequence[int]) -> list[int]:
        raise self.unsupported_feature("beam search", "use argmax or sample(n)")

    def rollback(self, row: int, n_tokens: int) -> None:
        if n_tokens:
            del self._rows[row][-n_tokens:]

    def release(self, rows: Sequence[int]) -> None:
        with self._lock:
            for row in rows:
                self._rows.pop(row, None)
                self._slots.pop(row, None)

    def length(self, row: int) -> int:
        return len(self._rows[row])

    # -- the engine ----------------------------------------------------------------------

    def generate(self, job: Job, consume: Consume) -> Generation:
        """Run one generation request (thread-safe: the loop keeps several in flight)."""
        generation = self.dialect.generate(self.client, job, consume)
        with self._lock:
            self.stats.forward_passes += 1
            self.computed_tokens += generation.computed or 0
            self.cached_tokens += generation.cached or 0
        return generation

    def score(self, row: int, continuations: Sequence[Sequence[int]],
              first_logits: Logits | None = None) -> list[list[float]]:
        if not self.dialect.features.score:
            raise self.unsupported_feature("scoring continuations (distribution, labels)")
        self.stats.score_calls += 1
        return self.dialect.score(self.client, self.tokens(row), continuations)

    def unsupported_feature(self, feature: str, instead: str = "") -> LmqModelError:
        """The error for a program feature this engine cannot give exactly."""
        return LmqModelError(f"{feature} is not supported on {self.engine} "
                             f"(model '{self.name}' at {self.url})",
                             hint=instead or "run the program on a local model "
                             "(smollm2, llama:FILE, hf:PATH) to use it")
