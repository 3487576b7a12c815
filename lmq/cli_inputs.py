"""``lmq run --inputs``: one program instance per JSONL line, decoded ``--batch-size`` at a
time in lockstep, one result (or error) line written per input line, in input order. The
input is read as it is needed, one line at a time, each at most ``limits.string_size``
bytes.

Every failed line has one shape, ``{"line": N, "error": "KIND: message"}`` on stdout and
``lmq: line N: KIND: message`` on stderr (the message's first line: a program error's
caret snippet is left out, the ``line`` field says which input it was); the run ends with
one stderr summary, ``N lines: K ok, M failed (lines 3, 7)``."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from lmq.cli import UsageError, write_trace
from lmq.errors import LmqError, LmqRuntimeError

log = logging.getLogger("lmq")
MAX_SKIPPED = 10  # an over-long line is skipped up to this many times the line limit


def read_inputs(stream: IO[bytes], max_bytes: int) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line number, parameters or the reason the line is bad)`` for each non-blank
    line of ``stream``, read one line at a time; a UTF-8 BOM and CRLF line ends are
    accepted. A line longer than ``max_bytes`` is a bad line and is skipped; reading stops
    with an error after ``MAX_SKIPPED x max_bytes`` bytes without a line end."""
    number = 0
    while True:
        raw = stream.readline(max_bytes + 1)
        if not raw:
            return
        number += 1
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            _skip_line(stream, number, max_bytes)
            yield number, f"longer than {max_bytes:,} bytes"
            continue
        yield from _parse_line(number, raw)


def _skip_line(stream: IO[bytes], number: int, max_bytes: int) -> None:
    """Read past the rest of an over-long line, at most ``MAX_SKIPPED x max_bytes``."""
    for _ in range(MAX_SKIPPED):
        rest = stream.readline(max_bytes)
        if not rest or rest.endswith(b"\n"):
            return
    raise LmqRuntimeError(f"line {number} of the inputs goes on for more than "
                          f"{MAX_SKIPPED * max_bytes:,} bytes without a line end; stopped "
                          "reading")


def _parse_line(number: int, raw: bytes) -> Iterator[tuple[int, dict[str, Any] | str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        yield number, (f"not valid UTF-8 ({error.reason} at byte "
                       f"{error.start + 1})")
        return
    if not text.strip():
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        yield number, f"not valid JSON: {error.msg} (column {error.colno})"
        return
    except (ValueError, RecursionError) as error:  # huge integers, deep nesting
        reason = str(error) if isinstance(error, ValueError) else "nested too deeply"
        yield number, f"not usable JSON: {reason}"
        return
    if not isinstance(value, dict):
        yield number, "not a JSON object of parameters"
        return
    yield number, value


def run_inputs(q: Any, args: argparse.Namespace, defaults: dict[str, Any]) -> int:
    """One instance per input line, ``--batch-size`` at a time in lockstep, the lines read
    as they are needed; each answer line is written (and flushed) in input order as soon
    as its instance and every line before it are done."""
    from lmq.config import default_batch_size

    size = args.batch_size or default_batch_size()
    trace: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        try:
            source = sys.stdin.buffer if args.inputs == "-" else \
                stack.enter_context(open(args.inputs, "rb"))
        except OSError as error:
            raise UsageError(f"cannot read {args.inputs}: {error.strerror or error}") from None
        out = stack.enter_context(_Output(args.output))
        progress = _progress(args.inputs)
        if progress is not None:
            stack.callback(progress.close)
        lines = read_inputs(source, q.limits.string_size)
        try:
            while chunk := list(itertools.islice(lines, size)):
                writer = _InOrder(out, [number for number, _ in chunk], progress)
                _run_chunk(q, chunk, defaults, args.seed, stats, trace, writer.put)
        except _WriteFailed as error:
            raise LmqRuntimeError(str(error)) from None
    if args.trace:
        write_trace(args.trace, trace, stats)
    log.info("%s forward passes", stats.get("forward_passes", 0))
    if not getattr(args, "quiet", 0):
        print(summary(out.lines, out.failed), file=sys.stderr)
    return 1 if out.failed else 0


class _Output:
    """The result lines' destination (``--output`` or standard output). Each line is one
    write; on a file, a write that fails (a full disk) is undone, so the file ends with the
    last whole line, and the failure is an ``LmqRuntimeError`` naming the path."""

    def __init__(self, path: str | None) -> None:
        self.path = path or "standard output"
        self.lines = 0
        self.failed: list[int] = []  # the input line numbers of failed lines
        self.file: IO[bytes] | None = None
        if path is not None:
            try:
                # unbuffered: a line is on disk (or refused) when write returns
                self.file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by __exit__
            except OSError as error:
                raise UsageError(f"cannot write {path}: {error.strerror or error}") from None

    def __enter__(self) -> _Output:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def write(self, line: str, number: int, ok: bool) -> None:
        data = line.encode("utf-8", "backslashreplace") + b"\n"
        try:
            if self.file is None:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            else:
                end = self.file.tell()
                try:
                    view = memoryview(data)
                    while view:  # a raw write may take part of the line
                        view = view[self.file.write(view) or 0:]
                except OSError:
                    with contextlib.suppress(OSError):  # no partial last line
                        self.file.truncate(end)
                    raise
        except BrokenPipeError:
            raise
        except OSError as error:
            # not an LmqError: it must stop the run, not fail the row being answered
            raise _WriteFailed(f"cannot write {self.path}: {error.strerror or error} "
                               f"(after {self.lines:,} lines)") from None
        self.lines += 1
        if not ok:
            self.failed.append(number)


class _WriteFailed(Exception):
    """The result lines cannot be written (:class:`_Output`)."""


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

    def __init__(self, out: _Output, numbers: list[int], progress: Any) -> None:
        self.out, self.numbers, self.progress = out, numbers, progress
        self.ready: dict[int, Any] = {}
        self.next = 0

    def put(self, number: int, answer: Any) -> None:
        self.ready[number] = answer
        while self.next < len(self.numbers) and self.numbers[self.next] in self.ready:
            line = self.numbers[self.next]
            record, ok = _record(line, self.ready.pop(line))
            if not ok:
                message = f"lmq: line {line}: {record['error']}"
                if self.progress is not None:
                    self.progress.write(message, file=sys.stderr)
                else:
                    print(message, file=sys.stderr)
            self.out.write(json.dumps(record, ensure_ascii=False), line, ok)
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


def _progress(path: str) -> Any:
    """A tqdm bar on stderr when it is a terminal (and tqdm is installed), else None; its
    total is the non-blank lines of ``path`` when it is a regular file."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    total = _count_lines(path) if path != "-" and Path(path).is_file() else None
    return tqdm(total=total, unit="line", file=sys.stderr, dynamic_ncols=True)


def _count_lines(path: str) -> int:
    """The non-blank lines of a file, read in blocks (a line may be of any length)."""
    count, content = 0, False
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            for piece in block.split(b"\n")[:-1] if b"\n" in block else ():
                count += content or bool(piece.strip())
                content = False
            content = content or bool(block.rpartition(b"\n")[2].strip())
    return count + content
