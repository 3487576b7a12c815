"""Syntax error messages: every Lark error becomes an :class:`LmqSyntaxError` with a span.

Typical mistakes get a named message (black's and CPython's habit), found in this order:

1. structural rules that look at the text: unterminated strings, a bracket that was never
   closed, indentation, an unknown decoder name on the first line, ``=`` for ``==``, a
   missing ``:``, a clause keyword where only a statement can be;
2. :data:`SYNTAX_EXAMPLES`, a table of example mistakes: an error that fails in the same
   parser state, on the same kind of token, as an example gets that example's message
   (Lark's ``match_examples``, made strict about the token);
3. otherwise ``unexpected X``.

Errors inside the body of a prompt string or f-string (holes, interpolations, tags) are
named by :func:`body_error`.
"""

from __future__ import annotations

import keyword
import re

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from lmq.decoders import LMQL_DECODERS, lmql_decoder_problem
from lmq.errors import LmqSyntaxError, Source, did_you_mean

DECODERS = ("argmax", "sample", "beam")
CLAUSE_WORDS = ("where", "from", "prefer", "distribution")
CLAUSE_TERMINALS = frozenset(("FROM", "WHERE", "DISTRIBUTION", "PREFER", "_FROM_UPPER",
                              "_WHERE_UPPER", "_DISTRIBUTION_UPPER", "$END", "_DEDENT"))
# Python statements lmq does not have: what to write instead.
UNSUPPORTED_STATEMENTS = {
    "try": "errors end the run with a message; test a condition with 'if' instead",
    "except": "errors end the run with a message; test a condition with 'if' instead",
    "finally": "errors end the run with a message; test a condition with 'if' instead",
    "with": "programs have no resources to manage",
    "raise": "use 'assert CONDITION, MESSAGE' to stop with a message",
    "global": "functions read the program's names; to change one, return a value",
    "nonlocal": "functions read the names around them; to change one, return a value",
    "del": "assign a new value instead",
    "yield": "return a list instead",
    "await": "calls run to completion; drop 'await' (a nested query is a hole: "
             "[VAR: query(...)])",
    "async": "functions run to completion: drop 'async' (an @lmql.query def may be async)",
}


class IndentationProblem(Exception):
    """Raised by the postlexer; ``position`` is the start of the offending line."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


DISTRIBUTION_FORM = "a distribution clause reads 'distribution VAR in [values]'"
# Typical mistakes: (message, example programs that make the same mistake).
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
    ("expected a model after 'from'", ('"[A]" from\n',)),
    ("prefer takes knowledge sources separated by '>': prefer instruction > context", (
        '"[A]" prefer\n', '"[A]" prefer instruction context\n', '"[A]" prefer instruction,\n')),
    (DISTRIBUTION_FORM, (
        'argmax\n    "[A]"\ndistribution A\n', 'argmax\n    "[A]"\ndistribution A [1]\n')),
)

_HEADERS = {"if": "the 'if' condition", "elif": "the 'elif' condition", "else": "'else'",
            "for": "the 'for' header", "while": "the 'while' condition",
            "query": "the query header"}
_LAYOUT_TOKENS = {"_NEWLINE": "end of line", "$END": "end of file", "_INDENT": "indent",
                  "_DEDENT": "dedent"}
_LEXER_FALLBACK = ("TEXT", "FTEXT", "FORMAT_SPEC")  # what Lark's root lexer may invent
_ROUGH_TOKEN = re.compile(r"""[rRfFuU]{0,2}["']|[^\W\d]\w*|\d[\w.]*|\*\*=?|//=?|<<=?|>>=?"""
                          r"""|[-+*/%@&|^<>=!]=|\S""")
_WORDS = frozenset(DECODERS + CLAUSE_WORDS + (
    "query", "if", "else", "elif", "for", "in", "while", "not", "and", "or", "is", "import",
    "as", "with", "return"))


def syntax_error(message: str, source: Source, start: int, length: int = 1,
                 hint: str | None = None) -> LmqSyntaxError:
    """An error spanning ``length`` characters from ``start``, cut at the end of the line."""
    start = max(0, min(start, len(source.text)))
    end = start + max(1, length)
    line_end = source.text.find("\n", start)
    if line_end != -1:
        end = min(end, max(start + 1, line_end))
    return LmqSyntaxError(message, source.span(start, min(end, max(len(source.text), start + 1))),
                          source, hint)


def first_code_line(text: str) -> tuple[int, int] | None:
    """Offsets (start, end) of the first line that is not blank or a comment."""
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip().lstrip("\ufeff")
        if stripped and not stripped.startswith("#"):
            return offset, offset + len(line.rstrip("\r\n"))
        offset += len(line)
    return None


def describe(text: str, position: int, token: Token | None = None) -> tuple[str, int]:
    """A short description of what is at ``position`` (for ``unexpected ...``) and its
    length. The token's type is only trusted for layout tokens: when the contextual lexer
    fails, Lark's fallback lexer may report any terminal."""
    if token is not None and token.type in _LAYOUT_TOKENS:
        return _LAYOUT_TOKENS[token.type], 1
    match = _ROUGH_TOKEN.match(text, position)
    if match is None:
        return "end of file", 1
    word = match.group()
    if not word.isprintable():
        return f"character {word!r}", len(word)
    if word[-1] in "\"'":
        return "string", len(word)
    if word[0].isdigit():
        return f"number {word}", len(word)
    if (word[0].isalpha() or word[0] == "_") and word not in _WORDS:
        return f"name '{word}'", len(word)
    return f"'{word}'", len(word)


def _position(error: UnexpectedInput, text: str) -> tuple[int, Token | None]:
    token = getattr(error, "token", None)
    if isinstance(error, UnexpectedToken) and token is not None and token.start_pos is not None:
        return token.start_pos, token
    position = getattr(error, "pos_in_stream", None)
    return (len(text) if position is None else position), token


def _expected(error: UnexpectedInput) -> set[str]:
    """The terminals the parser accepted where it failed (not the contextual lexer's set)."""
    state = getattr(error, "state", None)
    try:
        return set(state.parse_conf.states[state.position])  # type: ignore[union-attr]
    except (AttributeError, KeyError, TypeError):
        return set(getattr(error, "expected", None) or ())


def _unterminated_string(error: UnexpectedInput, token: Token | None, text: str,
                         position: int, parser: Lark) -> tuple[str, int] | None:
    """The message and caret width when the lexer stopped at the start of a string that
    never ends (a triple-quoted one is marked by its opening quotes only)."""
    lexer_failed = isinstance(error, UnexpectedCharacters) or (
        token is not None and token.type in _LEXER_FALLBACK)
    if not lexer_failed or not re.match(r"[rRfFuU]{0,2}[\"']", text[position:position + 3]):
        return None
    for name in ("LONG_STRING", "STRING"):
        if re.compile(parser.get_terminal(name).pattern.to_regexp()).match(text, position):
            return None
    triple = re.match(r"[rRfFuU]{0,2}(?:\"\"\"|\'\'\')", text[position:position + 5])
    if triple is not None:
        return "unterminated triple-quoted string", triple.end()
    return "unterminated string literal", len(text)


# ------------------------------------------------------------------ whole programs

def program_error(error: Exception, source: Source, text: str, brackets: list[Token],
                  parser: Lark) -> LmqSyntaxError:
    """The error for a failed parse of a program. ``text`` is what was parsed (the source
    with a final newline); ``brackets`` the brackets open where it failed."""
    if isinstance(error, IndentationProblem):
        indent = len(text[error.position:]) - len(text[error.position:].lstrip(" \t"))
        return syntax_error(error.message, source, error.position + indent)
    assert isinstance(error, UnexpectedInput)
    position, token = _position(error, text)
    character = text[position:position + 1]
    if (isinstance(error, UnexpectedCharacters) or token is not None and
            token.type in _LEXER_FALLBACK) and character in "\"'" and position > 0 and \
            text[position - 1] in "bB" and not text[position - 2:position - 1].isalnum():
        return syntax_error("bytes literals are not available in lmq programs", source,
                            position - 1, 2)
    unterminated = _unterminated_string(error, token, text, position, parser)
    if unterminated is not None:
        return syntax_error(unterminated[0], source, position, unterminated[1])
    opened = (brackets[-1].start_pos or 0) if brackets else 0
    if brackets and (token is None or token.type == "$END" or
                     source.position(position)[0] > source.position(opened)[0]):
        return syntax_error(f"'{brackets[-1].value}' was never closed", source, opened)
    named = _unsupported_statement(source, text, position) or \
        _unknown_decoder(source, text, error) or (
        _named_token_error(source, text, error, position, parser) if token is not None
        else None)
    if named is not None:
        return named
    what, length = describe(text, position, token)
    return syntax_error(f"unexpected {what}", source, position, length)


def _unsupported_statement(source: Source, text: str, position: int) -> LmqSyntaxError | None:
    """A Python statement lmq does not have (``try:``, ``with``, ``raise``, ...) on the
    line that failed to parse."""
    line_start = text.rfind("\n", 0, position) + 1
    match = re.match(r"[ \t]*([^\W\d]\w*)\b", text[line_start:])
    if match is None or match.group(1) not in UNSUPPORTED_STATEMENTS:
        return None
    word = match.group(1)
    return syntax_error(f"'{word}' statements are not available in lmq programs", source,
                        line_start + match.start(1), len(word), UNSUPPORTED_STATEMENTS[word])


def _unknown_decoder(source: Source, text: str, error: UnexpectedInput) -> LmqSyntaxError | None:
    """``sampel(n=2)`` followed by an indented body, or ``sampel "..."`` on one line."""
    first = first_code_line(text)
    if not isinstance(error, UnexpectedToken) or first is None:
        return None
    line_start, line_end = first
    match = re.match(r"([^\W\d]\w*)\s*(\(|[\"']|$)", text[line_start:line_end])
    if match is None or match.group(1) in DECODERS or keyword.iskeyword(match.group(1)):
        return None
    token = error.token
    indented_body = token.type == "_INDENT" and token.start_pos > line_end
    same_line_prompt = match.group(2) in ("'", '"') and \
        token.start_pos == line_start + match.start(2)
    if not (indented_body or same_line_prompt):
        return None
    name = match.group(1)
    if name in LMQL_DECODERS:
        message, hint = lmql_decoder_problem(name)
        return syntax_error(message, source, line_start, len(name), hint)
    hint = did_you_mean(name, DECODERS) or "the decoders are argmax, sample and beam"
    return syntax_error(f"unknown decoder '{name}'", source, line_start, len(name), hint)


def _named_token_error(source: Source, text: str, error: UnexpectedInput, position: int,
                       parser: Lark) -> LmqSyntaxError | None:
    token = error.token  # type: ignore[attr-defined]
    expected = _expected(error)
    line_start = text.rfind("\n", 0, position) + 1
    if token.type == "_INDENT":
        return syntax_error("unexpected indent", source, position)
    if expected == {"_INDENT"}:
        after = f" after line {source.position(position)[0] - 1}" if token.type != "$END" else ""
        return syntax_error(f"expected an indented block{after}", source, position,
                            describe(text, position, token)[1])
    if token.type == "EQUAL" and "EQUAL" not in expected:
        in_where = re.search(r"\bwhere\b", text[line_start:position]) or \
            _clause_above(text, line_start) == "where"
        return syntax_error("use '==' to compare in a constraint, not '='" if in_where
                            else "'=' assigns; use '==' to compare", source, position)
    if "COLON" in expected and token.type in ("_NEWLINE", "$END"):
        header = re.match(r"\s*(\w+)", text[line_start:position])
        what = _HEADERS.get(header.group(1) if header else "")
        return syntax_error(f"expected ':' after {what}" if what else "expected ':'",
                            source, position)
    if expected and expected <= CLAUSE_TERMINALS:
        return syntax_error("expected a clause (from, where, distribution, prefer) at column 1; "
                            "the program's statements belong in the indented body of the "
                            "decoder clause", source, position, describe(text, position)[1])
    misplaced = _misplaced_keyword(source, text, position)
    if misplaced is not None:
        return misplaced
    if re.search(r"\b(distribution|DISTRIBUTION)\b", text[line_start:position]) or (
            _clause_above(text, line_start) in ("distribution", "DISTRIBUTION")
            and text[line_start:line_start + 1].isspace()):
        return syntax_error(DISTRIBUTION_FORM, source, position,
                            describe(text, position, token)[1])
    label = _match_examples(error, text, position, parser)
    if label is not None:
        return syntax_error(label, source, position, describe(text, position, token)[1])
    return None


def _clause_above(text: str, line_start: int) -> str | None:
    """The word at column 1 of the nearest line above ``line_start`` that starts there."""
    for line in reversed(text[:line_start].splitlines()):
        if line[:1].strip() and not line.startswith("#"):
            return line.split()[0]
    return None


def _misplaced_keyword(source: Source, text: str, position: int) -> LmqSyntaxError | None:
    """``else``/``elif`` without ``if``; ``where``, ``from``, ``prefer`` or
    ``distribution`` at column 1 of a modern-form program (where they are plain names)."""
    line = re.match(r"[ \t]*(else|elif)\b", text[text.rfind("\n", 0, position) + 1:])
    if line is not None:
        start = text.rfind("\n", 0, position) + 1 + line.start(1)
        return syntax_error(f"'{line.group(1)}' without a matching 'if'", source, start,
                            len(line.group(1)))
    previous = re.search(r"([^\W\d]\w*)[ \t]*$", text[:position])
    if previous is None:
        return None
    word, start = previous.group(1), previous.start(1)
    if word in ("else", "elif") and re.search(r"(^|\n)[ \t]*$", text[:start]):
        return syntax_error(f"'{word}' without a matching 'if'", source, start, len(word))
    at_column_1 = start == 0 or text[start - 1] == "\n"
    if not at_column_1 or word not in CLAUSE_WORDS or (
            word == "from" and text[position:position + 1].isalpha()):
        return None
    return syntax_error(f"a '{word}' clause at column 1 needs the standard form (a decoder "
                        "clause such as 'argmax' first); in the modern form put it after the "
                        "prompt string on the same line", source, start, len(word))


def _signature(text: str, position: int) -> str:
    """'name', 'string', 'number' or the punctuation at ``position``."""
    description = describe(text, position)[0]
    return description if description.startswith("'") else description.split()[0]


def _match_examples(error: UnexpectedInput, text: str, position: int,
                    parser: Lark) -> str | None:
    """The message of the example mistake that fails in the same parser state on the same
    kind of token."""
    wanted = _signature(text, position)
    for label, examples in SYNTAX_EXAMPLES:
        for example in examples:
            try:
                parser.parse(example, start="start")
            except UnexpectedToken as other:
                if other.state == error.state and \
                        _signature(example, other.token.start_pos or 0) == wanted:
                    return label
            except (UnexpectedInput, IndentationProblem):
                continue
    return None


# ------------------------------------------------------------------ string bodies

def body_error(error: Exception, source: Source, base: int, text: str, brackets: list[Token],
               fstring: bool, parser: Lark) -> LmqSyntaxError:
    """The error for a failed parse of the body of a prompt string (or f-string) that
    starts at file offset ``base``."""
    what = "f-string" if fstring else "prompt string"
    if isinstance(error, IndentationProblem):  # not reachable through string bodies
        return syntax_error(error.message, source, base + error.position)
    assert isinstance(error, UnexpectedInput)
    position, token = _position(error, text)
    character = text[position:position + 1]
    opening = brackets[-1] if brackets else None
    opened = (opening.start_pos or 0) if opening is not None else 0
    here = base + position

    if isinstance(error, UnexpectedEOF) or token is not None and token.type == "$END":
        if opening is not None and opening.value == "[":
            return syntax_error("unclosed hole '['", source, base + opened, 1,
                                "write '[[' for a literal '['")
        if opening is not None:
            return syntax_error(f"unclosed '{opening.value}' in {what}", source,
                                base + opened, 1,
                                "write '{{' for a literal '{'" if opening.value == "{" else None)
    if character == "!" and opening is not None and opening.value == "{":
        return syntax_error("conversions such as '!r' are not available in interpolations; "
                            "call repr() or str() instead", source, here, 2)
    unterminated = _unterminated_string(error, token, text, position, parser)
    if unterminated is not None:
        return syntax_error(unterminated[0], source, here, unterminated[1])
    length = describe(text, position)[1]
    if opening is not None and opening.value == "[":
        if character == "]" and text[:position].rstrip().endswith("["):
            return syntax_error("empty hole '[]'", source, base + opened,
                                position - opened + 1, "write '[[' for a literal '['")
        return syntax_error("invalid hole: expected [NAME], [NAME: TYPE], [NAME: r'REGEX'], "
                            "[NAME: QUERY(...)] or [@DECORATOR NAME]", source, here, length,
                            "write '[[' for a literal '['")
    if opening is not None and opening.value == "{":
        if character == "}" and text[:position].rstrip().endswith("{"):
            return syntax_error("empty interpolation '{}'", source, base + opened,
                                position - opened + 1, "write '{{' for a literal '{'")
        return syntax_error(f"invalid interpolation in {what}: expected {{EXPR}} or "
                            "{EXPR:SPEC}", source, here, length, "write '{{' for a literal '{'")
    return syntax_error(f"unexpected {describe(text, position)[0]} in {what}", source, here,
                        length)
