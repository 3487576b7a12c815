"""The IPython extension: ``%load_ext lmq``, then ``%%lmq`` cells.

::

    %%lmq [--model M] [--decoder D] [--as NAME] [--define NAME] [-v]
    "Q: What is the capital of {country}?\\nA:[ANSWER]" where STOPS_AT(ANSWER, "\\n")

runs the cell as a query: its parameters and tools are taken from the notebook's
namespace, each hole's value is bound there (``ANSWER`` above) — or, with ``--as NAME``,
the :class:`~lmq.result.Result` (a list of them for branching decoders) is bound to
``NAME`` instead — and the result is displayed as HTML. ``--define NAME`` makes the cell a
query function ``NAME`` (called with keyword parameters, like ``lmq.query``) instead of
running it. ``-v`` also shows the run's counts and model calls. An lmq error shows its
message with the caret under the source, never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from lmq.errors import LmqError


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(f"%%lmq: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _ArgumentError(message or self.format_help())


def _parser() -> _Parser:
    parser = _Parser(prog="%%lmq", add_help=True,
                     description="Run the cell as an lmq query.")
    parser.add_argument("--model", help="model name, alias or spec")
    parser.add_argument("--decoder", help="decoder, e.g. 'sample(n=2)'")
    parser.add_argument("--as", dest="as_name", metavar="NAME",
                        help="bind the Result to NAME instead of binding each hole")
    parser.add_argument("--define", metavar="NAME",
                        help="define a query function NAME instead of running the cell")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the run's counts and model calls")
    return parser


def run_cell(line: str, cell: str, namespace: dict[str, Any]) -> Any:
    """What ``%%lmq LINE`` does with ``cell`` in ``namespace``; returns what was displayed
    (the Result or list of Results, the defined Query, or None after an error)."""
    from IPython.display import HTML, display

    from lmq.api import compile_cached, query

    try:
        options = _parser().parse_args(shlex.split(line))
        for name in (options.as_name, options.define):
            if name is not None and not name.isidentifier():
                raise _ArgumentError(f"%%lmq: not a Python name: {name!r}")
        checked = compile_cached(cell, "<cell>")
        if options.define:
            defined = query(cell, model=options.model, decoder=options.decoder)
            defined.name = defined.__name__ = options.define
            namespace[options.define] = defined
            display(HTML(f"<code>{options.define}</code>: query with parameters "
                         f"{', '.join(checked.params) or '(none)'}"))
            return defined
        missing = [n for n in (*checked.params, *checked.tools) if n not in namespace]
        tools = {n: namespace[n] for n in checked.tools if n in namespace}
        params = {n: namespace[n] for n in checked.params if n in namespace}
        if missing:
            from lmq.errors import LmqParameterError

            raise LmqParameterError(f"the cell uses {', '.join(repr(m) for m in missing)}, "
                                    "which the notebook has not defined")
        q = query(cell, model=options.model, decoder=options.decoder, tools=tools)
        answer = q(**params)
    except _ArgumentError as error:
        print(str(error), file=sys.stderr)
        return None
    except LmqError as error:
        print(str(error), file=sys.stderr)
        return None
    results = answer if isinstance(answer, list) else [answer]
    if options.as_name:
        namespace[options.as_name] = answer
    else:
        namespace.update(results[0].variables)
    if isinstance(answer, list):
        from lmq.html import results_html

        display(HTML(results_html(answer)))
    else:
        display(answer)
    if options.verbose:
        display(HTML(_verbose_html(results[0])))
    return answer


def _verbose_html(result: Any) -> str:
    import html

    stats = ", ".join(f"{k}: {_readable(v)}" for k, v in result.stats.items())
    calls = "".join(
        "<tr>" + "".join(f"<td style='padding: 0 6px'>{html.escape(_readable(call.get(k, '')))}"
                         "</td>" for k in ("model", "rows", "tokens_in", "tokens_out", "mask_ms"))
        + "</tr>" for call in result.trace[:200])
    head = "".join(f"<th style='padding: 0 6px'>{k}</th>"
                   for k in ("model", "rows", "tokens in", "tokens out", "mask ms"))
    more = f"<div>… {len(result.trace) - 200} more calls</div>" if len(result.trace) > 200 \
        else ""
    return (f"<div style='font-family: monospace; font-size: 12px'>"
            f"<div>{html.escape(stats)}</div><table><tr>{head}</tr>{calls}</table>{more}"
            f"</div>")


def _readable(value: Any) -> str:
    """A count as it is, a time (milliseconds or seconds) to two decimals."""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%lmq`` (``%load_ext lmq``)."""

    def lmq(line: str, cell: str) -> None:
        run_cell(line, cell, ipython.user_ns)

    lmq.__doc__ = __doc__
    ipython.register_magic_function(lmq, magic_kind="cell", magic_name="lmq")


def unload_ipython_extension(ipython: Any) -> None:
    """Nothing to undo: IPython keeps the magic until the kernel restarts."""
