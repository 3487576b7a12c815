"""Lowering of expressions and string literals: the expression half of the one
``Transformer`` of :mod:`lmq.lower` (one method per grammar rule).

Every node gets the span of its text: ``meta`` positions (Lark ``propagate_positions``)
plus ``offset``, the file position of the text that was parsed (non-zero when the tree is
the body of a string literal, parsed a second time).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import VisitError
from lark.tree import Meta

from lmq import ir
from lmq.errors import LmqSandboxError, LmqSyntaxError, Source, Span
from lmq.parser import parse_body

ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|N\{[^}\n]*\}"
                    r"|[0-7]{1,3}|[\s\S])")
SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"',
                  "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\n": ""}
PREFIX = re.compile(r"[rRfFuU]{0,2}")


def decode_escape(escape: str) -> str | None:
    """The character(s) an escape sequence stands for; None for an unknown ``\\N{...}``.
    An unknown escape such as ``\\d`` stays as written, as in Python."""
    body = escape[1:]
    if body in SIMPLE_ESCAPES:
        return SIMPLE_ESCAPES[body]
    if body == "\r\n":
        return ""
    if body[0] in "uUx" and len(body) > 1:
        return chr(int(body[1:], 16)) if int(body[1:], 16) <= 0x10FFFF else None
    if body[0].isdigit() and body[0] < "8":
        return chr(int(body, 8))
    if body.startswith("N{"):
        try:
            return unicodedata.lookup(body[2:-1])
        except KeyError:
            return None
    return escape


def literal_parts(text: str) -> tuple[str, str, int, int]:
    """``(prefix, quote, body_start, body_end)`` of a string literal token."""
    prefix = PREFIX.match(text).group()  # type: ignore[union-attr]
    quote = text[len(prefix):len(prefix) + 3]
    if quote not in ('"""', "'''"):
        quote = quote[0]
    return prefix.lower(), quote, len(prefix) + len(quote), len(text) - len(quote)


def decode_literal(text: str, raw: bool) -> tuple[str, list[int]]:
    """The value of a literal's body and, for each character of the value, its offset in
    ``text`` (used to point at a position inside a regex pattern)."""
    if raw:
        return text, list(range(len(text)))
    value: list[str] = []
    offsets: list[int] = []
    position = 0
    for match in ESCAPE.finditer(text):
        for index in range(position, match.start()):
            value.append(text[index])
            offsets.append(index)
        decoded = decode_escape(match.group())
        decoded = match.group() if decoded is None else decoded
        value.append(decoded)
        offsets.extend([match.start()] * len(decoded))
        position = match.end()
    for index in range(position, len(text)):
        value.append(text[index])
        offsets.append(index)
    return "".join(value), offsets


def transform(transformer: Transformer, tree: Tree) -> Any:
    """``transformer.transform(tree)``, re-raising an error of a callback as itself."""
    try:
        return transformer.transform(tree)
    except VisitError as error:
        raise error.orig_exc from None


@v_args(meta=True)
class ExpressionLowering(Transformer):
    """Expression rules of ``grammar/lmq.lark`` to :mod:`lmq.ir` expressions."""

    def __init__(self, source: Source, offset: int = 0) -> None:
        super().__init__(visit_tokens=False)
        self.source = source
        self.offset = offset
        # Tokens of each string-literal expression, by id, for the prompt statement that
        # re-reads them (the expression itself is a Const or FString).
        self.literals: dict[int, list[Token]] = {}

    # ------------------------------------------------------------ spans and errors

    def _span(self, item: Meta | Token | ir.Node | None) -> Span:
        if isinstance(item, ir.Node):
            return item.span
        if isinstance(item, Token):
            start = self.offset + (item.start_pos or 0)
            return self.source.span(start, self.offset + (item.end_pos or 0))
        if item is None or item.empty:
            return self.source.span(self.offset, self.offset)
        return self.source.span(self.offset + item.start_pos, self.offset + item.end_pos)

    def _syntax_error(self, message: str, where: Meta | Token | ir.Node | Span,
                     hint: str | None = None) -> LmqSyntaxError:
        span = where if isinstance(where, Span) else self._span(where)
        return LmqSyntaxError(message, span, self.source, hint)

    # ------------------------------------------------------------ atoms

    def name(self, meta: Meta, children: list) -> ir.Name:
        return ir.Name(str(children[0]), span=self._span(meta))

    def number(self, meta: Meta, children: list) -> ir.Const:
        token = children[0]
        text = token.replace("_", "")
        if token.type == "FLOAT_NUMBER":
            value: Any = float(text)
        elif token.type == "DEC_NUMBER":
            value = int(text)
        else:
            value = int(text, 0)
        return ir.Const(value, span=self._span(meta))

    def const_none(self, meta: Meta, children: list) -> ir.Const:
        return ir.Const(None, span=self._span(meta))

    def const_true(self, meta: Meta, children: list) -> ir.Const:
        return ir.Const(True, span=self._span(meta))

    def const_false(self, meta: Meta, children: list) -> ir.Const:
        return ir.Const(False, span=self._span(meta))

    def strings(self, meta: Meta, tokens: list[Token]) -> ir.Const | ir.FString:
        """Adjacent literals concatenate; any f-string makes the whole an FString."""
        parts: list[str | ir.Interp] = []
        for token in tokens:
            prefix, _, start, end = literal_parts(str(token))
            if "f" in prefix:
                body = self.offset + (token.start_pos or 0)
                parts.extend(self._fstring_parts(body + start, body + end, raw="r" in prefix))
            else:
                parts.append(decode_literal(token[start:end], raw="r" in prefix)[0])
        merged = _merge_text(parts)
        span = self._span(meta)
        if all(isinstance(part, str) for part in merged):
            result: ir.Const | ir.FString = ir.Const("".join(merged), span=span)  # type: ignore[arg-type]
        else:
            result = ir.FString(tuple(merged), span=span)
        self.literals[id(result)] = tokens
        return result

    def _fstring_parts(self, start: int, end: int, raw: bool) -> list[str | ir.Interp]:
        tree = parse_body(self.source, start, end, fstring=True)
        body = type(self)(self.source, start)
        body.raw = raw  # type: ignore[attr-defined]
        return list(transform(body, tree))

    def fstring_body(self, meta: Meta, children: list) -> tuple[str | ir.Interp, ...]:
        raw = getattr(self, "raw", False)
        parts: list[str | ir.Interp] = []
        for child in children:
            if isinstance(child, ir.Interp):
                parts.append(child)
            elif child.type == "ESCAPE" and not raw:
                parts.append(self._escape(child))
            elif child.type == "LITERAL_BRACE":
                parts.append(child[0])
            else:
                parts.append(str(child))
        return tuple(_merge_text(parts))

    def _escape(self, token: Token) -> str:
        decoded = decode_escape(str(token))
        if decoded is None:
            raise self._syntax_error("unknown Unicode character name", token)
        return decoded

    def interpolation(self, meta: Meta, children: list) -> ir.Interp:
        spec = children[1] if len(children) > 1 and children[1] is not None else None
        return ir.Interp(children[0], None if spec is None else str(spec), span=self._span(meta))

    fstring_interpolation = interpolation

    # ------------------------------------------------------------ collections

    def tuple_expr(self, meta: Meta, children: list) -> ir.TupleExpr:
        return ir.TupleExpr(tuple(c for c in children if c is not None), span=self._span(meta))

    def list_expr(self, meta: Meta, children: list) -> ir.ListExpr:
        return ir.ListExpr(tuple(c for c in children if c is not None), span=self._span(meta))

    def set_expr(self, meta: Meta, children: list) -> ir.SetExpr:
        return ir.SetExpr(tuple(c for c in children if c is not None), span=self._span(meta))

    def dict_expr(self, meta: Meta, children: list) -> ir.DictExpr:
        pairs = [c for c in children if c is not None]
        return ir.DictExpr(tuple(k for k, _ in pairs), tuple(v for _, v in pairs),
                           span=self._span(meta))

    def key_value(self, meta: Meta, children: list) -> tuple[ir.Expr, ir.Expr]:
        return children[0], children[1]

    def comprehension(self, meta: Meta, children: list) -> tuple:
        result, generators = children[0], tuple(children[1:])
        if isinstance(result, tuple):
            return result[0], result[1], generators
        return result, None, generators

    def comp_for(self, meta: Meta, children: list) -> ir.Generator:
        target, iterable, *conditions = children
        return ir.Generator(self._target(target), iterable, tuple(conditions),
                            span=self._span(meta))

    def comp_if(self, meta: Meta, children: list) -> ir.Expr:
        return children[0]

    def _comprehension(self, kind: str, meta: Meta, children: list) -> ir.Comprehension:
        elt, value, generators = children[0]
        return ir.Comprehension(kind, elt, value, generators, span=self._span(meta))

    def list_comprehension(self, meta: Meta, children: list) -> ir.Comprehension:
        return self._comprehension("list", meta, children)

    def set_comprehension(self, meta: Meta, children: list) -> ir.Comprehension:
        return self._comprehension("set", meta, children)

    def dict_comprehension(self, meta: Meta, children: list) -> ir.Comprehension:
        return self._comprehension("dict", meta, children)

    def generator(self, meta: Meta, children: list) -> ir.Comprehension:
        return self._comprehension("gen", meta, children)

    # ------------------------------------------------------------ operators

    def ifexp(self, meta: Meta, children: list) -> ir.IfExp:
        body, test, orelse = children
        return ir.IfExp(test, body, orelse, span=self._span(meta))

    def or_test(self, meta: Meta, children: list) -> ir.BoolOp:
        return ir.BoolOp("or", tuple(children), span=self._span(meta))

    def and_test(self, meta: Meta, children: list) -> ir.BoolOp:
        return ir.BoolOp("and", tuple(children), span=self._span(meta))

    def not_op(self, meta: Meta, children: list) -> ir.UnaryOp:
        return ir.UnaryOp("not", children[0], span=self._span(meta))

    def comparison(self, meta: Meta, children: list) -> ir.Compare:
        operators = tuple(" ".join(str(t) for t in op.children) for op in children[1::2])
        return ir.Compare(children[0], operators, tuple(children[2::2]), span=self._span(meta))

    def binary(self, meta: Meta, children: list) -> ir.Expr:
        result = children[0]
        for operator, operand in zip(children[1::2], children[2::2]):
            result = ir.BinOp(str(operator), result, operand,
                              span=result.span.join(operand.span))
        return result

    expr = xor_expr = and_expr = shift_expr = arith_expr = term = binary

    def unary(self, meta: Meta, children: list) -> ir.UnaryOp:
        return ir.UnaryOp(str(children[0]), children[1], span=self._span(meta))

    def power(self, meta: Meta, children: list) -> ir.BinOp:
        return ir.BinOp("**", children[0], children[1], span=self._span(meta))

    # ------------------------------------------------------------ trailers

    def call(self, meta: Meta, children: list) -> ir.Call:
        args, keywords = children[1] if children[1] is not None else ((), ())
        return ir.Call(children[0], args, keywords, span=self._span(meta))

    def call_generator(self, meta: Meta, children: list) -> ir.Call:
        elt, value, generators = children[1]
        generator = ir.Comprehension("gen", elt, value, generators,
                                     span=elt.span.join(generators[-1].span))
        return ir.Call(children[0], (generator,), (), span=self._span(meta))

    def arguments(self, meta: Meta, children: list) -> tuple[tuple, tuple]:
        args: list[ir.Expr] = []
        keywords: list[ir.Keyword] = []
        for child in children:
            if isinstance(child, ir.Keyword):
                if any(k.name == child.name for k in keywords):
                    raise self._syntax_error(f"keyword argument '{child.name}' repeated", child)
                keywords.append(child)
            elif keywords:
                raise self._syntax_error("positional argument follows keyword argument", child)
            else:
                args.append(child)
        return tuple(args), tuple(keywords)

    def keyword(self, meta: Meta, children: list) -> ir.Keyword:
        return ir.Keyword(str(children[0]), children[1], span=self._span(meta))

    def subscript(self, meta: Meta, children: list) -> ir.Subscript:
        return ir.Subscript(children[0], children[1], span=self._span(meta))

    def slice(self, meta: Meta, children: list) -> ir.Slice:
        lower, upper, step = (list(children) + [None, None, None])[:3]
        return ir.Slice(lower, upper, step, span=self._span(meta))

    def attribute(self, meta: Meta, children: list) -> ir.Attribute:
        return ir.Attribute(children[0], str(children[1]), span=self._span(meta))

    # ------------------------------------------------------------ assignment targets

    def _target(self, expr: ir.Expr) -> ir.Target:
        """``expr`` as an assignment target (a name, a subscript or a tuple of targets)."""
        if isinstance(expr, (ir.Name, ir.Subscript)):
            return expr
        if isinstance(expr, (ir.TupleExpr, ir.ListExpr)):
            if not expr.elts:
                raise self._syntax_error("cannot assign to an empty tuple", expr)
            return ir.TupleExpr(tuple(self._target(e) for e in expr.elts), span=expr.span)
        if isinstance(expr, ir.Attribute):
            raise LmqSandboxError(
                f"assignment to an attribute ('.{expr.attr} = ...') is not allowed in lmq "
                "programs (sandbox)", expr.span, self.source)
        raise self._syntax_error(f"cannot assign to {_describe(expr)}", expr)


def _merge_text(parts: list) -> list:
    merged: list = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif not (isinstance(part, str) and part == ""):
            merged.append(part)
    return merged


def _describe(expr: ir.Expr) -> str:
    names = {ir.Call: "a function call", ir.Const: "a literal", ir.BinOp: "an expression",
             ir.Compare: "a comparison", ir.BoolOp: "an expression", ir.FString: "an f-string",
             ir.Comprehension: "a comprehension", ir.IfExp: "a conditional expression",
             ir.UnaryOp: "an expression", ir.DictExpr: "a dict", ir.SetExpr: "a set",
             ir.Slice: "a slice"}
    return names.get(type(expr), "this expression")
