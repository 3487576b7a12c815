"""Text to parse tree: the Lark parser for ``grammar/lmq.lark`` and its error messages.

:func:`parse` parses a whole program; :func:`parse_body` parses the text between the quotes
of a prompt string or an f-string with the grammar's second and third start rules (the
positions in that tree are relative to the body; :mod:`lmq.lower` adds the offset).

The parser is LALR(1) with Lark's contextual lexer, built once per process (and cached on
disk, so ``lmq check`` starts fast). Every Lark error becomes an :class:`LmqSyntaxError`
with a span; typical mistakes get a named message, found first by a few structural rules
(unterminated strings, unclosed brackets, indentation) and then through a table of
example mistakes matched by parser state, as in Lark's ``match_examples``.
"""

from __future__ import annotations

import hashlib
import keyword
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import lark
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from lmq.errors import LmqSyntaxError, Source, did_you_mean
from lmq.grammar import grammar_text

DECODERS = ("argmax", "sample", "beam")
OPEN = {"LPAR": "(", "LSQB": "[", "LBRACE": "{"}
CLOSE = {"RPAR", "RSQB", "RBRACE"}
TAB_WIDTH = 8


class _IndentationProblem(Exception):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


class Indenter(lark.lark.PostLex):
    """Turns the indentation after each ``_NEWLINE`` into ``_INDENT``/``_DEDENT`` tokens.

    Newlines inside brackets are dropped. Unlike Lark's ``Indenter`` it never asserts: an
    unbalanced close bracket is left to the parser, and it remembers the open brackets so
    an error can name the one that was never closed. Newline and dedent tokens are given
    zero width at the end of the previous token, so a statement's span ends at its text.
    """

    always_accept = ("_NEWLINE",)

    def __init__(self) -> None:
        self.brackets: list[Token] = []

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.brackets = []
        levels = [0]
        last_end = 0
        for token in stream:
            if token.type != "_NEWLINE":
                yield token
                last_end = token.end_pos or last_end
                if token.type in OPEN:
                    self.brackets.append(token)
                elif token.type in CLOSE and self.brackets:
                    self.brackets.pop()
                continue
            if self.brackets:
                continue
            line_start = token.start_pos + token.value.rfind("\n") + 1
            indent_text = token.value[token.value.rfind("\n") + 1:]
            first = token.end_pos
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
                raise _IndentationProblem(
                    "unindent does not match any outer indentation level", line_start)
        for _ in levels[1:]:
            yield _moved(Token("_DEDENT", ""), last_end, last_end)


def _moved(token: Token, start: int, end: int) -> Token:
    token.start_pos, token.end_pos = start, end
    token.line = token.end_line = token.column = token.end_column = None  # type: ignore[assignment]
    return token


# ------------------------------------------------------------------ the parser

_lock = threading.Lock()
_parser: Lark | None = None
_indenter = Indenter()


def _cache_path(grammar: str) -> str | bool:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256((grammar + lark.__version__).encode()).hexdigest()[:16]
    folder = Path(base) / "lmq"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = folder / f"grammar-{digest}.lark-cache"
        if os.access(folder, os.W_OK):
            return str(probe)
    except OSError:
        pass
    return False if not os.access(tempfile.gettempdir(), os.W_OK) else True


def get_parser() -> Lark:
    """The Lark parser for the three start rules, built once."""
    global _parser
    if _parser is None:
        grammar = grammar_text()
        _parser = Lark(grammar, parser="lalr", lexer="contextual", postlex=_indenter,
                       propagate_positions=True, maybe_placeholders=True,
                       start=["start", "prompt_body", "fstring_body"],
                       cache=_cache_path(grammar))
    return _parser


def parse(source: Source) -> Tree:
    """Parse a whole program; raises :class:`LmqSyntaxError`."""
    text = source.text if source.text.endswith("\n") else source.text + "\n"
    first = _first_code_line(text)
    if first is not None and text[first[0]:first[0] + 1] in " \t\f":
        indent = len(text[first[0]:]) - len(text[first[0]:].lstrip(" \t\f"))
        raise _error("unexpected indent", source, first[0] + indent, 1)
    with _lock:
        parser = get_parser()
        try:
            return parser.parse(text, start="start")
        except (UnexpectedInput, _IndentationProblem) as error:
            brackets = list(_indenter.brackets)
            raise _program_error(error, source, text, brackets) from None


def parse_body(source: Source, start: int, end: int, fstring: bool = False) -> Tree:
    """Parse ``source.text[start:end]``, the inside of a prompt string (or of an f-string).

    Positions in the returned tree are relative to ``start``.
    """
    text = source.text[start:end]
    with _lock:
        parser = get_parser()
        try:
            return parser.parse(text, start="fstring_body" if fstring else "prompt_body")
        except (UnexpectedInput, _IndentationProblem) as error:
            brackets = list(_indenter.brackets)
            raise _body_error(error, source, start, text, brackets, fstring) from None


# ------------------------------------------------------------------ error messages

# Typical mistakes, matched by the parser state they fail in (Lark's ``match_examples``).
SYNTAX_EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("missing ',' between items", (
        "x = [1 2]\n", "x = f(a b)\n", "x = {1 2}\n", "x = (1 2)\n", 'x = ["a" b]\n',
        'x = {"a": 1 "b": 2}\n', "x = {1: 2 3: 4}\n")),
    ("a 'for' loop needs 'in': for NAME in ITERABLE:", (
        "for x:\n    pass\n", "for x y:\n    pass\n")),
    ("a query needs a parameter list: query NAME(PARAMS):", ("query q:\n    pass\n",)),
    ("a query parameter must be a name", ("query q(1):\n    pass\n", 'query q("a"):\n')),
    ("expected a name after 'import'", ("from lmq.stdlib.x import 1\n",)),
    ("expected a module name after 'from'", ('from "x" import y\n', "from 1 import y\n")),
    ("expected a constraint after 'where'", ('"[A]" where\n', '"[A]" where )\n')),
    ("expected a model after 'from'", ('"[A]" from\n', '"[A]" from where x\n')),
    ("prefer takes knowledge sources separated by '>': prefer instruction > context", (
        '"[A]" prefer\n', '"[A]" prefer instruction context\n', '"[A]" prefer instruction,\n')),
    ("distribution takes NAME in [VALUES]", (
        'argmax\n    "[A]"\ndistribution A\n', 'argmax\n    "[A]"\ndistribution A [1]\n')),
    ("unexpected ')'", ("x = )\n", "x = (1))\n")),
    ("unexpected ']'", ("x = ]\n", "x = [1]]\n")),
    ("unexpected '}'", ("x = }\n",)),
)

_TOKEN_NAMES = {
    "_NEWLINE": "end of line", "$END": "end of file", "_INDENT": "indent",
    "_DEDENT": "dedent", "NAME": "name", "STRING": "string", "LONG_STRING": "string",
    "DEC_NUMBER": "number", "FLOAT_NUMBER": "number", "HEX_NUMBER": "number",
    "OCT_NUMBER": "number", "BIN_NUMBER": "number",
}
_ROUGH_TOKEN = re.compile(r"""[rRfFuU]{0,2}("|')|[^\W\d]\w*|\d[\w.]*|\*\*=?|//=?|<<=?|>>=?|[-+*/%@&|^<>=!]=|\S""")
_HEADERS = {"if": "the 'if' condition", "elif": "the 'elif' condition", "else": "'else'",
            "for": "the 'for' header", "while": "the 'while' condition",
            "query": "the query header"}


def _describe(text: str, position: int, token: Token | None) -> tuple[str, int]:
    """A short description of what is at ``position`` and its length."""
    if token is not None and token.type in _TOKEN_NAMES and token.type not in ("NAME",):
        if token.type in ("_NEWLINE", "$END", "_INDENT", "_DEDENT"):
            return _TOKEN_NAMES[token.type], 1
    match = _ROUGH_TOKEN.match(text, position)
    if match is None:
        return "end of file", 1
    word = match.group()
    if not word.isprintable():
        return f"character {word!r}", len(word)
    if word in "\"'" or word[-1] in "\"'":
        return "string", len(word)
    if word[0].isdigit():
        return f"number {word}", len(word)
    if word[0].isalpha() or word[0] == "_":
        if word in DECODERS or word in ("where", "from", "prefer", "distribution", "query",
                                        "if", "else", "elif", "for", "in", "while", "not",
                                        "and", "or", "is", "import", "as", "with", "return"):
            return f"'{word}'", len(word)
        return f"name '{word}'", len(word)
    return f"'{word}'", len(word)


def _expected(error: UnexpectedInput) -> set[str]:
    """The terminals the parser accepted where it failed (not the contextual lexer's set)."""
    state = getattr(error, "state", None)
    try:
        return set(state.parse_conf.states[state.position])  # type: ignore[union-attr]
    except (AttributeError, KeyError, TypeError):
        return set(getattr(error, "expected", None) or ())


def _complete_string(text: str, position: int) -> bool:
    """Whether a whole string literal starts at ``position``."""
    parser = get_parser()
    for name in ("LONG_STRING", "STRING"):
        if re.compile(parser.get_terminal(name).pattern.to_regexp()).match(text, position):
            return True
    return False


def _error(message: str, source: Source, start: int, length: int = 1,
           hint: str | None = None) -> LmqSyntaxError:
    start = max(0, min(start, len(source.text)))
    end = min(start + max(1, length), max(len(source.text), start + 1))
    line_end = source.text.find("\n", start)
    if line_end != -1 and end > line_end:
        end = max(start + 1, line_end)
    return LmqSyntaxError(message, source.span(start, end), source, hint)


def _first_code_line(text: str) -> tuple[int, int] | None:
    """Offsets (start, end) of the first line that is not blank or a comment."""
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return offset, offset + len(line.rstrip("\r\n"))
        offset += len(line)
    return None


def _unknown_decoder(source: Source, text: str, error: UnexpectedInput) -> LmqSyntaxError | None:
    """``sampel(n=2)`` followed by an indented body, or ``sampel "..."`` on one line."""
    if not isinstance(error, UnexpectedToken):
        return None
    first = _first_code_line(text)
    if first is None:
        return None
    line_start, line_end = first
    match = re.match(r"([^\W\d]\w*)\s*(\(|[\"']|$)", text[line_start:line_end])
    if match is None or match.group(1) in DECODERS or keyword.iskeyword(match.group(1)):
        return None
    name, follow = match.group(1), match.group(2)
    token = error.token
    indented_body = token.type == "_INDENT" and token.start_pos > line_end
    same_line_prompt = follow in "\"'" and token.start_pos == line_start + match.start(2)
    if not (indented_body or same_line_prompt):
        return None
    hint = did_you_mean(name, DECODERS) or "the decoders are argmax, sample and beam"
    return _error(f"unknown decoder '{name}'", source, line_start, len(name), hint)


def _program_error(error: Exception, source: Source, text: str,
                   brackets: list[Token]) -> LmqSyntaxError:
    if isinstance(error, _IndentationProblem):
        start = error.position
        indent = len(text[start:]) - len(text[start:].lstrip(" \t"))
        return _error(error.message, source, start + indent, 1)
    assert isinstance(error, UnexpectedInput)
    position = getattr(error, "pos_in_stream", None)
    token = getattr(error, "token", None)
    if isinstance(error, UnexpectedToken) and token is not None and token.start_pos is not None:
        position = token.start_pos
    if position is None:
        position = len(source.text)
    character = text[position] if position < len(text) else ""

    lexer_failed = isinstance(error, UnexpectedCharacters) or (
        token is not None and token.type in ("TEXT", "FTEXT", "FORMAT_SPEC"))
    if lexer_failed and character in "\"'" and position > 0 and text[position - 1] in "bB" and (
            position == 1 or not (text[position - 2].isalnum() or text[position - 2] == "_")):
        return _error("bytes literals are not available in lmq programs", source,
                      position - 1, 2)
    if lexer_failed and not _complete_string(text, position):
        if text.startswith(('"""', "'''"), position):
            return _error("unterminated triple-quoted string", source, position, 3)
        if character in "\"'":
            return _error("unterminated string literal", source, position, len(text))
        if re.match(r"[rRfFuU]{1,2}[\"']", text[position:position + 3]):
            return _error("unterminated string literal", source, position, len(text))
    if brackets and (token is None or token.type == "$END" or
                     source.position(token.start_pos or 0)[0] >
                     source.position(brackets[-1].start_pos)[0]):
        opening = brackets[-1]
        return _error(f"'{opening.value}' was never closed", source, opening.start_pos, 1)
    decoder = _unknown_decoder(source, text, error)
    if decoder is not None:
        return decoder
    if token is not None and token.type == "_INDENT":
        return _error("unexpected indent", source, position, 1)
    if isinstance(error, UnexpectedToken):
        expected = _expected(error)
        if expected == {"_INDENT"}:
            line = source.position(position)[0] - 1 if token.type != "$END" else None
            where = f" after line {line}" if line else ""
            return _error(f"expected an indented block{where}", source, position,
                          _describe(text, position, token)[1])
        if token.type == "EQUAL" and "EQUAL" not in expected:
            line_start = text.rfind("\n", 0, position) + 1
            in_where = re.search(r"\bwhere\b", text[line_start:position]) or (
                _clause_above(text, line_start) == "where")
            message = ("use '==' to compare in a constraint, not '='" if in_where
                       else "'=' assigns; use '==' to compare")
            return _error(message, source, position, 1)
        if "COLON" in expected and token.type in ("_NEWLINE", "$END"):
            line_start = text.rfind("\n", 0, position) + 1
            keyword = re.match(r"\s*(\w+)", text[line_start:position])
            what = _HEADERS.get(keyword.group(1) if keyword else "", "")
            message = f"expected ':' after {what}" if what else "expected ':'"
            return _error(message, source, position, 1)
        if expected and expected <= {"FROM", "WHERE", "DISTRIBUTION", "PREFER", "$END"}:
            return _error("expected a clause (from, where, distribution, prefer) at column 1; "
                          "the program's statements belong in the indented body of the "
                          "decoder clause", source, position, _describe(text, position,
                                                                          token)[1])
        misplaced = _misplaced_keyword(text, error)
        if misplaced is not None:
            return _error(misplaced[0], source, misplaced[1], misplaced[2])
        label = _match_examples(error, text, position)
        if label is not None:
            return _error(label, source, position, _describe(text, position, token)[1])
    what, length = _describe(text, position, token)
    return _error(f"unexpected {what}", source, position, length)


def _clause_above(text: str, line_start: int) -> str | None:
    """The clause keyword at column 1 that the indented line at ``line_start`` belongs to."""
    for line in reversed(text[:line_start].splitlines()):
        if line[:1].strip() and not line.startswith("#"):
            return line.split()[0] if line.split() else None
    return None


def _misplaced_keyword(text: str, error: UnexpectedToken) -> tuple[str, int, int] | None:
    """``where``/``from``/``prefer``/``distribution`` at column 1 in a modern-form program,
    ``else``/``elif`` without ``if``."""
    position = error.token.start_pos or 0
    previous = re.search(r"([^\W\d]\w*)[ \t]*$", text[:position])
    if previous is None:
        return None
    word, start = previous.group(1), previous.start(1)
    at_statement_start = re.search(r"(^|\n)[ \t]*$", text[:start]) is not None
    if word in ("else", "elif") and at_statement_start:
        return f"'{word}' without a matching 'if'", start, len(word)
    at_column_1 = start == 0 or text[start - 1] == "\n"
    if not at_column_1 or word not in ("where", "from", "prefer", "distribution"):
        return None
    if word == "from" and text[position:position + 1].isalpha():
        return None
    return (f"a '{word}' clause at column 1 needs the standard form (a decoder clause such "
            f"as 'argmax' first); in the modern form put it after the prompt string on the "
            f"same line", start, len(word))


def _signature(text: str, position: int) -> str:
    """What kind of token starts at ``position``: 'name', 'string', 'number' or the
    punctuation itself (the contextual lexer's fallback token types are not reliable)."""
    description = _describe(text, position, None)[0]
    return description.split()[0] if description[0] != "'" else description


def _match_examples(error: UnexpectedToken, text: str, position: int) -> str | None:
    """The label of the example mistake that fails in the same parser state on the same
    kind of token (Lark's ``match_examples``, made strict about the token)."""
    parser = get_parser()
    wanted = _signature(text, position)
    for label, examples in SYNTAX_EXAMPLES:
        for example in examples:
            try:
                parser.parse(example, start="start")
            except UnexpectedToken as other:
                other_position = other.token.start_pos or 0
                if other.state == error.state and \
                        _signature(example, other_position) == wanted:
                    return label
            except (UnexpectedInput, _IndentationProblem):
                continue
    return None


def _body_error(error: Exception, source: Source, base: int, text: str,
                brackets: list[Token], fstring: bool) -> LmqSyntaxError:
    what = "f-string" if fstring else "prompt string"
    if isinstance(error, _IndentationProblem):  # only reachable through odd input
        return _error(error.message, source, base + error.position)
    assert isinstance(error, UnexpectedInput)
    token = getattr(error, "token", None)
    position = getattr(error, "pos_in_stream", None)
    if isinstance(error, UnexpectedToken) and token is not None and token.start_pos is not None:
        position = token.start_pos
    position = len(text) if position is None else position
    character = text[position] if position < len(text) else ""
    opening = brackets[-1] if brackets else None

    if token is not None and token.type == "$END" or isinstance(error, UnexpectedEOF):
        if opening is not None and opening.value == "[":
            return _error("unclosed hole '['", source, base + opening.start_pos, 1,
                          "write '[[' for a literal '['")
        if opening is not None:
            return _error(f"unclosed '{opening.value}' in {what}", source,
                          base + opening.start_pos, 1,
                          "write '{{' for a literal '{'" if opening.value == "{" else None)
    if character == "!" and opening is not None and opening.value == "{":
        return _error("conversions such as '!r' are not available in interpolations; "
                      "call repr() or str() instead", source, base + position, 2)
    if character in "\"'" or re.match(r"[rRfFuU]{1,2}[\"']", text[position:position + 3]):
        if (isinstance(error, UnexpectedCharacters) or (token is not None and token.type in (
                "TEXT", "FTEXT", "FORMAT_SPEC"))) and not _complete_string(text, position):
            return _error("unterminated string literal", source, base + position,
                          len(text) - position)
    if opening is not None and opening.value == "[":
        if character == "]" and text[:position].rstrip().endswith("["):
            return _error("empty hole '[]'", source, base + opening.start_pos,
                          position - opening.start_pos + 1, "write '[[' for a literal '['")
        return _error("invalid hole: expected [NAME], [NAME: TYPE], [NAME: r'REGEX'], "
                      "[NAME: QUERY(...)] or [@DECORATOR NAME]", source, base + position,
                      _describe(text, position, None)[1], "write '[[' for a literal '['")
    if opening is not None and opening.value == "{":
        if character == "}" and text[:position].rstrip().endswith("{"):
            return _error("empty interpolation '{}'", source, base + opening.start_pos,
                          position - opening.start_pos + 1, "write '{{' for a literal '{'")
        return _error(f"invalid interpolation in {what}: expected {{EXPR}} or "
                      f"{{EXPR:SPEC}}", source, base + position,
                      _describe(text, position, None)[1], "write '{{' for a literal '{'")
    description, length = _describe(text, position, None)
    return _error(f"unexpected {description} in {what}", source, base + position, length)
