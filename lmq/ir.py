"""The lmq intermediate representation.

A program is a tree of frozen dataclasses; every node carries the :class:`Span` of the
source text it came from. The grammar (``grammar/lmq.lark``) is lowered to these nodes by
one Lark ``Transformer`` (``lmq.lower``); later passes (``lmq.checks``) only read them.

    Program  = decoder: Decoder?  body: Stmt*  model: Expr?  where: Constraint?
               distribution: Distribution?  prefer: Prefer?  source: Source

    Stmt     = Prompt(parts: Part*, where: Constraint?, model: Expr?, prefer: Prefer?,
                      distribution: Distribution?)
             | Assign(targets: Target+, value: Expr)      # a = b = v; targets may be tuples
             | AugAssign(target: Target, op: str, value: Expr)
             | ExprStmt(value: Expr)
             | If(test: Expr, body: Stmt*, orelse: Stmt*)  # elif chains nest in orelse
             | For(target: Target, iter: Expr, body: Stmt*)
             | While(test: Expr, body: Stmt*)
             | Break | Continue | Pass | Return(value: Expr?)
             | QueryDef(name: str, params: str*, body: Stmt*, defaults: Keyword*)
             | FunctionDef(name: str, params: Param*, body: Stmt*)   # def: no prompts
             | RecordDef(name: str, fields: RecordField*)   # @dataclass class
             | Assert(test: Expr, message: Expr?)
             | Import(module: str, names: (name, alias)*)   # lmq.stdlib.X, re, json, ...

    Part     = Text(text)                                  # escapes already resolved
             | Interp(value: Expr, spec: str?)             # {expr} / {expr:spec}
             | Hole(name, type: "int"|"float"|"bool"|None, regex: str?,
                    query: Expr?, decorators: Expr*)       # [@f NAME: type]
             | Tag(name)                                   # {:system} {:context} ...

    Expr     = Name(id) | Const(value) | FString(parts: (str | Interp)*)
             | ListExpr(elts) | TupleExpr(elts) | SetExpr(elts) | DictExpr(keys, values)
             | Comprehension(kind: "list"|"set"|"dict"|"gen", elt, value?, generators)
             | IfExp(test, body, orelse) | BinOp(op, left, right) | UnaryOp(op, operand)
             | BoolOp(op: "and"|"or", values) | Compare(left, ops, comparators)
             | Call(func, args, keywords: Keyword*) | Attribute(value, attr)
             | Subscript(value, index) | Slice(lower?, upper?, step?)
             | Lambda(params: Param*, body: Expr)

    Param    = (name, default: Expr?)
    RecordField = (name, type: FieldType, default: Expr?)
    FieldType = (name: "str"|"int"|"float"|"bool"|"list"|a record's name, item: FieldType?)

    Constraint = And(items) | Or(items) | Not(item) | Atom(kind, hole, op?, args, keywords)

Atom kinds are the keys of :data:`lmq.atoms.ATOMS` (LANGUAGE.md section 4), where each
entry documents its arguments: ``token_len`` and ``char_len`` (``op`` is the comparison,
``args == (n,)``), ``in`` (``X not in L`` is ``Not(Atom("in"))``), ``eq`` (``X == s``;
``!=`` is ``Not``), ``contains`` (``s in X``), the function atoms (``STOPS_AT`` is
``stops_at``, ...; keywords are options such as those of ``LABELS``) and ``pred`` (``op``
holds the predicate's name, ``args`` and ``keywords`` its arguments after the hole).
Argument expressions are evaluated when the hole starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from lmq.errors import Source, Span

NO_SPAN = Span(0, 0, 1, 1, 1, 1)


@dataclass(frozen=True)
class Node:
    span: Span = field(default=NO_SPAN, compare=False, repr=False, kw_only=True)


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Const(Node):
    value: Any


@dataclass(frozen=True)
class Interp(Node):
    value: Expr
    spec: str | None = None


@dataclass(frozen=True)
class FString(Node):
    parts: tuple[str | Interp, ...]


@dataclass(frozen=True)
class ListExpr(Node):
    elts: tuple[Expr, ...]


@dataclass(frozen=True)
class TupleExpr(Node):
    elts: tuple[Expr, ...]


@dataclass(frozen=True)
class SetExpr(Node):
    elts: tuple[Expr, ...]


@dataclass(frozen=True)
class DictExpr(Node):
    keys: tuple[Expr, ...]
    values: tuple[Expr, ...]


@dataclass(frozen=True)
class Generator(Node):
    """``for target in iter if cond...`` inside a comprehension."""

    target: Target
    iter: Expr
    ifs: tuple[Expr, ...] = ()


@dataclass(frozen=True)
class Comprehension(Node):
    kind: str  # "list" | "set" | "dict" | "gen"
    elt: Expr  # the key for dict comprehensions
    value: Expr | None
    generators: tuple[Generator, ...]


@dataclass(frozen=True)
class IfExp(Node):
    test: Expr
    body: Expr
    orelse: Expr


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / // % ** @ & | ^ << >>
    left: Expr
    right: Expr


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str  # "-" "+" "not" "~"
    operand: Expr


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    values: tuple[Expr, ...]


@dataclass(frozen=True)
class Compare(Node):
    left: Expr
    ops: tuple[str, ...]  # < <= == != > >= in "not in" is "is not"
    comparators: tuple[Expr, ...]


@dataclass(frozen=True)
class Keyword(Node):
    name: str
    value: Expr


@dataclass(frozen=True)
class Call(Node):
    func: Expr
    args: tuple[Expr, ...] = ()
    keywords: tuple[Keyword, ...] = ()


@dataclass(frozen=True)
class Attribute(Node):
    value: Expr
    attr: str


@dataclass(frozen=True)
class Subscript(Node):
    value: Expr
    index: Expr


@dataclass(frozen=True)
class Slice(Node):
    lower: Expr | None = None
    upper: Expr | None = None
    step: Expr | None = None


@dataclass(frozen=True)
class Param(Node):
    name: str
    default: Expr | None = None


@dataclass(frozen=True)
class Lambda(Node):
    params: tuple[Param, ...]
    body: Expr


Expr = Union[Name, Const, FString, ListExpr, TupleExpr, SetExpr, DictExpr, Comprehension,
             IfExp, BinOp, UnaryOp, BoolOp, Compare, Call, Attribute, Subscript, Slice,
             Lambda]
Target = Union[Name, TupleExpr, Subscript]


# ---------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Atom(Node):
    kind: str
    hole: str
    op: str | None = None
    args: tuple[Expr, ...] = ()
    keywords: tuple[Keyword, ...] = ()


@dataclass(frozen=True)
class And(Node):
    items: tuple[Constraint, ...]


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Constraint, ...]


@dataclass(frozen=True)
class Not(Node):
    item: Constraint


Constraint = Union[Atom, And, Or, Not]


# ---------------------------------------------------------------- prompt strings


@dataclass(frozen=True)
class Text(Node):
    text: str


@dataclass(frozen=True)
class Hole(Node):
    name: str
    type: str | None = None  # "int" | "float" | "bool"
    regex: str | None = None
    query: Expr | None = None  # Name or Call of a nested query / tool query
    decorators: tuple[Expr, ...] = ()


@dataclass(frozen=True)
class Tag(Node):
    name: str  # system user assistant instruction context


Part = Union[Text, Interp, Hole, Tag]


# ---------------------------------------------------------------- statements


@dataclass(frozen=True)
class Distribution(Node):
    hole: str
    values: Expr


@dataclass(frozen=True)
class Prefer(Node):
    order: tuple[str, ...]  # e.g. ("instruction", "context", "parametric")
    options: tuple[Keyword, ...] = ()  # with mode="cascade", strength=1.0


@dataclass(frozen=True)
class Prompt(Node):
    parts: tuple[Part, ...]
    where: Constraint | None = None
    model: Expr | None = None
    prefer: Prefer | None = None
    distribution: Distribution | None = None  # inline: a hole of this statement


@dataclass(frozen=True)
class Assign(Node):
    targets: tuple[Target, ...]
    value: Expr


@dataclass(frozen=True)
class AugAssign(Node):
    target: Target
    op: str  # the binary operator without "=": "+", "-", ...
    value: Expr


@dataclass(frozen=True)
class ExprStmt(Node):
    value: Expr


@dataclass(frozen=True)
class If(Node):
    test: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class For(Node):
    target: Target
    iter: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class While(Node):
    test: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Break(Node):
    pass


@dataclass(frozen=True)
class Continue(Node):
    pass


@dataclass(frozen=True)
class Pass(Node):
    pass


@dataclass(frozen=True)
class Return(Node):
    value: Expr | None = None


@dataclass(frozen=True)
class QueryDef(Node):
    name: str
    params: tuple[str, ...]
    body: tuple[Stmt, ...]
    defaults: tuple[Keyword, ...] = ()  # values of parameters a call may leave out


@dataclass(frozen=True)
class FunctionDef(Node):
    """``def NAME(params): body``: a function run by the interpreter; its body has no
    prompt statements (checked), so a call never waits for the model."""

    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class FieldType(Node):
    name: str  # str int float bool list, or the name of a record defined before
    item: FieldType | None = None  # the item type of a list


@dataclass(frozen=True)
class RecordField(Node):
    name: str
    type: FieldType
    default: Expr | None = None


@dataclass(frozen=True)
class RecordDef(Node):
    """``@dataclass class NAME: fields``: a record type, usable as a hole type."""

    name: str
    fields: tuple[RecordField, ...]


@dataclass(frozen=True)
class Assert(Node):
    test: Expr
    message: Expr | None = None


@dataclass(frozen=True)
class Import(Node):
    module: str
    names: tuple[tuple[str, str], ...]  # (name, alias); alias == name when absent
    alias: str | None = None  # ``import module [as alias]`` (names is empty)


Stmt = Union[Prompt, Assign, AugAssign, ExprStmt, If, For, While, Break, Continue, Pass,
             Return, QueryDef, FunctionDef, RecordDef, Assert, Import]


# ---------------------------------------------------------------- program


@dataclass(frozen=True)
class Decoder(Node):
    name: str  # argmax | sample | beam (unknown names are rejected by the checks)
    args: tuple[Expr, ...] = ()
    keywords: tuple[Keyword, ...] = ()


@dataclass(frozen=True)
class Program(Node):
    body: tuple[Stmt, ...]
    decoder: Decoder | None = None
    model: Expr | None = None
    where: Constraint | None = None
    distribution: Distribution | None = None
    prefer: Prefer | None = None
    source: Source = field(default=Source(""), compare=False, repr=False)
