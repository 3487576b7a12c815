"""lmq: a constrained language-model query language.

``import lmq`` stays light: the front end and this API never import torch; the runtime
is loaded on the first run. In IPython, ``%load_ext lmq`` adds the ``%%lmq`` cell magic.
"""

from typing import Any

from lmq.api import F, PromptFunction, Query, parse_decoder, query, run
from lmq.decoders import DecoderSpec
from lmq.errors import (
    LmqCompileError,
    LmqConstraintError,
    LmqError,
    LmqLimitError,
    LmqModelError,
    LmqParameterError,
    LmqRuntimeError,
    LmqSandboxError,
    LmqSyntaxError,
)
from lmq.limits import Limits
from lmq.result import BatchResults, Result

__version__ = "0.1.0"

__all__ = [
    "BatchResults",
    "DecoderSpec",
    "F",
    "Limits",
    "LmqCompileError",
    "LmqConstraintError",
    "LmqError",
    "LmqLimitError",
    "LmqModelError",
    "LmqParameterError",
    "LmqRuntimeError",
    "LmqSandboxError",
    "LmqSyntaxError",
    "PromptFunction",
    "Query",
    "Result",
    "__version__",
    "load_ipython_extension",
    "parse_decoder",
    "query",
    "run",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lmq``: registers the ``%%lmq`` cell magic (:mod:`lmq.magic`)."""
    from lmq.magic import load_ipython_extension as load

    load(ipython)
