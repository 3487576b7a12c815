"""Source spans and the one error hierarchy every user-facing failure goes through.

Every error is an :class:`LmqError`. Errors about the program text carry a :class:`Span`
and render as ``file:line:column: error: message`` followed by the source line and a
caret under the offending text (LANGUAGE.md section 14).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Source:
    """A program text and the name it came from (a file path or ``<string>``)."""

    text: str
    filename: str = "<string>"

    @cached_property
    def line_starts(self) -> list[int]:
        """The offset at which each line starts (lines end at ``\\n``), built once: every
        span of the program asks for its position, so compiling stays linear."""
        starts = [0]
        find = self.text.find
        at = find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = find("\n", at + 1)
        return starts

    def line_text(self, line: int) -> str:
        starts = self.line_starts
        if not 0 < line <= len(starts):
            return ""
        end = starts[line] - 1 if line < len(starts) else len(self.text)
        return self.text[starts[line - 1]:end].rstrip("\r")

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a 0-based character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def span(self, start: int, end: int | None = None) -> Span:
        end = start + 1 if end is None else end
        line, column = self.position(start)
        end_line, end_column = self.position(end)
        return Span(start, max(end, start), line, column, end_line, end_column, self.filename)


@dataclass(frozen=True)
class Span:
    """A region of a source: 0-based offsets ``[start, end)`` and 1-based positions."""

    start: int
    end: int
    line: int
    column: int
    end_line: int
    end_column: int
    filename: str = "<string>"

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"

    def join(self, other: Span) -> Span:
        first, last = (self, other) if self.start <= other.start else (other, self)
        return Span(first.start, max(self.end, other.end), first.line, first.column,
                    last.end_line, last.end_column, self.filename)


SNIPPET_WIDTH = 120  # longer source lines are shown as a window around the caret


def caret_snippet(source: Source, span: Span) -> str:
    """The source line of ``span`` and a caret line under it, each indented by four spaces;
    a line longer than :data:`SNIPPET_WIDTH` is cut to a window around the caret."""
    text = source.line_text(span.line)
    if span.end_line == span.line:
        width = max(1, span.end_column - span.column)
    else:
        width = max(1, len(text) - span.column + 1)
    column = span.column
    if len(text) > SNIPPET_WIDTH:
        start = max(0, min(column - 1 - SNIPPET_WIDTH // 3, len(text) - SNIPPET_WIDTH))
        head, tail = ("..." if start else ""), ("..." if start + SNIPPET_WIDTH < len(text)
                                               else "")
        text = head + text[start:start + SNIPPET_WIDTH] + tail
        column = column - start + len(head)
        width = max(1, min(width, len(text) - column + 1))
    return f"    {text}\n    {' ' * (column - 1)}{'^' * width}"


class LmqError(Exception):
    """Root of every error lmq reports to a user.

    ``line`` and ``column`` are set (1-based) when the error points into a source text.
    """

    kind = "error"
    nested = False  # the error of a program host code ran, pointed at the call that ran it

    def __init__(self, message: str, span: Span | None = None, source: Source | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        self.span = span
        self.source = source
        self.hint = hint
        super().__init__(message)

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span else None

    def with_source(self, source: Source) -> LmqError:
        """Attach ``source`` if the error has a span but no source yet; returns self."""
        if self.source is None:
            self.source = source
        return self

    def __str__(self) -> str:
        message = self.message + (f" ({self.hint})" if self.hint else "")
        if self.span is None:
            return f"{self.kind}: {message}"
        filename = self.source.filename if self.source else self.span.filename
        head = f"{filename}:{self.span.line}:{self.span.column}: {self.kind}: {message}"
        if self.source is None:
            return head
        return head + "\n" + caret_snippet(self.source, self.span)


class LmqSyntaxError(LmqError):
    """The text is not a program of the grammar."""


class LmqCompileError(LmqError):
    """The program parses but is rejected before any model is loaded."""


class LmqSandboxError(LmqCompileError):
    """The program reaches for something the sandbox forbids (LANGUAGE.md section 3)."""


class LmqParameterError(LmqError):
    """A parameter is missing or of the wrong kind."""


class LmqRuntimeError(LmqError):
    """The program failed while it ran (a tool raised, a value was of the wrong type...)."""


class LmqConstraintError(LmqRuntimeError):
    """No continuation satisfies a hole's constraints; names the hole and the constraint."""


class LmqLimitError(LmqRuntimeError):
    """A configured bound (steps, depth, value size, timeout, tokens) was exceeded."""


class LmqModelError(LmqError):
    """A model cannot be found or loaded."""


# What torch's and numpy's allocators say when they fail (they raise RuntimeError).
_ALLOCATOR_FAILURES = ("bad_alloc", "DefaultCPUAllocator", "out of memory",
                       "can't allocate memory", "Unable to allocate")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the process running out of memory: a ``MemoryError``, or an
    allocator's failure raised as ``RuntimeError`` by torch or numpy."""
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and any(text in str(error)
                                                for text in _ALLOCATOR_FAILURES))


def did_you_mean(name: str, candidates) -> str | None:
    """A ``did you mean 'x'?`` hint for the closest candidate, if any is close enough."""
    import difflib

    match = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


def one_line(error: BaseException) -> str:
    """The error's message on one line, at most 300 characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
