"""lmq: a constrained language-model query language.

``import lmq`` stays light: the front end and this API never import torch; the runtime
is loaded on the first run.
"""

from lmq.api import Query, query, run
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
from lmq.result import Result

__version__ = "0.1.0"

__all__ = [
    "LmqCompileError", "LmqConstraintError", "LmqError", "LmqLimitError", "LmqModelError",
    "LmqParameterError", "LmqRuntimeError", "LmqSandboxError", "LmqSyntaxError", "Limits",
    "Query", "Result", "query", "run", "__version__",
]
