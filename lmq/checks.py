"""The checks that run before any model loads, and the compile entry point.

:func:`compile_source` parses, lowers and checks a program text and returns a
:class:`CheckedProgram`. The checks (LANGUAGE.md sections 3 to 7):

* names: a free name of the program is a parameter, or a tool when it is only ever
  called; a query body sees its parameters, its own variables and holes, the program's
  names, imports, builtins and tools, and nothing else;
* the sandbox: imports only from ``lmq.stdlib``, of names its modules export
  (:mod:`lmq.imports`), only the allowed builtins, no name or attribute starting with
  ``_``, no ``format``/``format_map``;
* constraints: argument types of each atom where they are constants, regular
  expressions, the distribution variable, ``break``/``continue`` inside loops, calls of
  nested queries with the right arguments;
* the decoder clause (:mod:`lmq.decoders`).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lmq import checks_defs, ir
from lmq.checks_atoms import check_atom, check_pattern
from lmq.decoders import DecoderSpec, NotConstant, constant_value, decoder_spec
from lmq.emptiness import check_not_empty
from lmq.errors import (
    LmqCompileError,
    LmqError,
    LmqLimitError,
    LmqSandboxError,
    LmqSyntaxError,
    Source,
    Span,
    did_you_mean,
)
from lmq.lower import lower_source, program_holes
from lmq.names import bound_names, children, query_defs

# LANGUAGE.md section 3; lmq.runtime.interpreter.sandbox provides them
ALLOWED_BUILTINS = frozenset((
    "len range str int float bool list dict tuple set enumerate zip min max sum sorted "
    "reversed abs round any all print repr isinstance").split())
FORBIDDEN_BUILTINS = frozenset(dir(builtins)) - ALLOWED_BUILTINS
FORBIDDEN_ATTRIBUTES = ("format", "format_map")


@dataclass(frozen=True)
class CheckedProgram:
    """A program that passed every check, with what a caller needs to run it.

    ``params`` and ``tools`` are the free names in order of first appearance (``tools``:
    names that are only ever called), ``uses`` the span of each one's first use;
    ``holes`` the top-level program's hole names in order; ``queries`` the top-level query
    definitions; ``imports`` maps each imported alias to ``(module, name)``.
    """

    program: ir.Program
    decoder: DecoderSpec
    params: tuple[str, ...]
    tools: tuple[str, ...]
    holes: tuple[str, ...]
    queries: Mapping[str, ir.QueryDef]
    imports: Mapping[str, tuple[str, str]]
    uses: Mapping[str, Span] = field(default_factory=dict)


def compile_source(text: str, filename: str = "<string>") -> CheckedProgram:
    """Parse, lower and check a program; raises an :class:`LmqError` with a span."""
    source = Source(text, filename)
    try:
        return check(lower_source(source))
    except LmqError as error:
        raise error.with_source(source) from None
    except RecursionError:
        raise LmqSyntaxError("the program is nested too deeply", source.span(0, 1),
                             source) from None
    except MemoryError:  # the last line of defence; the compile budget should come first
        raise LmqLimitError("ran out of memory while compiling the program", source.span(0, 1),
                            source) from None


def check(program: ir.Program) -> CheckedProgram:
    """Check a lowered program; an empty conjunction of constant regular constraints is a
    compile error (LANGUAGE.md section 4)."""
    checked = _Checker(program).run()
    check_not_empty(program)
    return checked


@dataclass
class _Scope:
    name: str | None  # the query's or function's name; None for the program
    bound: set[str]
    queries: dict[str, ir.QueryDef]
    loops: int = 0
    kind: str = "query"  # "program", "query" or "function"


class _Checker:
    def __init__(self, program: ir.Program) -> None:
        self.program = program
        self.source = program.source
        self.top = _Scope(None, bound_names(program.body), {}, kind="program")
        self.records: set[str] = set()  # record types defined so far
        self.free: dict[str, bool] = {}  # name -> only ever called (insertion = first use)
        self.uses: dict[str, Span] = {}  # free name -> its first use
        self.pending: list[tuple[ir.Name, _Scope]] = []  # unknown names inside queries
        self.comprehension: list[set[str]] = []
        self.imports: dict[str, tuple[str, str]] = {}
        self.statements: dict[type, Callable[[Any, _Scope], None]] = {
            ir.Prompt: self.prompt, ir.Assign: self.assign, ir.AugAssign: self.augassign,
            ir.For: self.for_, ir.While: self.loop, ir.If: self.if_,
            ir.Break: self.jump, ir.Continue: self.jump, ir.QueryDef: self.query,
            ir.Import: lambda stmt, scope: checks_defs.import_(self, stmt, scope),
            ir.FunctionDef: lambda stmt, scope: checks_defs.function_def(self, stmt, scope),
            ir.RecordDef: lambda stmt, scope: checks_defs.record_def(self, stmt, scope),
        }

    def error(self, message: str, where: ir.Node | Span, hint: str | None = None,
              sandbox: bool = False) -> LmqCompileError:
        span = where if isinstance(where, Span) else where.span
        kind = LmqSandboxError if sandbox else LmqCompileError
        return kind(message, span, self.source, hint)

    def run(self) -> CheckedProgram:
        program = self.program
        decoder = decoder_spec(program.decoder)
        for query in query_defs(program.body):
            if query.name in self.top.queries:
                raise self.error(f"query '{query.name}' is defined twice", query)
            self.top.queries[query.name] = query
        self.block(program.body, self.top)
        for expr in (program.model,):
            if expr is not None:
                self.expr(expr, self.top)
        if program.where is not None:
            self.constraint(program.where, self.top)
        holes = program_holes(program.body)
        if program.distribution is not None:
            self.distribution(program.distribution, holes)
        if program.prefer is not None:
            for option in program.prefer.options:
                self.expr(option.value, self.top)
        for name, scope in self.pending:
            if name.id not in self.free and name.id not in self.top.bound:
                raise self.error(f"unknown name '{name.id}' in {scope.kind} '{scope.name}'",
                                 name, did_you_mean(name.id, self.visible(scope)))
        params = tuple(name for name, called in self.free.items() if not called)
        tools = tuple(name for name, called in self.free.items() if called)
        return CheckedProgram(program, decoder, params, tools, tuple(dict.fromkeys(holes)),
                              MappingProxyType(dict(self.top.queries)),
                              MappingProxyType(dict(self.imports)),
                              MappingProxyType(dict(self.uses)))

    # ------------------------------------------------------------ statements

    def block(self, stmts: tuple[ir.Stmt, ...], scope: _Scope) -> None:
        for stmt in stmts:
            handler = self.statements.get(type(stmt))
            if handler is not None:
                handler(stmt, scope)
            else:
                for child in children(stmt):
                    self.expr(child, scope)

    def prompt(self, stmt: ir.Prompt, scope: _Scope) -> None:
        checks_defs.not_in_function(self, stmt, scope)
        for part in stmt.parts:
            if isinstance(part, ir.Interp):
                self.expr(part.value, scope)
            elif isinstance(part, ir.Hole):
                self.hole(part, scope)
        if stmt.model is not None:
            self.expr(stmt.model, scope)
        if stmt.where is not None:
            self.constraint(stmt.where, scope)
        if stmt.prefer is not None:
            for option in stmt.prefer.options:
                self.expr(option.value, scope)

    def hole(self, hole: ir.Hole, scope: _Scope) -> None:
        self.private(hole.name, hole)
        for decorator in hole.decorators:
            if isinstance(decorator, ir.Name):
                self.name(decorator, scope, called=True)
            else:
                self.expr(decorator, scope)
        if hole.regex is not None:
            text = self.source.text[hole.span.start:hole.span.end]
            match = re.search(r":\s*[rR]['\"]", text)
            check_pattern(self, hole.regex, hole.span.start + (match.end() if match else 0),
                          hole)
        query = hole.query
        if isinstance(query, ir.Name) and query.id in self.records:
            return  # a record type: the hole decodes JSON of its fields
        if query is not None:
            function = query.func if isinstance(query, ir.Call) else query
            if isinstance(function, ir.Name) and function.id not in self.visiblequery_defs(scope):
                name = function.id
                self.private(name, function)
                if name in ALLOWED_BUILTINS or name in FORBIDDEN_BUILTINS:
                    raise self.error(f"'{name}' is not a hole type or a query", function,
                                     "the hole types are int, float, bool, str and "
                                     "@dataclass records")
                hint = did_you_mean(name, self.visiblequery_defs(scope))
                if hint is not None and not self.resolves(name, scope):
                    raise self.error(f"unknown query '{name}'", function, hint)
            if isinstance(query, ir.Name):
                self.name(query, scope, called=True)
                self.query_call(query, (), (), scope)
            elif isinstance(query, ir.Call):
                self.call(query, scope, in_hole=True)

    def assign(self, stmt: ir.Assign, scope: _Scope) -> None:
        self.expr(stmt.value, scope)
        for target in stmt.targets:
            self.target(target, scope)

    def augassign(self, stmt: ir.AugAssign, scope: _Scope) -> None:
        self.expr(stmt.target, scope)  # read before it is written
        self.expr(stmt.value, scope)

    def target(self, target: ir.Target, scope: _Scope) -> None:
        if isinstance(target, ir.Name):
            self.private(target.id, target)
        elif isinstance(target, ir.TupleExpr):
            for item in target.elts:
                self.target(item, scope)  # type: ignore[arg-type]
        else:
            self.expr(target, scope)

    def if_(self, stmt: ir.If, scope: _Scope) -> None:
        self.expr(stmt.test, scope)
        self.block(stmt.body, scope)
        self.block(stmt.orelse, scope)

    def for_(self, stmt: ir.For, scope: _Scope) -> None:
        self.expr(stmt.iter, scope)
        self.target(stmt.target, scope)
        self.loop(stmt, scope)

    def loop(self, stmt: ir.For | ir.While, scope: _Scope) -> None:
        if isinstance(stmt, ir.While):
            self.expr(stmt.test, scope)
        scope.loops += 1
        self.block(stmt.body, scope)
        scope.loops -= 1

    def jump(self, stmt: ir.Break | ir.Continue, scope: _Scope) -> None:
        if scope.loops == 0:
            word = "break" if isinstance(stmt, ir.Break) else "continue"
            raise self.error(f"'{word}' outside a loop", stmt)

    def query(self, stmt: ir.QueryDef, scope: _Scope) -> None:
        self.private(stmt.name, stmt)
        for param in stmt.params:
            self.private(param, stmt)
        inner = _Scope(stmt.name, set(stmt.params) | bound_names(stmt.body),
                       {q.name: q for q in query_defs(stmt.body)})
        self.block(stmt.body, inner)

    # ------------------------------------------------------------ expressions

    def private(self, name: str, where: ir.Node) -> None:
        if name.startswith("_"):
            raise self.error(f"'{name}' is not available in lmq programs (sandbox)", where,
                             sandbox=True)

    def visiblequery_defs(self, scope: _Scope) -> dict[str, ir.QueryDef]:
        return {**self.top.queries, **scope.queries}

    def resolves(self, name: str, scope: _Scope) -> bool:
        return (any(name in names for names in self.comprehension) or name in scope.bound
                or name in self.top.bound or name in ALLOWED_BUILTINS)

    def visible(self, scope: _Scope) -> set[str]:
        return scope.bound | self.top.bound | set(self.free) | ALLOWED_BUILTINS

    def name(self, node: ir.Name, scope: _Scope, called: bool = False) -> None:
        name = node.id
        self.private(name, node)
        if self.resolves(name, scope):
            return
        if name in FORBIDDEN_BUILTINS:
            raise self.error(f"'{name}' is not available in lmq programs (sandbox)", node,
                             sandbox=True)
        if scope is not self.top and not called:
            self.pending.append((node, scope))
            return
        self.free[name] = self.free.get(name, True) and called
        self.uses.setdefault(name, node.span)

    def expr(self, node: Any, scope: _Scope) -> None:
        if isinstance(node, ir.Name):
            self.name(node, scope)
        elif isinstance(node, ir.Call):
            self.call(node, scope)
        elif isinstance(node, ir.Attribute):
            if node.attr.startswith("_"):
                raise self.error(f"'{node.attr}' is not available in lmq programs (sandbox)",
                                 node, sandbox=True)
            if node.attr in FORBIDDEN_ATTRIBUTES:
                raise self.error(f"'.{node.attr}' is not available in lmq programs (sandbox)",
                                 node, "use an f-string or {expr:spec} to format",
                                 sandbox=True)
            if not checks_defs.attribute(self, node, scope):
                self.expr(node.value, scope)
        elif isinstance(node, ir.Lambda):
            checks_defs.lambda_(self, node, scope)
        elif isinstance(node, ir.Comprehension):
            self.comprehension_(node, scope)
        else:
            for child in children(node):
                self.expr(child, scope)

    def call(self, node: ir.Call, scope: _Scope, in_hole: bool = False) -> None:
        """A call; of a query the program defines only as a hole's query."""
        if isinstance(node.func, ir.Name):
            self.name(node.func, scope, called=True)
            if self.query_call(node.func, node.args, node.keywords, scope) and not in_hole:
                raise self.error(f"the query '{node.func.id}' is called in an expression",
                                 node, f"a nested query fills a hole: "
                                 f"\"[X: {node.func.id}(...)]\"")
        else:
            self.expr(node.func, scope)
        for argument in node.args + tuple(k.value for k in node.keywords):
            self.expr(argument, scope)

    def comprehension_(self, node: ir.Comprehension, scope: _Scope) -> None:
        self.expr(node.generators[0].iter, scope)
        local: set[str] = set()
        self.comprehension.append(local)
        for index, generator in enumerate(node.generators):
            if index:
                self.expr(generator.iter, scope)
            local |= bound_names((ir.Assign((generator.target,), ir.Const(None)),))
            self.target(generator.target, scope)
            for condition in generator.ifs:
                self.expr(condition, scope)
        self.expr(node.elt, scope)
        if node.value is not None:
            self.expr(node.value, scope)
        self.comprehension.pop()

    def query_call(self, function: ir.Name, args: tuple, keywords: tuple,
                   scope: _Scope) -> bool:
        """Arguments of a call of a query the program defines; whether it is one."""
        query = self.visiblequery_defs(scope).get(function.id)
        if query is None or function.id in scope.bound - set(self.visiblequery_defs(scope)):
            return False
        params = query.params
        given = list(params[:len(args)])
        where = function if not args and not keywords else (args + keywords)[-1]
        if len(args) > len(params):
            raise self.error(f"query '{query.name}' takes {len(params)} argument"
                             f"{'s' * (len(params) != 1)}, got {len(args)}", args[len(params)])
        for keyword in keywords:
            if keyword.name not in params:
                raise self.error(f"query '{query.name}' has no parameter '{keyword.name}'",
                                 keyword, did_you_mean(keyword.name, params))
            if keyword.name in given:
                raise self.error(f"argument '{keyword.name}' given twice", keyword)
            given.append(keyword.name)
        missing = [p for p in params if p not in given
                   and all(d.name != p for d in query.defaults)]
        if missing:
            raise self.error(f"query '{query.name}' needs the argument"
                             f"{'s' * (len(missing) > 1)} {', '.join(missing)}", where)
        return True

    # ------------------------------------------------------------ constraints

    def constraint(self, node: ir.Constraint, scope: _Scope) -> None:
        if isinstance(node, ir.Atom):
            self.atom(node, scope)
        else:
            for child in children(node):
                self.constraint(child, scope)  # type: ignore[arg-type]

    def atom(self, atom: ir.Atom, scope: _Scope) -> None:
        if atom.kind == "pred":
            self.name(ir.Name(atom.op or "", span=atom.span), scope, called=True)
        for expr in atom.args + tuple(k.value for k in atom.keywords):
            self.expr(expr, scope)
        check_atom(self, atom)

    def distribution(self, node: ir.Distribution, holes: list[str]) -> None:
        if not holes or holes[-1] != node.hole:
            last = f" (the last hole is '{holes[-1]}')" if holes else " (it has no holes)"
            name = self.source.span(node.span.start, node.span.start + len(node.hole))
            raise self.error(f"the distribution variable '{node.hole}' must be the program's "
                             f"last hole{last}", name)
        self.expr(node.values, self.top)
        try:
            values = constant_value(node.values)
        except NotConstant:
            return
        if not isinstance(values, (list, tuple)) or not values or \
                not all(isinstance(v, str) for v in values):
            raise self.error("distribution values must be a non-empty list of strings",
                             node.values)
