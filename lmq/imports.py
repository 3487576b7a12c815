"""What ``from lmq.stdlib.MODULE import NAME`` may name, known before anything runs.

A standard-library module exports the names of its ``__all__``. They are read from the
module's source (its ``__all__`` assignment, a literal list of strings) without importing
it, so ``lmq check`` names a misspelt module or name with a caret and a did-you-mean and
still imports neither torch nor the runtime.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import pkgutil
import re
from pathlib import Path

from lmq import ir
from lmq.errors import LmqCompileError, Source, Span, did_you_mean

STDLIB = "lmq.stdlib."


@functools.lru_cache(maxsize=None)
def exports(module: str) -> tuple[str, ...]:
    """The names ``module`` (``lmq.stdlib.X``) exports; empty when there is no such
    module or it exports nothing."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ()
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return ()
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "__all__":
            return tuple(name for name in ast.literal_eval(value) if isinstance(name, str))
    return ()


@functools.lru_cache(maxsize=1)
def modules() -> tuple[str, ...]:
    """The standard-library modules that export something (``labels``, ``routing``...)."""
    import lmq.stdlib

    found = (info.name for info in pkgutil.iter_modules(lmq.stdlib.__path__))
    return tuple(sorted(name for name in found if exports(STDLIB + name)))


def check_import(stmt: ir.Import, source: Source) -> None:
    """Refuse an import of a module the standard library does not have, or of a name its
    module does not export; the caret points at the module or the name."""
    names = exports(stmt.module)
    if not names:
        short = stmt.module[len(STDLIB):]
        raise LmqCompileError(f"no standard-library module '{stmt.module}'",
                              _span_of(stmt, source, stmt.module, after="from"), source,
                              did_you_mean(short, modules())
                              or "the modules are " + ", ".join(modules()))
    for name, _ in stmt.names:
        if name not in names:
            raise LmqCompileError(f"'{stmt.module}' has no name '{name}'",
                                  _span_of(stmt, source, name, after="import"), source,
                                  did_you_mean(name, names)
                                  or f"it exports {', '.join(names)}")


def _span_of(stmt: ir.Import, source: Source, word: str, after: str) -> Span:
    """The span of ``word`` in the statement, after its keyword ``after``."""
    text = source.text[stmt.span.start:stmt.span.end]
    keyword = re.search(rf"\b{after}\b", text)
    start = keyword.end() if keyword else 0
    found = re.compile(rf"(?<![\w.]){re.escape(word)}(?!\w)").search(text, start)
    if found is None:
        return stmt.span
    return source.span(stmt.span.start + found.start(), stmt.span.start + found.end())
