"""Parse tree to IR: one Lark ``Transformer``, one method per grammar rule.

:class:`Lowering` extends :class:`lmq.lower_expr.ExpressionLowering` (the expression
rules) with the program, statement and prompt-string rules. Prompt strings are parsed a
second time with the grammar's ``prompt_body`` rule (:func:`lmq.parser.parse_body`) and
lowered by a ``Lowering`` whose ``offset`` is the body's position in the file, so every
node's span points into the file. ``where`` expressions become constraints with
:mod:`lmq.lower_where` once the holes in scope are known: the statement's holes for an
inline ``where``, the program's for the program's clause.

Errors found here are about the shape of the text (clause order, duplicate clauses,
tags, hole syntax, assignment targets) and the holes named in constraints; the checks
that need the whole program live in :mod:`lmq.checks`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lark import Token, Tree, v_args
from lark.tree import Meta

from lmq import ir
from lmq.decoders import LMQL_DECODERS, lmql_decoder_problem
from lmq.errors import LmqCompileError, Source, Span, did_you_mean
from lmq.lower_defs import DefinitionLowering, mark_docstrings
from lmq.lower_expr import literal_parts, transform
from lmq.lower_where import to_constraint
from lmq.parser import parse, parse_body

CLAUSE_ORDER = ("from", "where", "distribution", "prefer")
TAGS = ("system", "user", "assistant", "instruction", "context")
KNOWLEDGE_TAGS = ("instruction", "context")
HOLE_TYPES = ("int", "float", "bool", "str")  # str: any text, as without a type
KNOWLEDGE_SOURCES = ("instruction", "context", "parametric")
PREFER_OPTIONS = ("mode", "strength", "margin", "sentinel", "plausibility")
PREFER_MODES = ("contrastive", "prompt", "cascade")  # run by lmq.runtime.decoding.prefer


@dataclass(frozen=True)
class _Clause:
    """A program clause or an inline clause; ``value`` is still an expression for
    ``where`` unless ``constraint`` is set."""

    kind: str
    value: Any
    keyword: Span
    constraint: bool = False


@dataclass(frozen=True)
class _OneLine:
    prompt: ir.Prompt
    clauses: tuple[_Clause, ...]


@dataclass(frozen=True)
class _Elif:
    test: ir.Expr
    body: tuple[ir.Stmt, ...]
    span: Span


def _flatten(items: Iterable[Any]) -> Iterator[ir.Stmt]:
    for item in items:
        if isinstance(item, list):
            yield from item
        elif item is not None:
            yield item


def program_holes(body: Iterable[ir.Stmt]) -> list[str]:
    """Hole names of the prompt statements in ``body``, in order, with repeats; nested
    blocks are included, query definitions are not."""
    names: list[str] = []
    for stmt in body:
        if isinstance(stmt, ir.Prompt):
            names.extend(part.name for part in stmt.parts if isinstance(part, ir.Hole))
        elif isinstance(stmt, ir.If):
            names.extend(program_holes(stmt.body) + program_holes(stmt.orelse))
        elif isinstance(stmt, (ir.For, ir.While)):
            names.extend(program_holes(stmt.body))
    return names


@v_args(meta=True)
class Lowering(DefinitionLowering):
    """Program, statement and prompt-string rules of ``grammar/lmq.lark`` (definitions:
    :mod:`lmq.lower_defs`, expressions: :mod:`lmq.lower_expr`)."""

    def __init__(self, source: Source, offset: int = 0) -> None:
        super().__init__(source, offset)
        self._defs_init()
        # Inline clauses of each prompt statement, by id, for a one-line program that
        # makes them the program's clauses.
        self._inline_clauses: dict[int, list[_Clause]] = {}

    def _keyword(self, meta: Meta, word: str) -> Span:
        start = self.offset + meta.start_pos
        return self.source.span(start, start + len(word))

    def _compile_error(self, message: str, where: Span | ir.Node,
                       hint: str | None = None) -> LmqCompileError:
        span = where if isinstance(where, Span) else where.span
        return LmqCompileError(message, span, self.source, hint)

    # ------------------------------------------------------------ program shape

    def start(self, meta: Meta, children: list) -> ir.Program:
        return children[-1]

    def modern_program(self, meta: Meta, children: list) -> ir.Program:
        body = tuple(_flatten(children))
        first = body[0].value if body and isinstance(body[0], ir.ExprStmt) else None
        if isinstance(first, ir.Call):
            first = first.func
        if isinstance(first, ir.Name) and first.id in LMQL_DECODERS:  # read as a decoder
            message, hint = lmql_decoder_problem(first.id)
            raise self._syntax_error(message, first, hint)
        return self._program(body, None, [])

    def standard_program(self, meta: Meta, children: list) -> ir.Program:
        decoder, *rest = children
        body: list[ir.Stmt] = []
        clauses: list[_Clause] = []
        for child in rest:
            if isinstance(child, _Clause):
                clauses.append(child)
            elif isinstance(child, _OneLine):
                body.append(child.prompt)
                clauses.extend(child.clauses)
            else:
                body.extend(_flatten([child]))
        return self._program(tuple(body), decoder, clauses)

    def unindented_program(self, meta: Meta, children: list) -> ir.Program:
        """LMQL's decoder line over statements at column 1 (no clauses)."""
        decoder, *body = children
        return self._program(tuple(_flatten(body)), decoder, [])

    def oneline_body(self, meta: Meta, children: list) -> _OneLine:
        """``argmax "..." from M where C``: the clauses are the program's."""
        prompt: ir.Prompt = children[0]
        clauses = tuple(self._inline_clauses.pop(id(prompt), ()))
        bare = ir.Prompt(prompt.parts, span=prompt.span)
        return _OneLine(bare, clauses)

    def _program(self, body: tuple[ir.Stmt, ...], decoder: ir.Decoder | None,
                 clauses: list[_Clause]) -> ir.Program:
        seen: dict[str, _Clause] = {}
        for clause in clauses:
            if clause.kind in seen:
                raise self._syntax_error(f"duplicate '{clause.kind}' clause", clause.keyword,
                                         "a program has at most one of each clause")
            later = [k for k in seen if CLAUSE_ORDER.index(k) > CLAUSE_ORDER.index(clause.kind)]
            if later:
                raise self._syntax_error(
                    f"the '{clause.kind}' clause must come before the '{later[0]}' clause",
                    clause.keyword, "the order is: from, where, distribution, prefer")
            seen[clause.kind] = clause
        where = seen.get("where")
        constraint = None
        if where is not None:
            constraint = where.value if where.constraint else to_constraint(
                where.value, program_holes(body), self.source, "program")
        return ir.Program(
            body, decoder,
            model=seen["from"].value if "from" in seen else None,
            where=constraint,
            distribution=seen["distribution"].value if "distribution" in seen else None,
            prefer=seen["prefer"].value if "prefer" in seen else None,
            source=self.source, span=self.source.span(0, len(self.source.text)))

    def decoder(self, meta: Meta, children: list) -> ir.Decoder:
        name, arguments = children
        args, keywords = arguments if arguments is not None else ((), ())
        return ir.Decoder(str(name).lower(), args, keywords, span=self._span(meta))

    def decoder_name(self, meta: Meta, children: list) -> Token:
        return children[0]

    def model_clause(self, meta: Meta, children: list) -> _Clause:
        return _Clause("from", children[0], self._keyword(meta, "from"))

    def where_clause(self, meta: Meta, children: list) -> _Clause:
        return _Clause("where", children[0], self._keyword(meta, "where"))

    def distribution_clause(self, meta: Meta, children: list) -> _Clause:
        return _Clause("distribution", children[0], self._keyword(meta, "distribution"))

    def prefer_clause(self, meta: Meta, children: list) -> _Clause:
        return _Clause("prefer", children[0], self._keyword(meta, "prefer"))

    inline_from = model_clause
    inline_where = where_clause
    inline_distribution = distribution_clause
    inline_prefer = prefer_clause

    def distribution(self, meta: Meta, children: list) -> ir.Distribution:
        return ir.Distribution(str(children[0]), children[1], span=self._span(meta))

    def preference(self, meta: Meta, children: list) -> ir.Prefer:
        names = [child for child in children if isinstance(child, Token)]
        options = tuple(child for child in children if isinstance(child, ir.Keyword))
        for name in names:
            if name not in KNOWLEDGE_SOURCES:
                raise self._syntax_error(f"unknown knowledge source '{name}'", name,
                                         did_you_mean(name, KNOWLEDGE_SOURCES)
                                         or "the sources are instruction, context, parametric")
            if names.count(name) > 1:
                raise self._syntax_error(f"'{name}' appears twice in the preference", name)
        for option in options:
            if option.name not in PREFER_OPTIONS:
                raise self._syntax_error(f"unknown option '{option.name}' for prefer", option,
                                         did_you_mean(option.name, PREFER_OPTIONS)
                                         or "the options are mode, strength, plausibility, "
                                         "margin and sentinel")
            value = option.value
            if option.name == "mode" and isinstance(value, ir.Const) and \
                    value.value not in PREFER_MODES:
                raise self._compile_error(f"unknown prefer mode {value.value!r}", value,
                                          did_you_mean(str(value.value), PREFER_MODES)
                                          or "the modes are 'contrastive', 'prompt' and "
                                          "'cascade'")
        return ir.Prefer(tuple(str(n) for n in names), options, span=self._span(meta))

    # ------------------------------------------------------------ prompt statements

    def prompt_stmt(self, meta: Meta, children: list) -> ir.Prompt:
        literal, model, where, distribution, prefer = children
        parts: list[ir.Part] = []
        for token in self.literals.pop(id(literal)):
            prefix, _, start, end = literal_parts(str(token))
            if prefix not in ("", "u"):
                raise self._syntax_error(
                    "a prompt string has no prefix: prompt strings already interpolate "
                    "{expr}, and holes need escapes to be processed", token)
            base = self.offset + (token.start_pos or 0)
            tree = parse_body(self.source, base + start, base + end)
            parts.extend(transform(Lowering(self.source, base + start), tree))
        holes = [part.name for part in parts if isinstance(part, ir.Hole)]
        constraint = None
        if where is not None:
            constraint = to_constraint(where.value, holes, self.source, "statement")
        if distribution is not None and (not holes or holes[-1] != distribution.value.hole):
            last = f" (its last hole is '{holes[-1]}')" if holes else " (it has no holes)"
            raise self._compile_error(
                f"the distribution variable '{distribution.value.hole}' must be the "
                f"statement's last hole{last}", distribution.value)
        prompt = ir.Prompt(tuple(parts), constraint, model.value if model else None,
                           prefer.value if prefer else None,
                           distribution.value if distribution else None,
                           span=self._span(meta))
        clauses = [c for c in (model, where, distribution, prefer) if c is not None]
        if clauses:
            self._inline_clauses[id(prompt)] = [
                _Clause(c.kind, constraint if c.kind == "where" else c.value, c.keyword,
                        constraint=True) for c in clauses]
        return prompt

    def prompt_body(self, meta: Meta, children: list) -> tuple[ir.Part, ...]:
        parts: list[ir.Part] = []
        text: list[str] = []
        text_span: Span | None = None
        for child in children:
            if isinstance(child, Token):
                value = (self._escape(child) if child.type == "ESCAPE" else
                         child[0] if child.type in ("LITERAL_BRACKET", "LITERAL_BRACE") else
                         str(child))
                span = self._span(child)
                text.append(value)
                text_span = span if text_span is None else text_span.join(span)
                continue
            if "".join(text):
                parts.append(ir.Text("".join(text), span=text_span))  # type: ignore[arg-type]
            text, text_span = [], None
            parts.append(child)
        if "".join(text):
            parts.append(ir.Text("".join(text), span=text_span))  # type: ignore[arg-type]
        section = None
        for part in parts:
            if isinstance(part, ir.Tag):
                section = part.name if part.name in KNOWLEDGE_TAGS else None
            elif isinstance(part, ir.Hole) and section is not None:
                raise self._compile_error(
                    f"a hole cannot be inside a {{:{section}}} section", part,
                    "knowledge sections are given text; put the question after them, "
                    "in another prompt string or after a {:user} tag")
        return tuple(parts)

    def hole(self, meta: Meta, children: list) -> ir.Hole:
        *decorators, name, kind = children
        fields: dict[str, Any] = {}
        if kind is not None:
            fields[kind[0]] = kind[1]
        return ir.Hole(str(name), decorators=tuple(decorators), span=self._span(meta), **fields)

    def hole_type_or_query(self, meta: Meta, children: list) -> tuple[str, Any]:
        name = children[0]
        if name in HOLE_TYPES:
            return "type", str(name)
        return "query", ir.Name(str(name), span=self._span(name))

    def hole_query_call(self, meta: Meta, children: list) -> tuple[str, Any]:
        name, arguments = children
        args, keywords = arguments if arguments is not None else ((), ())
        function = ir.Name(str(name), span=self._span(name))
        return "query", ir.Call(function, args, keywords, span=self._span(meta))

    def hole_regex(self, meta: Meta, children: list) -> tuple[str, Any]:
        token = children[0]
        prefix, _, start, end = literal_parts(str(token))
        if prefix != "r":
            raise self._syntax_error("the pattern of a regex hole is a raw string: "
                                     "[NAME: r'...']", token)
        return "regex", str(token)[start:end]

    def decorator(self, meta: Meta, children: list) -> ir.Expr:
        """``@f``, ``@m.f`` or ``@f(args)`` (a call that returns the decorator)."""
        *names, arguments = children
        result: ir.Expr = ir.Name(str(names[0]), span=self._span(names[0]))
        for attribute in names[1:]:
            result = ir.Attribute(result, str(attribute),
                                  span=result.span.join(self._span(attribute)))
        if arguments is not None:
            args, keywords = arguments
            result = ir.Call(result, args, keywords, span=self._span(meta))
        return result

    def tag(self, meta: Meta, children: list) -> ir.Tag:
        name = str(children[0])
        if name not in TAGS:
            close = difflib.get_close_matches(name, TAGS, n=1, cutoff=0.6)
            hint = (f"did you mean '{{:{close[0]}}}'?" if close else
                    "the tags are " + ", ".join(f"{{:{tag}}}" for tag in TAGS))
            raise self._syntax_error(f"unknown tag '{{:{name}}}'", meta, hint)
        return ir.Tag(name, span=self._span(meta))

    # ------------------------------------------------------------ statements

    def simple_stmt(self, meta: Meta, children: list) -> list[ir.Stmt]:
        return list(_flatten(children))

    def suite(self, meta: Meta, children: list) -> tuple[ir.Stmt, ...]:
        return tuple(_flatten(children))

    def expr_stmt(self, meta: Meta, children: list) -> ir.ExprStmt:
        return ir.ExprStmt(children[0], span=self._span(meta))

    def assign(self, meta: Meta, children: list) -> ir.Assign:
        targets = tuple(self._target(target) for target in children[:-1])
        return ir.Assign(targets, children[-1], span=self._span(meta))

    def augassign(self, meta: Meta, children: list) -> ir.AugAssign:
        target, operator, value = children
        target = self._target(target)
        if isinstance(target, ir.TupleExpr):
            raise self._syntax_error(f"cannot use '{operator}=' with a tuple", target)
        return ir.AugAssign(target, operator, value, span=self._span(meta))

    def augassign_op(self, meta: Meta, children: list) -> str:
        return str(children[0])[:-1]

    def pass_stmt(self, meta: Meta, children: list) -> ir.Pass:
        return ir.Pass(span=self._span(meta))

    def break_stmt(self, meta: Meta, children: list) -> ir.Break:
        return ir.Break(span=self._span(meta))

    def continue_stmt(self, meta: Meta, children: list) -> ir.Continue:
        return ir.Continue(span=self._span(meta))

    def return_stmt(self, meta: Meta, children: list) -> ir.Return:
        return ir.Return(children[0], span=self._span(meta))

    def import_stmt(self, meta: Meta, children: list) -> ir.Import:
        module, *names = children
        return ir.Import(module, tuple(names), span=self._span(meta))

    def import_module(self, meta: Meta, children: list) -> list[ir.Import]:
        """``import X [as Y], ...``: one Import each, without names; the checks decide
        whether X may be imported."""
        return [ir.Import(module, (), alias, span=self._span(meta)) for module, alias in children]

    def module_name(self, meta: Meta, children: list) -> tuple[str, str]:
        module, alias = children
        return module, str(alias or module)

    def import_name(self, meta: Meta, children: list) -> tuple[str, str]:
        name, alias = children
        return str(name), str(alias if alias is not None else name)

    def dotted_name(self, meta: Meta, children: list) -> str:
        return ".".join(str(name) for name in children)

    def if_stmt(self, meta: Meta, children: list) -> ir.If:
        test, body, *rest = children
        orelse: tuple[ir.Stmt, ...] = rest.pop() or ()
        for clause in reversed(rest):
            orelse = (ir.If(clause.test, clause.body, orelse, span=clause.span),)
        return ir.If(test, body, orelse, span=self._span(meta))

    def elif_clause(self, meta: Meta, children: list) -> _Elif:
        return _Elif(children[0], children[1], self._span(meta))

    def else_clause(self, meta: Meta, children: list) -> tuple[ir.Stmt, ...]:
        return children[0]

    def for_stmt(self, meta: Meta, children: list) -> ir.For:
        target, iterable, body = children
        return ir.For(self._target(target), iterable, body, span=self._span(meta))

    def while_stmt(self, meta: Meta, children: list) -> ir.While:
        return ir.While(children[0], children[1], span=self._span(meta))

    def query_def(self, meta: Meta, children: list) -> ir.QueryDef:
        name, params, body = children
        return ir.QueryDef(str(name), params or (), body, span=self._span(meta))

    def query_params(self, meta: Meta, children: list) -> tuple[str, ...]:
        for index, name in enumerate(children):
            if name in children[:index]:
                raise self._syntax_error(f"duplicate parameter '{name}'", name)
        return tuple(str(name) for name in children)


def lower(tree: Tree, source: Source) -> ir.Program:
    """Lower a tree from :func:`lmq.parser.parse` to an :class:`ir.Program`."""
    mark_docstrings(tree)
    return transform(Lowering(source), tree)


def lower_source(source: Source) -> ir.Program:
    """Parse and lower a program text."""
    return lower(parse(source), source)
