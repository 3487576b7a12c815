"""Definitions inside programs, part of the lowering (LANGUAGE.md section 3).

:class:`DefinitionLowering` holds the grammar rules of ``def`` functions, ``@lmql.query``
nested queries, ``@dataclass`` records, ``lambda``, ``assert`` and annotated assignments;
:class:`lmq.lower.Lowering` inherits them. A definition is lowered by what its decorators
make of it (:data:`DECORATORS`):

* no decorator: ``def`` is a :class:`~lmq.ir.FunctionDef` (its docstring dropped);
* ``@lmql.query``: the docstring is the query's program, parsed at its place in the file
  (:func:`lmq.parser.parse_region`, an optional ``lmql`` marker first), and the definition
  is a :class:`~lmq.ir.QueryDef` like a ``query NAME(params):`` block; the docstring
  program's ``where`` joins each of its prompt statements' own, and its decoder and
  ``from`` clauses yield to the caller's, as for any nested query;
* ``@dataclass`` on a class of typed fields: a :class:`~lmq.ir.RecordDef`.

Any other decorator, a class without ``@dataclass`` and ``async def`` outside
``@lmql.query`` are compile errors that say what lmq offers instead.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from lark import Token, Tree, v_args
from lark.tree import Meta

from lmq import ir
from lmq.errors import LmqCompileError, Span
from lmq.lower_expr import ExpressionLowering, literal_parts, transform
from lmq.parser import parse_region

QUERY_DECORATOR = "lmql.query"
RECORD_DECORATORS = ("dataclass", "dataclasses.dataclass")
# Decorators LMQL defines that have no lmq counterpart, with what to use instead.
UNSUPPORTED_DECORATORS = {
    "lmql.decorators.streaming": "streaming decorators are not available in lmq programs; "
    "stream a run's tokens from Python with q.stream()",
    "lmql.decorators.pre": "pre-processing decorators are not available in lmq programs; "
    "give the value with a plain statement before the prompt instead",
}
FIELD_TYPES = ("str", "int", "float", "bool")
LIST_TYPES = ("list", "List", "typing.List")
_MARKER = re.compile(r"[ \t]*lmql[ \t]*(?=\r?\n)")


@dataclass(frozen=True)
class _Docstring:
    tokens: list[Token]
    span: Span


@dataclass(frozen=True)
class _Function:
    name: str
    params: tuple[ir.Param, ...]
    body: tuple[ir.Stmt, ...]
    docstring: _Docstring | None
    is_async: bool
    span: Span


@dataclass(frozen=True)
class _Class:
    name: str
    has_bases: bool
    body: tuple[Any, ...]
    docstring: _Docstring | None
    span: Span


@dataclass(frozen=True)
class _Decorator:
    name: str
    called: bool
    span: Span


def with_program_where(body: tuple[ir.Stmt, ...], where: ir.Constraint | None,
                       model: ir.Expr | None = None) -> tuple[ir.Stmt, ...]:
    """``body`` with ``where`` joined to each prompt statement's own constraint (a nested
    query's holes see only inline constraints) and ``model``, if given, as the inline
    ``from`` of each prompt statement that has none; nested blocks included."""
    out: list[ir.Stmt] = []
    for stmt in body:
        if isinstance(stmt, ir.Prompt):
            own = stmt.where
            if where is not None:
                own = where if own is None else ir.And((own, where), span=own.span)
            stmt = dataclasses.replace(stmt, where=own, model=stmt.model if stmt.model
                                       is not None else model)
        elif isinstance(stmt, ir.If):
            stmt = dataclasses.replace(stmt, body=with_program_where(stmt.body, where, model),
                                       orelse=with_program_where(stmt.orelse, where, model))
        elif isinstance(stmt, (ir.For, ir.While)):
            stmt = dataclasses.replace(stmt, body=with_program_where(stmt.body, where, model))
        out.append(stmt)
    return tuple(out)


def mark_docstrings(tree: Tree) -> None:
    """Turn the first statement of each ``def`` and ``class`` body into a ``docstring``
    node when it is a string literal, before lowering: a docstring is not a prompt (and
    the one of an ``@lmql.query`` def is a program of its own, parsed separately)."""
    for subtree in tree.iter_subtrees():
        if subtree.data not in ("funcdef", "classdef"):
            continue
        suite = subtree.children[-1]
        first = suite.children[0] if isinstance(suite, Tree) and suite.children else None
        if isinstance(first, Tree) and first.data == "prompt_stmt" and \
                all(child is None for child in first.children[1:]):
            suite.children[0] = Tree("docstring", [first.children[0]], meta=first.meta)


@v_args(meta=True)
class DefinitionLowering(ExpressionLowering):
    """Grammar rules for definitions; mixed into :class:`lmq.lower.Lowering`."""

    def _defs_init(self) -> None:
        # annotated assignments by id: (name, annotation, value) for a record's fields
        self._annotations: dict[int, tuple[str, ir.Expr, ir.Expr | None]] = {}

    def _compile(self, message: str, where: Span | ir.Node, hint: str | None = None
                 ) -> LmqCompileError:
        span = where if isinstance(where, Span) else where.span
        return LmqCompileError(message, span, self.source, hint)

    # ------------------------------------------------------------ statements

    def assert_stmt(self, meta: Meta, children: list) -> ir.Assert:
        return ir.Assert(children[0], children[1], span=self._span(meta))

    def annassign(self, meta: Meta, children: list) -> ir.Stmt:
        name, annotation, value = children
        span = self._span(meta)
        stmt: ir.Stmt = ir.Pass(span=span) if value is None else ir.Assign(
            (ir.Name(str(name), span=self._span(name)),), value, span=span)
        self._annotations[id(stmt)] = (str(name), annotation, value)
        return stmt

    def lambda_expr(self, meta: Meta, children: list) -> ir.Lambda:
        params, body = children
        return ir.Lambda(params or (), body, span=self._span(meta))

    def lambda_params(self, meta: Meta, children: list) -> tuple[ir.Param, ...]:
        return self._unique(tuple(ir.Param(str(name), span=self._span(name))
                                  for name in children))

    def docstring(self, meta: Meta, children: list) -> _Docstring:
        return _Docstring(self.literals.pop(id(children[0])), self._span(meta))

    def indented_body(self, meta: Meta, children: list) -> ir.Program:
        return children[0]

    # ------------------------------------------------------------ def and class

    def async_mark(self, meta: Meta, children: list) -> bool:
        return True

    def parameter(self, meta: Meta, children: list) -> ir.Param:
        name, _annotation, default = children
        return ir.Param(str(name), default, span=self._span(meta))

    def parameters(self, meta: Meta, children: list) -> tuple[ir.Param, ...]:
        params = self._unique(tuple(children))
        for before, after in zip(params, params[1:]):
            if before.default is not None and after.default is None:
                raise self._syntax_error("a parameter without a default follows one with a "
                                         "default", after)
        return params

    def _unique(self, params: tuple[ir.Param, ...]) -> tuple[ir.Param, ...]:
        for index, param in enumerate(params):
            if any(p.name == param.name for p in params[:index]):
                raise self._syntax_error(f"duplicate parameter '{param.name}'", param)
        return params

    def funcdef(self, meta: Meta, children: list) -> _Function:
        is_async, name, params, _returns, suite = children
        docstring, body = _split_docstring(suite)
        return _Function(str(name), params or (), body, docstring, bool(is_async),
                         self._span(meta))

    def classdef(self, meta: Meta, children: list) -> _Class:
        name, arguments, suite = children
        docstring, body = _split_docstring(suite)
        return _Class(str(name), arguments is not None, body, docstring, self._span(meta))

    def decorator_line(self, meta: Meta, children: list) -> _Decorator:
        name, arguments = children
        return _Decorator(name, arguments is not None, self._span(meta))

    def definition(self, meta: Meta, children: list) -> ir.Stmt:
        *decorators, target = children
        names = [d.name for d in decorators]
        for decorator in decorators:
            problem = UNSUPPORTED_DECORATORS.get(decorator.name)
            if problem is not None:
                raise self._compile(f"'@{decorator.name}': {problem}", decorator.span)
        if isinstance(target, _Class):
            return self._record(target, decorators)
        if names == [QUERY_DECORATOR]:
            return self._query(target, decorators[0])
        if decorators:
            raise self._compile(
                f"the decorator '@{names[0]}' is not available on a def in lmq programs",
                decorators[0].span, "a def is a plain function; @lmql.query makes its "
                "docstring a nested query; decorators of holes are written [@f NAME]")
        if target.is_async:
            raise self._compile("'async def' is not available in lmq programs", target.span,
                                "functions run to completion (drop 'async'); an "
                                "@lmql.query function may be async")
        return ir.FunctionDef(target.name, target.params, target.body, span=target.span)

    def _query(self, function: _Function, decorator: _Decorator) -> ir.QueryDef:
        if decorator.called:
            raise self._compile("'@lmql.query(...)' takes no options inside a program",
                                decorator.span, "a nested query runs with the model and "
                                "decoder of the program that calls it: write @lmql.query")
        if function.docstring is None or function.body:
            raise self._compile(f"the @lmql.query function '{function.name}' must hold its "
                                "program as its docstring, and nothing else", function.span,
                                "def f(x):\n    '''lmql\n    \"...[A]\"\n    '''")
        program = self._docstring_program(function.docstring)
        if program.distribution is not None:
            raise self._compile("a nested query cannot have a distribution clause",
                                program.distribution)
        defaults = tuple(ir.Keyword(p.name, p.default, span=p.span)
                         for p in function.params if p.default is not None)
        return ir.QueryDef(function.name, tuple(p.name for p in function.params),
                           with_program_where(program.body, program.where), defaults,
                           span=function.span)

    def _docstring_program(self, docstring: _Docstring) -> ir.Program:
        if len(docstring.tokens) != 1:
            raise self._compile("the program of an @lmql.query function is one string",
                                docstring.span)
        token = docstring.tokens[0]
        prefix, _, start, end = literal_parts(str(token))
        if "f" in prefix:
            raise self._syntax_error("the program of an @lmql.query function cannot be an "
                                     "f-string", token)
        base = self.offset + (token.start_pos or 0)
        marker = _MARKER.match(self.source.text, base + start, base + end)
        begin = marker.end() if marker is not None else base + start
        tree = parse_region(self.source, begin, base + end)
        mark_docstrings(tree)
        return transform(type(self)(self.source), tree)  # type: ignore[call-arg]

    def _record(self, cls: _Class, decorators: list[_Decorator]) -> ir.RecordDef:
        names = [d.name for d in decorators]
        if not any(name in RECORD_DECORATORS for name in names) or cls.has_bases:
            raise self._compile(
                f"classes are not available in lmq programs ('{cls.name}')", cls.span,
                "a @dataclass class of typed fields (name: str) is a record type, which "
                "a hole can be: [P: " + cls.name + "]")
        if len(decorators) > 1:
            raise self._compile("a record takes only the @dataclass decorator",
                                decorators[1].span)
        fields: list[ir.RecordField] = []
        for stmt in cls.body:
            annotated = self._annotations.get(id(stmt))
            if annotated is None:
                if isinstance(stmt, ir.Pass):
                    continue
                raise self._compile(f"the record '{cls.name}' can only hold typed fields "
                                    "(name: type = default)", stmt,
                                    "methods and other statements are not available in "
                                    "records")
            name, annotation, default = annotated
            if any(f.name == name for f in fields):
                raise self._compile(f"field '{name}' appears twice", stmt)
            if fields and fields[-1].default is not None and default is None:
                raise self._compile(f"field '{name}' without a default follows a field "
                                    "with one", stmt)
            fields.append(ir.RecordField(name, self._field_type(annotation), default,
                                         span=stmt.span))
        return ir.RecordDef(cls.name, tuple(fields), span=cls.span)

    def _field_type(self, expr: ir.Expr) -> ir.FieldType:
        """A field's annotation: str, int, float, bool, list[T] or a record's name."""
        dotted = _dotted(expr)
        if dotted in FIELD_TYPES:
            return ir.FieldType(dotted, span=expr.span)
        if isinstance(expr, ir.Subscript) and _dotted(expr.value) in LIST_TYPES:
            return ir.FieldType("list", self._field_type(expr.index), span=expr.span)
        if dotted in LIST_TYPES:
            raise self._compile("a list field names its item type: list[str]", expr)
        if isinstance(expr, ir.Const) and isinstance(expr.value, str) and \
                expr.value.isidentifier():
            return ir.FieldType(expr.value, span=expr.span)  # a forward reference
        if isinstance(expr, ir.Name):
            return ir.FieldType(expr.id, span=expr.span)  # a record (checked later)
        raise self._compile("unsupported field type", expr, "field types are str, int, "
                            "float, bool, list[T] and records defined before")


def _split_docstring(suite: tuple[Any, ...]) -> tuple[_Docstring | None, tuple[Any, ...]]:
    if suite and isinstance(suite[0], _Docstring):
        return suite[0], tuple(suite[1:])
    return None, tuple(suite)


def _dotted(expr: ir.Expr) -> str:
    """``a.b.c`` of a name or attribute chain, else ""."""
    if isinstance(expr, ir.Name):
        return expr.id
    if isinstance(expr, ir.Attribute):
        inner = _dotted(expr.value)
        return f"{inner}.{expr.attr}" if inner else ""
    return ""
