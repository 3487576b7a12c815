"""A deterministic, readable rendering of IR trees, for debugging and golden tests.

Statements, prompt parts and constraints are one node per line, indented by two spaces
per level, each followed by its span (``@line:column-end_line:end_column``); expressions
are written on one line as Python-like text with every operation parenthesized, so the
tree's grouping is visible. ``pretty(node, spans=False)`` leaves the spans out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmq import ir
from lmq.errors import Span


def pretty(node: Any, spans: bool = True) -> str:
    """Render an IR node (a program, statement, part, constraint or expression)."""
    printer = _Printer(spans)
    printer.node(node, 0)
    return "\n".join(printer.lines) + "\n"


def expression(expr: Any) -> str:
    """One-line text of an expression (also accepts None and plain strings)."""
    if expr is None:
        return "None"
    if isinstance(expr, str):
        return repr(expr)
    return _EXPRESSIONS[type(expr)](expr)


def _args(args: tuple, keywords: tuple = ()) -> str:
    items = [expression(a) for a in args] + [f"{k.name}={expression(k.value)}" for k in keywords]
    return ", ".join(items)


def _comprehension(expr: ir.Comprehension) -> str:
    head = expression(expr.elt)
    if expr.kind == "dict":
        head += f": {expression(expr.value)}"
    clauses = "".join(
        f" for {expression(g.target)} in {expression(g.iter)}"
        + "".join(f" if {expression(c)}" for c in g.ifs) for g in expr.generators)
    opening, closing = {"list": ("[", "]"), "set": ("{", "}"), "dict": ("{", "}"),
                        "gen": ("(", ")")}[expr.kind]
    return f"{opening}{head}{clauses}{closing}"


def _tuple(expr: ir.TupleExpr) -> str:
    if len(expr.elts) == 1:
        return f"({expression(expr.elts[0])},)"
    return f"({_args(expr.elts)})"


def _fstring(expr: ir.FString) -> str:
    return "FString(" + ", ".join(
        repr(p) if isinstance(p, str) else _interp(p) for p in expr.parts) + ")"


def _interp(part: ir.Interp) -> str:
    spec = f":{part.spec}" if part.spec is not None else ""
    return "{" + expression(part.value) + spec + "}"


def _slice(expr: ir.Slice) -> str:
    text = ":".join("" if p is None else expression(p) for p in (expr.lower, expr.upper))
    return text + (f":{expression(expr.step)}" if expr.step is not None else "")


_EXPRESSIONS: dict[type, Callable[[Any], str]] = {
    ir.Name: lambda e: e.id,
    ir.Const: lambda e: repr(e.value),
    ir.FString: _fstring,
    ir.ListExpr: lambda e: f"[{_args(e.elts)}]",
    ir.TupleExpr: _tuple,
    ir.SetExpr: lambda e: "{" + _args(e.elts) + "}",
    ir.DictExpr: lambda e: "{" + ", ".join(
        f"{expression(k)}: {expression(v)}" for k, v in zip(e.keys, e.values)) + "}",
    ir.Comprehension: _comprehension,
    ir.IfExp: lambda e: f"({expression(e.body)} if {expression(e.test)} "
                        f"else {expression(e.orelse)})",
    ir.BinOp: lambda e: f"({expression(e.left)} {e.op} {expression(e.right)})",
    ir.UnaryOp: lambda e: f"({e.op}{' ' if e.op == 'not' else ''}{expression(e.operand)})",
    ir.BoolOp: lambda e: "(" + f" {e.op} ".join(expression(v) for v in e.values) + ")",
    ir.Compare: lambda e: "(" + expression(e.left) + "".join(
        f" {op} {expression(c)}" for op, c in zip(e.ops, e.comparators)) + ")",
    ir.Call: lambda e: f"{expression(e.func)}({_args(e.args, e.keywords)})",
    ir.Attribute: lambda e: f"{expression(e.value)}.{e.attr}",
    ir.Subscript: lambda e: f"{expression(e.value)}[{expression(e.index)}]",
    ir.Slice: _slice,
    ir.Generator: lambda e: f"for {expression(e.target)} in {expression(e.iter)}",
    ir.Keyword: lambda e: f"{e.name}={expression(e.value)}",
    ir.Interp: _interp,
}


class _Printer:
    def __init__(self, spans: bool) -> None:
        self.spans = spans
        self.lines: list[str] = []
        self.dispatch: dict[type, Callable[[Any, int], None]] = {
            ir.Program: self.program, ir.Prompt: self.prompt, ir.If: self.if_,
            ir.For: self.for_, ir.While: self.while_, ir.QueryDef: self.query,
            ir.And: self.junction, ir.Or: self.junction, ir.Not: self.not_,
        }

    def line(self, depth: int, text: str, span: Span | None = None) -> None:
        suffix = ""
        if self.spans and span is not None:
            suffix = f"  @{span.line}:{span.column}-{span.end_line}:{span.end_column}"
        self.lines.append("  " * depth + text + suffix)

    def node(self, node: Any, depth: int) -> None:
        handler = self.dispatch.get(type(node))
        if handler is not None:
            handler(node, depth)
        else:
            self.line(depth, _SIMPLE[type(node)](node) if type(node) in _SIMPLE
                      else expression(node), getattr(node, "span", None))

    def block(self, title: str, stmts: tuple, depth: int) -> None:
        self.line(depth, title)
        for stmt in stmts:
            self.node(stmt, depth + 1)

    def program(self, node: ir.Program, depth: int) -> None:
        self.line(depth, "Program")
        if node.decoder is not None:
            self.line(depth + 1, f"decoder: {_decoder(node.decoder)}", node.decoder.span)
        self.block("body:", node.body, depth + 1)
        if node.model is not None:
            self.line(depth + 1, f"from: {expression(node.model)}", node.model.span)
        if node.where is not None:
            self.line(depth + 1, "where:")
            self.node(node.where, depth + 2)
        if node.distribution is not None:
            d = node.distribution
            self.line(depth + 1, f"distribution: {d.hole} in {expression(d.values)}", d.span)
        if node.prefer is not None:
            self.line(depth + 1, f"prefer: {_prefer(node.prefer)}", node.prefer.span)

    def prompt(self, node: ir.Prompt, depth: int) -> None:
        self.line(depth, "Prompt", node.span)
        for part in node.parts:
            self.node(part, depth + 1)
        if node.model is not None:
            self.line(depth + 1, f"from: {expression(node.model)}", node.model.span)
        if node.where is not None:
            self.line(depth + 1, "where:")
            self.node(node.where, depth + 2)
        if node.prefer is not None:
            self.line(depth + 1, f"prefer: {_prefer(node.prefer)}", node.prefer.span)

    def if_(self, node: ir.If, depth: int) -> None:
        self.line(depth, f"If {expression(node.test)}", node.span)
        self.block("then:", node.body, depth + 1)
        if node.orelse:
            self.block("else:", node.orelse, depth + 1)

    def for_(self, node: ir.For, depth: int) -> None:
        self.line(depth, f"For {expression(node.target)} in {expression(node.iter)}",
                  node.span)
        for stmt in node.body:
            self.node(stmt, depth + 1)

    def while_(self, node: ir.While, depth: int) -> None:
        self.line(depth, f"While {expression(node.test)}", node.span)
        for stmt in node.body:
            self.node(stmt, depth + 1)

    def query(self, node: ir.QueryDef, depth: int) -> None:
        self.line(depth, f"QueryDef {node.name}({', '.join(node.params)})", node.span)
        for stmt in node.body:
            self.node(stmt, depth + 1)

    def junction(self, node: ir.And | ir.Or, depth: int) -> None:
        self.line(depth, type(node).__name__, node.span)
        for item in node.items:
            self.node(item, depth + 1)

    def not_(self, node: ir.Not, depth: int) -> None:
        self.line(depth, "Not", node.span)
        self.node(node.item, depth + 1)


def _decoder(node: ir.Decoder) -> str:
    arguments = _args(node.args, node.keywords)
    return f"{node.name}({arguments})" if arguments else node.name


def _prefer(node: ir.Prefer) -> str:
    options = f" with {_args((), node.options)}" if node.options else ""
    return " > ".join(node.order) + options


def _hole(node: ir.Hole) -> str:
    text = f"Hole {node.name}"
    if node.type is not None:
        text += f" type={node.type}"
    if node.regex is not None:
        text += f" regex={node.regex!r}"
    if node.query is not None:
        text += f" query={expression(node.query)}"
    if node.decorators:
        text += " decorators=[" + ", ".join(expression(d) for d in node.decorators) + "]"
    return text


def _atom(node: ir.Atom) -> str:
    text = f"Atom {node.kind} {node.hole}"
    if node.op is not None:
        text += f" {node.op}"
    if node.args or node.keywords:
        text += f" ({_args(node.args, node.keywords)})"
    return text


def _import(node: ir.Import) -> str:
    names = ", ".join(name if name == alias else f"{name} as {alias}"
                      for name, alias in node.names)
    return f"Import {node.module}" + (f": {names}" if names else "")


_SIMPLE: dict[type, Callable[[Any], str]] = {
    ir.Text: lambda n: f"Text {n.text!r}",
    ir.Interp: lambda n: f"Interp {_interp(n)}",
    ir.Hole: _hole,
    ir.Tag: lambda n: f"Tag {n.name}",
    ir.Atom: _atom,
    ir.Assign: lambda n: "Assign " + " = ".join(
        expression(t) for t in n.targets) + f" = {expression(n.value)}",
    ir.AugAssign: lambda n: f"AugAssign {expression(n.target)} {n.op}= {expression(n.value)}",
    ir.ExprStmt: lambda n: f"ExprStmt {expression(n.value)}",
    ir.Break: lambda n: "Break",
    ir.Continue: lambda n: "Continue",
    ir.Pass: lambda n: "Pass",
    ir.Return: lambda n: "Return" + ("" if n.value is None else f" {expression(n.value)}"),
    ir.Import: _import,
    ir.Decoder: lambda n: f"Decoder {_decoder(n)}",
    ir.Distribution: lambda n: f"Distribution {n.hole} in {expression(n.values)}",
    ir.Prefer: lambda n: f"Prefer {_prefer(n)}",
}
