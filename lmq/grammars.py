"""Lark grammars of ``GRAMMAR(X, grammar)`` (LANGUAGE.md section 4): the accepted subset,
its checks, and the texts the engine and Lark are given.

A grammar is Lark text with ``start`` as its start rule. lmq accepts what both engines
read: Lark itself (which parses finished values, ``tree=True``) and llguidance (which
computes the token masks, :mod:`lmq.runtime.automata.grammar`). That is Lark's syntax with
strings and regexes as terminals, ``%import common.NAME``, ``%ignore``, rule alternatives,
``?``/``*``/``+``/``~n``/``[...]``, ``?rule``/``_rule``/``!rule`` and aliases; priorities
(``rule.2``, ``TERM.2``) shape Lark's parse tree and are left out of the engine's copy (the
language does not depend on them). Templates, ``%declare``, ``%override``/``%extend``,
lookarounds, imports other than ``common`` and llguidance's own extensions (``%json``,
``[lazy]`` …) are compile errors at the grammar's own line and column
(:class:`GrammarError`).

Grammar files (``GRAMMAR(X, file="expr.lark")``) are read by :func:`read_grammar_file`
only. Nothing here imports the runtime; llguidance (the ``runtime`` extra) is imported
only to validate, and skipped when it is not installed.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from typing import Any

import lark
from lark.load_grammar import TERMINALS

from lmq.errors import LmqCompileError, Source, Span

START = "start"

# The lexical units of a grammar text that may hold a rule name's letters without being
# one (strings, regexes, comments), then names; lark's own definitions of them.
_UNITS = re.compile("|".join(f"(?P<{name}>{TERMINALS[name]})" for name in
                             ("COMMENT", "STRING", "REGEXP", "RULE", "TERMINAL")))
_PRIORITY = re.compile(r"(?m)^([ \t]*[?!]?_?[A-Za-z][_A-Za-z0-9]*)\.-?\d+(?=[ \t]*:)")
_IMPORT = re.compile(r"(?m)^[ \t]*%import[ \t]+(\S*)")
_ENGINE_POSITION = re.compile(r"^(?:at )?(\d+)\((\d+)\):?\s*(.*)", re.DOTALL)
_LARK_POSITION = re.compile(r"at line (\d+),? column (\d+)")
_NAMED = re.compile(r"(?:Rule|Terminal) '([^']+)'")


class GrammarError(LmqCompileError):
    """A grammar lmq cannot enforce; ``offset`` is the character offset of the problem in
    the grammar text, and the message names its line and column there."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        offset = max(0, min(offset, len(text)))
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        super().__init__(f"invalid grammar (line {line}, column {column}): {message}")
        self.detail, self.offset = message, offset
        self.grammar_line, self.grammar_column = line, column


def check_grammar(text: str) -> None:
    """Raise :class:`GrammarError` unless lmq can enforce ``text`` (see the module)."""
    for match in _IMPORT.finditer(text):  # before Lark reads it: Lark would open files
        if not match[1].startswith("common."):
            raise GrammarError(f"only '%import common.NAME' is supported, not "
                               f"'%import {match[1]}'", text, match.start(1))
    _check_engine(text)
    load(text)


MAX_FILE_BYTES = 1 << 20


def read_grammar_file(program: str, name: str, where: Span) -> str:
    """The checked text of the grammar file ``name``, relative to the folder of the
    program file ``program`` (the current folder for a program given as text).

    Programs may come from strangers, so the file must be a ``.lark`` file inside that
    folder (no absolute path, no ``..`` out of it) of at most 1 MiB. A problem with the
    file is an :class:`LmqCompileError` at ``where``; an error in the grammar points into
    the file."""
    folder = os.path.dirname(os.path.abspath(program)) if os.path.isfile(program) \
        else os.getcwd()
    path = os.path.realpath(os.path.join(folder, name))
    if os.path.isabs(name) or os.path.commonpath([path, os.path.realpath(folder)]) != \
            os.path.realpath(folder):
        raise LmqCompileError(f"the grammar file {name!r} must be inside the program's "
                              "folder", where)
    if not name.endswith(".lark"):
        raise LmqCompileError(f"the grammar file {name!r} must be a .lark file", where)
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise LmqCompileError(f"the grammar file {name!r} is larger than 1 MiB", where)
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise LmqCompileError(f"cannot read the grammar file {name!r}: {reason}",
                              where) from None
    try:
        check_grammar(text)
    except GrammarError as error:
        source = Source(text, path)
        raise LmqCompileError(f"invalid grammar: {error.detail}", source.span(error.offset),
                              source) from None
    return text


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    return sum(len(row) + 1 for row in lines[:line - 1]) + column - 1


def _check_engine(text: str) -> None:
    try:
        import llguidance
    except ImportError:  # the runtime extra is not installed: Lark's check alone
        return
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
        llguidance.grammar_from("lark", engine_text(text)))
    if not is_error:
        return
    message = messages[0] if messages else "not a grammar llguidance can read"
    found = _ENGINE_POSITION.match(message)
    if found is None:
        raise GrammarError(message.strip().split("\n")[0], text, 0)
    lines = found[3].strip().split("\n")
    reason = next((line.strip() for line in lines if line.startswith("error:")), "")
    detail = " ".join(filter(None, (lines[0].rstrip(":"), reason))) or "syntax error"
    offset = _offset(engine_text(text), int(found[1]), int(found[2]))
    name = re.search(r'name: "([^"]+)"', detail)  # llguidance points at the rule's body
    use = name and re.compile(rf"(?<![\w.]){re.escape(name[1])}(?![\w])").search(text, offset)
    raise GrammarError(detail, text, use.start() if use else offset)


_LOADED: OrderedDict[str, lark.Lark] = OrderedDict()
_LOCK = threading.Lock()


def load(text: str) -> lark.Lark:
    """The Lark parser of ``text`` (Earley, dynamic lexer), memoised; :class:`GrammarError`
    when Lark rejects it."""
    with _LOCK:
        parser = _LOADED.get(text)
        if parser is not None:
            _LOADED.move_to_end(text)
            return parser
    try:
        parser = lark.Lark(text, start=START, parser="earley", lexer="dynamic")
    except lark.exceptions.UnexpectedInput as error:
        raise GrammarError(_first_line(error), text,
                           _offset(text, error.line, error.column)) from None
    except (lark.exceptions.LarkError, ValueError, re.error) as error:
        raise GrammarError(_first_line(error), text, _where(text, str(error))) from None
    with _LOCK:
        _LOADED[text] = parser
        if len(_LOADED) > 64:
            _LOADED.popitem(last=False)
    return parser


def _first_line(error: Exception) -> str:
    """The message of a Lark error without its position (reported separately)."""
    text = str(error).strip().split("\n")[0]
    return re.sub(r",? at line \d+,? column \d+.*$", "", text).rstrip(",.: ")


def _where(text: str, message: str) -> int:
    """The offset a Lark message points at: its line and column, or the first use of the
    rule or terminal it names."""
    found = _LARK_POSITION.search(message)
    if found:
        return _offset(text, int(found[1]), int(found[2]))
    named = _NAMED.search(message)
    if named:
        use = re.search(rf"(?<![\w]){re.escape(named[1])}(?![\w])", text)
        if use:
            return use.start()
    return 0


def engine_text(text: str) -> str:
    """``text`` as llguidance reads it: priorities left out (they only choose among
    parse trees), everything else as written."""
    return _PRIORITY.sub(r"\1", text)


def renamed(text: str, old: str, new: str) -> str:
    """``text`` with the rule ``old`` called ``new`` wherever it is a name (not inside a
    string, a regex or a comment)."""
    def replace(match: re.Match) -> str:
        return new if match.lastgroup == "RULE" and match.group() == old else match.group()

    return _UNITS.sub(replace, text)


def parse_tree(text: str, value: str) -> Any:
    """The Lark parse tree of ``value`` (``ValueError`` if it is not a sentence)."""
    try:
        return load(text).parse(value)
    except lark.exceptions.LarkError as error:
        raise ValueError(_first_line(error)) from None


def is_sentence(text: str, value: str) -> bool:
    """Whether Lark parses ``value`` with the grammar ``text``."""
    try:
        parse_tree(text, value)
    except ValueError:
        return False
    return True


def grammar_parts(tree: Any) -> tuple[str, Any, tuple[str, ...]] | None:
    """``(prefix, core, stops)`` of a hole's generation language over a grammar
    (:meth:`lmq.constraints.HoleSpec.generation`): the healed prompt text, the
    :class:`~lmq.regular.Grammar` (or a :class:`~lmq.regular.Json` past the automaton
    budget) and the ``STOPS_BEFORE`` phrases; None for any other language."""
    from lmq import regular

    stops: tuple[str, ...] = ()
    if isinstance(tree, regular.StopsBefore):
        stops, tree = tree.phrases, tree.part
    prefix = ""
    if isinstance(tree, regular.Concat) and len(tree.parts) == 2 and \
            isinstance(tree.parts[0], regular.Literal):
        prefix, tree = tree.parts[0].text, tree.parts[1]
    if isinstance(tree, (regular.Grammar, regular.Json)):
        return prefix, tree, stops
    return None


def lark_text(tree: Any) -> str:
    """A hole's generation language over a grammar (see :func:`grammar_parts`) as one
    Lark grammar in llguidance's dialect: the text lmq compiles for its masks, and the form
    in which a serving engine that takes Lark grammars (vLLM's guidance backend) would get
    the hole. A healed prefix comes first; ``STOPS_BEFORE`` adds a terminal that is a
    phrase followed by anything (the overshoot of the token completing it). A JSON schema
    becomes llguidance's ``%json`` rule in compact form."""
    from lmq import regular

    parts = grammar_parts(tree)
    if parts is None:
        raise TypeError(f"not a grammar constraint: {tree!r}")
    prefix, core, stops = parts
    if isinstance(core, regular.Grammar):
        text = engine_text(core.text)
        taken = {match.group() for match in _UNITS.finditer(text)}
    else:
        text, taken = "", set()
    value = _fresh("lmq_value", taken)  # "?start" may stand before it: no leading "_"
    stop = _fresh("_LMQ_STOP", taken)
    body = " ".join(filter(None, (_string(prefix) if prefix else "", value,
                                  f"{stop}?" if stops else "")))
    # every tokenization of a forced stretch stays allowed; lmq forces text itself
    lines = ['%llguidance {"no_forcing": true}', f"{START}: {body}"]
    if isinstance(core, regular.Grammar):
        lines.append(renamed(text, START, value))
    else:
        schema = _closed(json.loads(core.schema))
        options = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
        schema = {"x-guidance": options, **schema} if isinstance(schema, dict) else schema
        lines.append(f"{value}: %json {json.dumps(schema, ensure_ascii=False)}")
    if stops:
        phrases = " | ".join(_string(phrase) for phrase in stops)
        lines.append(f"{stop}: ({phrases}) /(?s:.*)/")
    return "\n".join(lines) + "\n"


def _closed(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever an object lists its
    properties and leaves it out: lmq's JSON generates only the listed properties
    (:mod:`lmq.runtime.automata.fsm_json`), JSON Schema's default would allow others."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _fresh(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}{n}", n + 1
    return candidate


def _string(text: str) -> str:
    """A Lark string literal of ``text``."""
    return json.dumps(text, ensure_ascii=False)


def finite_form(tree: Any) -> Any:
    """``tree`` with each conjunction of a grammar and finite sets of values
    (``GRAMMAR(X, g) and X in [...]``) replaced by the values that are sentences (a
    regular constraint); other nodes as they are."""
    from lmq import regular

    if isinstance(tree, regular.And):
        grammar = next((p for p in tree.parts if isinstance(p, regular.Grammar)), None)
        finite = [p for p in tree.parts if isinstance(p, (regular.OneOf, regular.Literal))]
        if grammar is not None and finite:
            values = [p.texts if isinstance(p, regular.OneOf) else (p.text,) for p in finite]
            common = [v for v in dict.fromkeys(values[0]) if all(v in vs for vs in values[1:])]
            return regular.OneOf(tuple(v for v in common if is_sentence(grammar.text, v)))
    if isinstance(tree, regular.Concat):
        return regular.Concat(tuple(finite_form(part) for part in tree.parts))
    if isinstance(tree, regular.StopsBefore):
        return regular.StopsBefore(finite_form(tree.part), tree.phrases)
    return tree
