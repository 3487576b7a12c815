"""``lmq run --inputs``: one program instance per JSONL line, decoded ``--batch-size`` at a
time in lockstep, one result (or error) line written per input line, in input order.

Every failed line has one shape, ``{"line": N, "error": "KIND: message"}`` on stdout and
``lmq: line N: KIND: message`` on stderr (the message's first line: a program error's
caret snippet is left out, the ``line`` field says which input it was); the run ends with
one stderr summary, ``N lines: K ok, M failed (lines 3, 7)``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from lmq.cli import UsageError, write_trace
from lmq.errors import LmqError

log = logging.getLogger("lmq")


def read_inputs(path: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line number, parameters or the reason the line is bad)`` for each non-blank
    line; a UTF-8 BOM and CRLF line ends are accepted."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            yield number, f"not valid UTF-8 ({error.reason} at byte {error.start + 1})"
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            yield number, f"not valid JSON: {error.msg} (column {error.colno})"
            continue
        except (ValueError, RecursionError) as error:  # huge integers, deep nesting
            reason = str(error) if isinstance(error, ValueError) else "nested too deeply"
            yield number, f"not usable JSON: {reason}"
            continue
        if not isinstance(value, dict):
            yield number, "not a JSON object of parameters"
            continue
        yield number, value


def run_inputs(q: Any, args: argparse.Namespace, defaults: dict[str, Any]) -> int:
    """One instance per input line, ``--batch-size`` at a time in lockstep; each answer
    line is written (and flushed) in input order as soon as its instance and every line
    before it are done."""
    from lmq.config import default_batch_size

    size = args.batch_size or default_batch_size()
    lines = list(read_inputs(args.inputs))
    trace: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        out: IO[str] = sys.stdout
        if args.output:
            try:
                out = stack.enter_context(open(args.output, "w", encoding="utf-8",
                                               newline="\n", errors="backslashreplace"))
            except OSError as error:
                raise UsageError(f"cannot write {args.output}: {error}") from None
        progress = _progress(len(lines))
        if progress is not None:
            stack.callback(progress.close)
        writer = _InOrder(out, [number for number, _ in lines], progress)
        for start in range(0, len(lines), size):
            _run_chunk(q, lines[start:start + size], defaults, args.seed, stats, trace,
                       writer.put)
    if args.trace:
        write_trace(args.trace, trace, stats)
    log.info("%s forward passes", stats.get("forward_passes", 0))
    if not getattr(args, "quiet", 0):
        print(summary(len(lines), writer.failed), file=sys.stderr)
    return 1 if writer.failed else 0


def summary(total: int, failed: list[int]) -> str:
    """The run's last stderr line: ``5 lines: 3 ok, 2 failed (lines 3, 7)`` (the first ten
    failed line numbers)."""
    text = f"{total} line{'s' if total != 1 else ''}: {total - len(failed)} ok, " \
           f"{len(failed)} failed"
    if failed:
        shown = ", ".join(map(str, failed[:10])) + (", …" if len(failed) > 10 else "")
        text += f" (line{'s' if len(failed) > 1 else ''} {shown})"
    return text


class _InOrder:
    """Writes answer lines in input order: an answer waits only for the lines before it."""

    def __init__(self, out: IO[str], numbers: list[int], progress: Any) -> None:
        self.out, self.numbers, self.progress = out, numbers, progress
        self.ready: dict[int, Any] = {}
        self.next = 0
        self.failed: list[int] = []

    def put(self, number: int, answer: Any) -> None:
        self.ready[number] = answer
        while self.next < len(self.numbers) and self.numbers[self.next] in self.ready:
            line = self.numbers[self.next]
            record, ok = _record(line, self.ready.pop(line))
            if not ok:
                self.failed.append(line)
                message = f"lmq: line {line}: {record['error']}"
                if self.progress is not None:
                    self.progress.write(message, file=sys.stderr)
                else:
                    print(message, file=sys.stderr)
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.out.flush()  # a Ctrl-C later keeps every line written so far
            if self.progress is not None:
                self.progress.update(1)
            self.next += 1


def _run_chunk(q: Any, chunk: list[tuple[int, Any]], defaults: dict[str, Any],
               seed: int | None, stats: dict[str, Any], trace: list[dict[str, Any]],
               put: Callable[[int, Any], None]) -> None:
    """Run the good lines of ``chunk`` in one lockstep batch, handing each line's answer
    (a Result, a list of them, or the line's error) to ``put`` as soon as it is known."""
    todo: list[tuple[int, dict[str, Any]]] = []
    for number, params in chunk:
        if not isinstance(params, dict):
            put(number, params)  # a bad line: its reason is its answer
            continue
        try:
            todo.append((number, q.bind((), {**defaults, **params})))
        except LmqError as error:
            put(number, error)
    if todo:
        part: dict[str, Any] = {}
        q.execute([p for _, p in todo], fail_fast=False, seed=seed, stats=part,
                   trace=trace, on_answer=lambda k, answer: put(todo[k][0], answer))
        _merge(stats, part)


def _record(number: int, answer: Any) -> tuple[dict[str, Any], bool]:
    if isinstance(answer, str):
        return {"line": number, "error": f"input error: {answer}"}, False
    if isinstance(answer, LmqError):
        hint = f" ({answer.hint})" if answer.hint else ""
        message = f"{answer.kind}: {answer.message}{hint}".splitlines()[0]
        return {"line": number, "error": message}, False
    if isinstance(answer, BaseException):
        return {"line": number, "error": f"error: {answer}".splitlines()[0]}, False
    if isinstance(answer, list):
        return {"line": number, "result": [r.to_dict(trace=False) for r in answer]}, True
    return {"line": number, "result": answer.to_dict(trace=False)}, True


def _merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total[key] = value


def _progress(total: int) -> Any:
    """A tqdm bar on stderr when it is a terminal (and tqdm is installed), else None."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="line", file=sys.stderr, dynamic_ncols=True)
