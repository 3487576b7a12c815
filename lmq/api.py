"""The embedded Python API: ``lmq.query``, ``@lmq.query``, ``lmq.F`` and ``lmq.run``.

Compiling never loads a model; the first call of a :class:`Query` does (and keeps it for
the process), so building queries at import time of an application is cheap. Compiled
programs are kept in a small in-memory LRU cache keyed by their source text
(``LMQ_NO_CACHE=1`` turns it off).

Calls are synchronous and never touch an event loop, so ``q(...)`` works the same in a
script, in a notebook (whose loop is running) and in a worker thread; ``await q.acall(...)``
runs the call in a thread so a loop stays responsive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lmq.checks import CheckedProgram, compile_source
from lmq.config import caching_enabled, default_batch_size, default_decoder_text
from lmq.decoders import DecoderSpec, check_seed
from lmq.errors import LmqCompileError, LmqError, LmqParameterError
from lmq.limits import Limits
from lmq.result import BatchResults, Result
from lmq.streaming import stream_events

log = logging.getLogger("lmq")

CACHE_SIZE = 256
_compiled: OrderedDict[tuple[str, str], CheckedProgram] = OrderedDict()
_compiled_lock = threading.Lock()


def compile_cached(text: str, filename: str = "<string>") -> CheckedProgram:
    """:func:`~lmq.checks.compile_source` through the LRU cache of compiled programs."""
    if not caching_enabled():
        return compile_source(text, filename)
    key = (text, filename)
    with _compiled_lock:
        checked = _compiled.get(key)
        if checked is not None:
            _compiled.move_to_end(key)
            return checked
    checked = compile_source(text, filename)
    with _compiled_lock:
        _compiled[key] = checked
        while len(_compiled) > CACHE_SIZE:
            _compiled.popitem(last=False)
    return checked


def clear_cache() -> None:
    """Forget every compiled program."""
    with _compiled_lock:
        _compiled.clear()


def parse_decoder(decoder: str | DecoderSpec | None) -> DecoderSpec | None:
    """A decoder given as text (``"sample(n=2, temperature=0.7)"``, ``"beam"``) or as a
    :class:`DecoderSpec`; errors point into the text."""
    if decoder is None or isinstance(decoder, DecoderSpec):
        return decoder
    if not isinstance(decoder, str):
        raise LmqParameterError(f"decoder must be a string or a DecoderSpec, not "
                                f"{type(decoder).__name__}")
    text = decoder.strip()
    if not text or "\n" in text:
        raise LmqCompileError(f"not a decoder: {decoder!r}",
                              hint="for example argmax, sample(n=2), beam(n=3)")
    # A one-line standard-form program: the front end validates the clause.
    return compile_cached(f'{text}\n    ""\n', "<decoder>").decoder


class Query:
    """A compiled lmq program. Call it with the program's parameters to run it.

    ``signature`` is the order in which positional arguments bind (the decorated
    function's parameters; else the program's parameters in order of appearance) and
    ``defaults`` the values of parameters the caller may leave out.
    """

    def __init__(self, checked: CheckedProgram, model: Any = None,
                 tools: Mapping[str, Any] | None = None,
                 decoder: str | DecoderSpec | None = None, limits: Limits | None = None,
                 *, signature: Sequence[str] | None = None,
                 defaults: Mapping[str, Any] | None = None, name: str | None = None) -> None:
        self.checked = checked
        self.model = model
        self.tools = dict(tools or {})
        self.decoder = parse_decoder(decoder)
        self.limits = limits or Limits()
        self.signature = tuple(signature if signature is not None
                               else (*checked.params, *checked.tools))
        self.defaults = dict(defaults or {})
        self.name = name
        if name:
            self.__name__ = name

    @property
    def params(self) -> tuple[str, ...]:
        return self.checked.params

    @property
    def source(self) -> str:
        return self.checked.program.source.text

    # ------------------------------------------------------------ running

    def __call__(self, *args: Any, **params: Any) -> Result | list[Result]:
        """Run once: a :class:`Result`, or a list of them (best first) for ``sample(n>1)``
        and ``beam``. Errors are raised."""
        answer = self.execute([self.bind(args, params)], fail_fast=True)[0]
        assert not isinstance(answer, LmqError)
        return answer

    async def acall(self, *args: Any, **params: Any) -> Result | list[Result]:
        """``await q.acall(...)``: the call runs in a worker thread."""
        bound = self.bind(args, params)
        answers = await asyncio.to_thread(self.execute, [bound], True)
        return answers[0]

    def batch(self, inputs: Sequence[Mapping[str, Any]], batch_size: int | None = None,
              errors: str = "return", seed: int | None = None) -> BatchResults:
        """Run one program instance per parameter dict, ``batch_size`` instances decoding
        in lockstep (default: configuration, 16), so their rows share forward passes.

        Returns the answers in input order; an input that failed holds its ``LmqError``
        (``errors="raise"`` raises the first one, in input order, instead). The list's
        ``stats`` covers the whole batch; its ``forward_passes`` counts each shared
        forward pass once."""
        if errors not in ("return", "raise"):
            raise ValueError("errors must be 'return' or 'raise'")
        size = batch_size or default_batch_size()
        if size < 1:
            raise ValueError("batch_size must be positive")
        answers = BatchResults()
        for start in range(0, len(inputs), size):
            chunk: list[Any] = []
            for params in inputs[start:start + size]:
                try:
                    chunk.append(self.bind((), dict(params)))
                except LmqError as error:
                    chunk.append(error)
            todo = [i for i, item in enumerate(chunk) if not isinstance(item, LmqError)]
            stats: dict[str, Any] = {}
            done = self.execute([chunk[i] for i in todo], fail_fast=False, seed=seed,
                                 stats=stats) if todo else []
            for i, answer in zip(todo, done):
                chunk[i] = answer
            _add_stats(answers.stats, stats)
            if errors == "raise":
                for item in chunk:
                    if isinstance(item, LmqError):
                        raise item
            answers.extend(chunk)
        answers.stats["instances"] = len(answers)
        answers.stats["failed"] = len(answers.errors)
        return answers

    def stream(self, *args: Any, **params: Any) -> Iterator[dict[str, Any]]:
        """Run once, yielding events as they happen: ``{"event": "token", "hole", "text",
        "token", "logprob", "instance"}`` for each token appended to a hole, ``{"event":
        "retract", "hole", "text", "instance"}`` when the hole's tokens so far are dropped and
        it starts again (a ``prefer`` cascade's rejected attempt), ``{"event": "hole", "hole",
        "text", "value", "instance"}`` when a hole is done, and last ``{"event": "result",
        "result": Result}``. Closing the generator early stops the run at its next token."""
        bound = self.bind(args, params)
        yield from stream_events(
            lambda listen: self.execute([bound], True, on_event=listen)[0])

    def bind(self, args: Sequence[Any], params: Mapping[str, Any]) -> dict[str, Any]:
        """Positional arguments bound by :attr:`signature`, keywords as they are,
        defaults for what is left out."""
        if len(args) > len(self.signature):
            raise LmqParameterError(f"{self.name or 'the query'} takes "
                                    f"{len(self.signature)} positional arguments, got "
                                    f"{len(args)}")
        bound = dict(zip(self.signature, args))
        for name, value in params.items():
            if name in bound:
                raise LmqParameterError(f"parameter '{name}' given twice")
            bound[name] = value
        for name, value in self.defaults.items():
            bound.setdefault(name, value)
        return bound

    def effective_decoder(self, seed: int | None = None) -> DecoderSpec:
        """The caller's decoder, else the program's clause, else ``LMQ_DECODER`` or the
        configuration's, else ``argmax``; ``seed`` replaces its seed."""
        decoder = self.decoder
        if decoder is None and self.checked.program.decoder is None:
            decoder = parse_decoder(default_decoder_text())
        decoder = decoder or self.checked.decoder
        if seed is not None:
            check_seed(seed)
            decoder = dataclasses.replace(decoder, seed=seed)
        return decoder

    def execute(self, inputs: Sequence[Mapping[str, Any]], fail_fast: bool = True,
                seed: int | None = None, on_event: Callable[[dict[str, Any]], None] |
                None = None, stats: dict[str, Any] | None = None,
                trace: list[Any] | None = None,
                on_answer: Callable[[int, Any], None] | None = None) -> list[Any]:
        """The general form of a call, under ``q(...)``, :meth:`batch` and :meth:`stream`:
        one instance per bound parameter dict of ``inputs`` (see :meth:`bind`), in one
        lockstep batch. Returns each instance's answer in input order (a Result, a list
        of them for branching decoders, or with ``fail_fast=False`` the instance's
        ``LmqError``). ``seed`` replaces the decoder's seed; ``stats`` (a dict) is filled
        with the run's counts and ``trace`` (a list) extended with its model calls;
        ``on_event(event)`` gets the stream's events and ``on_answer(index, answer)`` each
        instance's answer as soon as it is finished."""
        from lmq.runtime.run import execute

        decoder = self.effective_decoder(seed)
        # Tools passed as call arguments join the tools; inputs that pass different
        # objects for the same tool run as separate groups.
        groups: dict[tuple[int, ...], list[int]] = {}
        split: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for index, params in enumerate(inputs):
            tools = {k: v for k, v in params.items() if k in self.checked.tools}
            rest = {k: v for k, v in params.items() if k not in tools}
            split.append((rest, tools))
            groups.setdefault(tuple(id(tools[k]) for k in sorted(tools)), []).append(index)
        answers: list[Any] = [None] * len(inputs)
        for indices in groups.values():
            tools = {**self.tools, **split[indices[0]][1]}
            part: dict[str, Any] = {}
            log.info("running %d instance(s) with decoder %s", len(indices), decoder.name)
            done = execute(self.checked, [split[i][0] for i in indices], model=self.model,
                           tools=tools, decoder=decoder, limits=self.limits,
                           fail_fast=fail_fast, on_event=on_event, stats=part, trace=trace,
                           on_answer=None if on_answer is None else
                           lambda k, answer, indices=indices: on_answer(indices[k], answer))
            for i, answer in zip(indices, done):
                answers[i] = answer
            if stats is not None:
                _add_stats(stats, part)
        return answers

    def __repr__(self) -> str:
        label = f"{self.name}: " if self.name else ""
        return f"Query({label}params={list(self.params)})"


def _add_stats(total: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = round(total.get(key, 0) + value, 3) if isinstance(value, float) \
                else total.get(key, 0) + value
        else:
            total[key] = value


# ------------------------------------------------------------------------ constructors


def load_source(source_or_path: str | Path) -> tuple[str, str]:
    """(text, filename) of program text or of a ``.lmq`` file path."""
    if isinstance(source_or_path, Path) or (
            isinstance(source_or_path, str) and source_or_path.endswith(".lmq")
            and "\n" not in source_or_path and Path(source_or_path).is_file()):
        path = Path(source_or_path)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as error:
            raise LmqError(f"cannot read {path}: {error}") from None
    return str(source_or_path), "<string>"


def query(source_or_path: Any = None, *, model: Any = None,
          tools: Mapping[str, Any] | None = None, decoder: str | DecoderSpec | None = None,
          limits: Limits | None = None) -> Any:
    """Compile an lmq program into a callable :class:`Query`.

    ``source_or_path`` is program text or a ``.lmq`` path. Used as a decorator
    (``@lmq.query`` or ``@lmq.query(model=...)``) on a function, the function's docstring
    is the program and its parameters (with their defaults) are the query's parameters.
    ``decoder`` is a :class:`DecoderSpec` or its text (``"sample(n=2)"``)."""
    options = {"model": model, "tools": tools, "decoder": decoder, "limits": limits}
    if source_or_path is None:
        return lambda function: _from_function(function, **options)
    if callable(source_or_path) and not isinstance(source_or_path, (str, Path)):
        return _from_function(source_or_path, **options)
    text, filename = load_source(source_or_path)
    return Query(compile_cached(text, filename), **options)


def _from_function(function: Callable[..., Any], **options: Any) -> Query:
    name = getattr(function, "__qualname__", getattr(function, "__name__", "query"))
    doc = inspect.getdoc(function)
    if not doc:
        raise LmqCompileError(f"@lmq.query: '{name}' has no docstring holding the program")
    checked = compile_cached(doc, f"<{name} docstring>")
    signature = inspect.signature(function)
    order, defaults = [], {}
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise LmqCompileError(f"@lmq.query: '{name}' cannot take *args or **kwargs")
        order.append(parameter.name)
        if parameter.default is not parameter.empty:
            defaults[parameter.name] = parameter.default
    used = set(checked.params) | set(checked.tools)
    for free in checked.params:
        if free not in order:
            raise LmqCompileError(f"@lmq.query: the program uses '{free}', which is not "
                                  f"a parameter of '{name}'")
    for declared in order:
        if declared not in used:
            raise LmqCompileError(f"@lmq.query: parameter '{declared}' of '{name}' is not "
                                  "used by the program")
    query_ = Query(checked, signature=order, defaults=defaults, name=name, **options)
    query_.__doc__ = doc
    query_.__wrapped__ = function  # type: ignore[attr-defined]
    return query_


def run(source: str | Path, *, model: Any = None, tools: Mapping[str, Any] | None = None,
        decoder: str | DecoderSpec | None = None, **params: Any) -> Result | list[Result]:
    """Compile and run a program once."""
    return query(source, model=model, tools=tools, decoder=decoder)(**params)


class PromptFunction:
    """``lmq.F(text, constraint)``: a one-hole prompt as a function of its parameters;
    calling it returns the hole's value (a list of values for ``sample(n>1)``/``beam``)."""

    def __init__(self, text: str, constraint: str | None = None, **options: Any) -> None:
        self.text = text
        self.constraint = constraint
        source = _prompt_literal(text) + (f" where {constraint}" if constraint else "")
        self.query: Query = query(source, **options)
        holes = self.query.checked.holes
        if len(holes) != 1:
            raise LmqCompileError(f"lmq.F needs exactly one hole, found {len(holes)}"
                                  + (f" ({', '.join(holes)})" if holes else ""))
        self.hole = holes[0]

    @property
    def params(self) -> tuple[str, ...]:
        return self.query.params

    def __call__(self, *args: Any, **params: Any) -> Any:
        answer = self.query(*args, **params)
        if isinstance(answer, list):
            return [result.variables[self.hole] for result in answer]
        return answer.variables[self.hole]

    def __repr__(self) -> str:
        return f"F({self.text!r}, {self.constraint!r})"


def F(text: str, constraint: str | None = None, *, model: Any = None,
      tools: Mapping[str, Any] | None = None, decoder: str | DecoderSpec | None = None,
      limits: Limits | None = None) -> PromptFunction:
    """A function from prompt-string content with exactly one hole (``"Capital of
    {country}:[C]"``, as written between the quotes of a prompt statement) and its
    constraint (``'STOPS_AT(C, "\\n")'``) to the hole's value."""
    return PromptFunction(text, constraint, model=model, tools=tools, decoder=decoder,
                          limits=limits)


def _prompt_literal(text: str) -> str:
    """``text`` between triple quotes it does not contain (a regex hole's pattern uses the
    other quote character)."""
    for quote in ('"""', "'''"):
        if quote not in text and not text.endswith(quote[0]) and not (
                quote[0] == '"' and 'r"' in text and "r'" not in text):
            return quote + text + quote
    raise LmqCompileError("lmq.F: the text contains both kinds of triple quotes")
