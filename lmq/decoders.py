"""Decoder clauses (LANGUAGE.md section 5): which decoder runs a program, with what options.

:func:`decoder_spec` validates an ``ir.Decoder`` (names, arguments, types and ranges, with a
did-you-mean for misspellings) and returns a frozen :class:`DecoderSpec`. Arguments must be
constants; positional arguments fill the decoder's parameters in the order of
:data:`PARAMETERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmq import ir
from lmq.errors import LmqCompileError, LmqParameterError, Span, did_you_mean

DEFAULT_MAX_TOKENS = 256
MAX_SEED = 2**63  # seeds are 64-bit (torch's generators)


@dataclass(frozen=True)
class DecoderSpec:
    """A validated decoder. ``n`` is the number of samples (``sample``) or beams (``beam``);
    ``max_len`` is the total token budget (None: the model's context); ``max_tokens`` the
    per-hole budget."""

    name: str = "argmax"
    n: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    max_len: int | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS


# Parameters of each decoder, in positional order.
PARAMETERS: dict[str, tuple[str, ...]] = {
    "argmax": ("max_len", "max_tokens", "seed"),
    "sample": ("n", "temperature", "top_k", "top_p", "seed", "max_len", "max_tokens"),
    "beam": ("n", "max_len", "max_tokens", "seed"),
}
DEFAULT_N = {"argmax": 1, "sample": 1, "beam": 2}
# LMQL's runtime options: they tune its API clients, caches and logging, which lmq does
# not have; accepted (as constants) and without effect. argmax's ``n`` is LMQL's too:
# greedy decoding has one result however many rows run it.
NO_OP_OPTIONS = ("chunksize", "cache", "verbose", "chunk_timeout", "openai_nonstop",
                 "openai_chunksize", "step_budget")
# LMQL's decoders that LMQL itself marks experimental and does not define exactly.
LMQL_DECODERS = ("beam_var", "var", "best_k", "beam_sample")


def lmql_decoder_problem(name: str) -> tuple[str, str]:
    """The message and hint for one of :data:`LMQL_DECODERS`."""
    return (f"the decoder '{name}' is not available in lmq: LMQL marks it experimental and "
            "does not define what it computes", "beam(n=...) is beam search over the whole "
            "program; sample(n=...) draws independent samples")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check(name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for parameter ``name``, or None."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name in ("n", "max_tokens"):
        return None if _positive_int(value) else "a positive integer"
    if name in ("max_len", "top_k"):
        return None if value is None or _positive_int(value) else "a positive integer or None"
    if name == "seed":
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool)
                               and 0 <= value < MAX_SEED)
        return None if ok else "an integer from 0 to 2**63 - 1, or None"
    if name == "temperature":
        return None if number and value >= 0 else "a number >= 0"
    if name == "top_p":
        return None if value is None or (number and 0 < value <= 1) else \
            "a number in (0, 1] or None"
    return None


def check_seed(seed: Any) -> None:
    """A seed given by the caller (``--seed``, ``q.batch(seed=...)``)."""
    problem = _check("seed", seed)
    if problem is not None:
        raise LmqParameterError(f"the seed must be {problem}, not {seed!r}")


class NotConstant(Exception):
    """Raised by :func:`constant_value` for an expression that is not a constant."""


def constant_value(expr: ir.Expr) -> Any:
    """The value of a constant expression: literals, ``-x``/``+x`` of a number, lists and
    tuples of constants."""
    if isinstance(expr, ir.Const):
        return expr.value
    if isinstance(expr, ir.UnaryOp) and expr.op in "-+":
        value = constant_value(expr.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if expr.op == "-" else value
    if isinstance(expr, (ir.ListExpr, ir.TupleExpr)):
        values = [constant_value(item) for item in expr.elts]
        return values if isinstance(expr, ir.ListExpr) else tuple(values)
    raise NotConstant


def decoder_spec(decoder: ir.Decoder | None,
                 evaluate_const: Callable[[ir.Expr], Any] = constant_value) -> DecoderSpec:
    """Validate a decoder clause (None: the default ``argmax``).

    ``evaluate_const`` returns an argument's value or raises (any exception) when the
    argument is not a constant.
    """
    if decoder is None:
        return DecoderSpec()
    name = decoder.name
    span = decoder.span
    if name not in PARAMETERS:
        raise LmqCompileError(f"unknown decoder '{name}'", _name_span(span, name),
                              hint=did_you_mean(name, PARAMETERS)
                              or "the decoders are argmax, sample and beam")
    parameters = PARAMETERS[name]
    values: dict[str, Any] = {}
    if len(decoder.args) > len(parameters):
        extra = decoder.args[len(parameters)]
        raise LmqCompileError(f"decoder '{name}' takes at most {len(parameters)} positional "
                              f"arguments ({', '.join(parameters)})", extra.span)
    named = [(parameter, arg, arg.span) for parameter, arg in zip(parameters, decoder.args)]
    for keyword in decoder.keywords:
        if keyword.name in NO_OP_OPTIONS or (name == "argmax" and keyword.name == "n"):
            try:
                evaluate_const(keyword.value)
            except Exception:  # noqa: BLE001 - as below
                raise LmqCompileError(f"the argument '{keyword.name}' of decoder '{name}' "
                                      "must be a constant", keyword.value.span) from None
            continue
        if keyword.name not in parameters:
            raise LmqCompileError(
                f"unknown argument '{keyword.name}' for decoder '{name}'", keyword.span,
                hint=did_you_mean(keyword.name, parameters)
                or f"'{name}' takes {', '.join(parameters)}")
        if keyword.name in values or keyword.name in [p for p, _, _ in named]:
            raise LmqCompileError(f"argument '{keyword.name}' given twice", keyword.span)
        named.append((keyword.name, keyword.value, keyword.span))
    for parameter, expr, arg_span in named:
        try:
            value = evaluate_const(expr)
        except Exception:  # noqa: BLE001 - the evaluator's contract: any failure
            raise LmqCompileError(f"the argument '{parameter}' of decoder '{name}' must be a "
                                  "constant", expr.span) from None
        problem = _check(parameter, value)
        if problem is not None:
            raise LmqCompileError(f"'{parameter}' must be {problem}, not {value!r}", arg_span)
        values[parameter] = value
    values.setdefault("n", DEFAULT_N[name])
    if "temperature" in values:
        values["temperature"] = float(values["temperature"])
    if "top_p" in values and values["top_p"] is not None:
        values["top_p"] = float(values["top_p"])
    return DecoderSpec(name=name, **values)


def _name_span(span: Span, name: str) -> Span:
    """The span of the decoder's name (the start of the clause)."""
    return Span(span.start, span.start + len(name), span.line, span.column, span.line,
                span.column + len(name), span.filename)
