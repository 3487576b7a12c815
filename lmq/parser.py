"""Text to parse tree: the Lark parser for ``grammar/lmq.lark``.

:func:`parse` parses a whole program; :func:`parse_body` parses the text between the quotes
of a prompt string or an f-string with the grammar's second and third start rules (the
positions in that tree are relative to the body; :mod:`lmq.lower` adds the offset).

The parser is LALR(1) with Lark's contextual lexer, built once per process. Its tables
are cached on disk as JSON, never as a pickle (a pickle runs code when it is read): building
them takes about 0.8 s, loading the JSON about 0.15 s, so ``lmq check`` starts fast. Every
Lark error becomes an :class:`LmqSyntaxError` with a span and, for typical mistakes, a
named message (:mod:`lmq.parse_errors`).

A compile budget keeps parsing bounded: at most :data:`MAX_SOURCE_CHARACTERS` characters
and :data:`MAX_TOKENS` tokens per parse (a prompt string's body is parsed on its own),
past which compiling is an ``LmqCompileError`` at the place the budget ran out. Parsing
is linear in the tokens (about 50 microseconds each).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lark
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput
from lark.grammar import Rule
from lark.lexer import TerminalDef

from lmq.errors import LmqCompileError, Source
from lmq.grammar import grammar_text
from lmq.parse_errors import IndentationProblem, body_error, first_code_line, program_error
from lmq.parse_errors import syntax_error as _error

OPEN = {"LPAR": "(", "LSQB": "[", "LBRACE": "{"}
_BLANK = re.compile(r"[^\n]")
CLOSE = {"RPAR", "RSQB", "RBRACE"}
TAB_WIDTH = 8
MAX_SOURCE_CHARACTERS = 1_000_000  # compile budget: characters of a program
MAX_TOKENS = 100_000  # compile budget: tokens of one parse (about 5 s, 200 MB)


class BudgetExceeded(Exception):
    """Raised by the postlexer when a parse passes :data:`MAX_TOKENS`."""

    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.position = position


class Indenter(lark.lark.PostLex):
    """Turns the indentation after each ``_NEWLINE`` into ``_INDENT``/``_DEDENT`` tokens.

    Newlines inside brackets and after an operator that cannot end an expression are
    dropped. Unlike Lark's ``Indenter`` it never asserts: an
    unbalanced close bracket is left to the parser, and it remembers the open brackets so
    an error can name the one that was never closed. Newline and dedent tokens are given
    zero width at the end of the previous token, so a statement's span ends at its text.
    """

    # NAME is lexed in every parser state, so a keyword is only ever a whole identifier:
    # Lark retypes a NAME that equals a keyword the state accepts, and a state that does
    # not accept NAME still sees ``input`` as one name (an error) instead of ``in put``.
    always_accept = ("_NEWLINE", "NAME")

    def __init__(self) -> None:
        self.brackets: list[Token] = []

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.brackets = []
        levels = [0]
        last_end = 0
        last: Token | None = None
        for count, token in enumerate(stream):
            if count >= MAX_TOKENS:
                raise BudgetExceeded(token.start_pos or 0)
            if token.type != "_NEWLINE":
                yield token
                last = token
                last_end = token.end_pos or last_end
                if token.type in OPEN:
                    self.brackets.append(token)
                elif token.type in CLOSE and self.brackets:
                    self.brackets.pop()
                continue
            if self.brackets or _continues(last):
                continue
            line_start = token.start_pos + token.value.rfind("\n") + 1
            indent_text = token.value[token.value.rfind("\n") + 1:]
            first = token.end_pos or last_end
            yield _moved(token, last_end, last_end)
            if "\n" not in token.value:
                continue
            indent = len(indent_text.expandtabs(TAB_WIDTH))
            if indent > levels[-1]:
                levels.append(indent)
                yield _moved(Token("_INDENT", indent_text), first, first)
                continue
            while indent < levels[-1]:
                levels.pop()
                yield _moved(Token("_DEDENT", ""), last_end, last_end)
            if indent != levels[-1]:
                raise IndentationProblem(
                    "unindent does not match any outer indentation level", line_start)
        for _ in levels[1:]:
            yield _moved(Token("_DEDENT", ""), last_end, last_end)


# A line that ends in one of these operators goes on on the next line (LMQL's
# ``where A and`` + newline + ``B``): the expression cannot end there.
CONTINUING = frozenset(("and", "or", "not", "in", "+", "-", "*", "/", "//", "%", "**",
                        "==", "!=", "<", "<=", ">", ">=", "|", "&", "^", "<<", ">>"))


def _continues(token: Token | None) -> bool:
    return token is not None and token.type != "NAME" and token.value in CONTINUING


def _moved(token: Token, start: int, end: int) -> Token:
    token.start_pos, token.end_pos = start, end
    token.line = token.end_line = token.column = token.end_column = None  # type: ignore[assignment]
    return token


# ------------------------------------------------------------------ the parser

_lock = threading.Lock()
_parser: Lark | None = None
_indenter = Indenter()


def _cache_path(grammar: str) -> Path | None:
    """The parser tables' cache file in the user's own cache folder: ``$LMQ_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/lmq``, else ``~/.cache/lmq``; None when there is none, when
    ``LMQ_NO_CACHE`` is set, or when an existing cache file is not the user's own or is
    writable by others (it is only data, but it decides how programs parse)."""
    if os.environ.get("LMQ_NO_CACHE", "") not in ("", "0"):
        return None
    key = grammar + lark.__version__ + repr(_OPTIONS)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    try:
        root = os.environ.get("LMQ_CACHE_DIR")
        folder = Path(root) if root else \
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmq"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"grammar-{digest}.json"
        if path.exists() and not _trusted(path):
            return None
    except (OSError, RuntimeError):
        return None
    return path if os.access(folder, os.W_OK) else None


def _trusted(path: Path) -> bool:
    """A regular file owned by this user that no one else can write (where POSIX)."""
    info = path.lstat()
    if not path.is_file() or path.is_symlink():
        return False
    getuid = getattr(os, "getuid", None)
    return getuid is None or (info.st_uid == getuid() and not info.st_mode & 0o022)


_OPTIONS = dict(parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=True,
                start=["start", "prompt_body", "fstring_body", "indented_body"])


def get_parser() -> Lark:
    """The Lark parser for the four start rules, built once (or loaded from the JSON
    cache of its tables; a missing or damaged cache file is rebuilt)."""
    global _parser
    if _parser is None:
        grammar = grammar_text()
        path = _cache_path(grammar)
        parser = _load_tables(path) if path is not None and path.exists() else None
        if parser is None:
            parser = Lark(grammar, postlex=_indenter, **_OPTIONS)  # type: ignore[arg-type]
            if path is not None:
                _save_tables(parser, path)
        _parser = parser
    return _parser


def _load_tables(path: Path) -> Lark | None:
    try:
        tables = _decode(json.loads(path.read_text(encoding="utf-8")))
        return Lark._load_from_dict(tables["data"], tables["memo"], postlex=_indenter)
    except Exception:  # noqa: BLE001 - any damage (Lark asserts, too): rebuild
        return None


def _save_tables(parser: Lark, path: Path) -> None:
    """Write the tables as JSON, atomically (a temporary file renamed), readable by the
    user only; a cache that cannot be written is skipped."""
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["options"] = {**data["options"], "postlex": None}  # given again on load
    try:
        handle, temporary = tempfile.mkstemp(suffix=".tmp", dir=path.parent)  # mode 0600
    except OSError:
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(_encode({"data": data, "memo": memo}), file)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)


def _encode(value: Any) -> Any:
    """Lark's tables in JSON: tuples and dicts with non-string keys tagged."""
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _encode(item) for key, item in value.items()}
        return {"~items": [[_encode(key), _encode(item)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"~tuple": [_encode(item) for item in value]}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "~items" in value:
            return {_decode(key): _decode(item) for key, item in value["~items"]}
        if "~tuple" in value:
            return tuple(_decode(item) for item in value["~tuple"])
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def _budget_error(source: Source, position: int) -> LmqCompileError:
    return LmqCompileError(f"the program has more than {MAX_TOKENS:,} tokens (the compile "
                           "budget)", source.span(position), source,
                           hint="pass large data as parameters, not as program text")


def parse(source: Source) -> Tree:
    """Parse a whole program; raises :class:`LmqSyntaxError` (:class:`LmqCompileError`
    past the compile budget)."""
    if len(source.text) > MAX_SOURCE_CHARACTERS:
        raise LmqCompileError(f"the program has {len(source.text):,} characters; the compile "
                              f"budget is {MAX_SOURCE_CHARACTERS:,}",
                              source.span(MAX_SOURCE_CHARACTERS), source,
                              hint="pass large data as parameters, not as program text")
    text = source.text if source.text.endswith("\n") else source.text + "\n"
    first = first_code_line(text)
    if first is not None and text[first[0]:first[0] + 1] in " \t\f":
        indent = len(text[first[0]:]) - len(text[first[0]:].lstrip(" \t\f"))
        raise _error("unexpected indent", source, first[0] + indent, 1)
    with _lock:
        parser = get_parser()
        try:
            return parser.parse(text, start="start")
        except BudgetExceeded as error:
            raise _budget_error(source, error.position) from None
        except (UnexpectedInput, IndentationProblem) as error:
            brackets = list(_indenter.brackets)
            raise program_error(error, source, text, brackets, parser) from None


def parse_region(source: Source, start: int, end: int) -> Tree:
    """Parse ``source.text[start:end]`` as a program standing at its place in the file
    (the docstring of an ``@lmql.query`` def): every character outside the region is
    blanked, so positions are the file's; a region indented as a whole is an
    ``indented_body``, one at column 1 a ``start``."""
    text = source.text
    padded = _BLANK.sub(" ", text[:start]) + text[start:end] + _BLANK.sub(" ", text[end:])
    padded += "\n"
    first = first_code_line(padded)
    indented = first is not None and padded[first[0]:first[0] + 1] in " \t\f"
    with _lock:
        parser = get_parser()
        try:
            return parser.parse(padded, start="indented_body" if indented else "start")
        except (UnexpectedInput, IndentationProblem) as error:
            brackets = list(_indenter.brackets)
            raise program_error(error, source, padded, brackets, parser) from None


def parse_body(source: Source, start: int, end: int, fstring: bool = False) -> Tree:
    """Parse ``source.text[start:end]``, the inside of a prompt string (or of an f-string).

    Positions in the returned tree are relative to ``start``.
    """
    text = source.text[start:end]
    with _lock:
        parser = get_parser()
        try:
            return parser.parse(text, start="fstring_body" if fstring else "prompt_body")
        except BudgetExceeded as error:
            raise _budget_error(source, start + error.position) from None
        except (UnexpectedInput, IndentationProblem) as error:
            brackets = list(_indenter.brackets)
            raise body_error(error, source, start, text, brackets, fstring, parser) from None
