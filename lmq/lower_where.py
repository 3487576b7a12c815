"""From a ``where`` expression to a :data:`lmq.ir.Constraint` (LANGUAGE.md section 4).

The grammar parses a constraint as an expression; here ``and``/``or``/``not`` become
``And``/``Or``/``Not`` and every other subexpression must be one atom of the table in
:mod:`lmq.atoms` (a function atom by its name, or one of the operator forms below), or a
predicate call. Whether a name is a hole is decided by the hole names in scope: the
statement's holes for an inline ``where``, the program's for the program's clause.
"""

from __future__ import annotations

from collections.abc import Sequence

from lmq import ir
from lmq.atoms import COMPARISONS, FUNCTIONS
from lmq.errors import LmqCompileError, Source, Span, did_you_mean
from lmq.grammars import read_grammar_file

FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class ConstraintLowering:
    """Converts one ``where`` expression; ``holes`` are the hole names it may constrain."""

    def __init__(self, source: Source, holes: Sequence[str], scope: str) -> None:
        self.source = source
        self.holes = list(dict.fromkeys(holes))
        self.scope = scope  # "statement" or "program", for messages

    def error(self, message: str, where: ir.Node | Span,
              hint: str | None = None) -> LmqCompileError:
        span = where if isinstance(where, Span) else where.span
        return LmqCompileError(message, span, self.source, hint)

    def convert(self, expr: ir.Expr) -> ir.Constraint:
        if isinstance(expr, ir.BoolOp):
            items = tuple(self.convert(value) for value in expr.values)
            return (ir.And if expr.op == "and" else ir.Or)(items, span=expr.span)
        if isinstance(expr, ir.UnaryOp) and expr.op == "not":
            return ir.Not(self.convert(expr.operand), span=expr.span)
        if isinstance(expr, ir.Compare):
            return self.compare(expr)
        if isinstance(expr, ir.Call):
            return self.call(expr)
        if isinstance(expr, ir.Name):
            if expr.id in self.holes:
                raise self.error(f"'{expr.id}' alone is not a constraint", expr,
                                 f"for example STOPS_AT({expr.id}, \"\\n\") or "
                                 f"len(TOKENS({expr.id})) < 20")
            raise self.unknown_hole(expr)
        raise self.error("not a constraint: expected an atom such as STOPS_AT(X, s), "
                         "X in [...] or len(TOKENS(X)) < n", expr)

    def hole(self, expr: ir.Expr, what: str) -> str:
        """The hole ``expr`` names; an error unless it names one."""
        if isinstance(expr, ir.Name):
            if expr.id in self.holes:
                return expr.id
            raise self.unknown_hole(expr)
        raise self.error(f"the first argument of {what} must be a hole name", expr)

    def unknown_hole(self, name: ir.Name) -> LmqCompileError:
        hint = did_you_mean(name.id, self.holes)
        if hint is None and not self.holes:
            hint = f"the {self.scope} has no holes"
        return self.error(f"unknown hole '{name.id}' in constraint", name, hint)

    # ------------------------------------------------------------ comparisons

    def compare(self, expr: ir.Compare) -> ir.Constraint:
        atoms: list[ir.Constraint] = []
        left = expr.left
        for operator, right in zip(expr.ops, expr.comparators):
            span = left.span.join(right.span)
            atoms.append(self.comparison(left, operator, right, span))
            left = right
        if len(atoms) == 1:
            return atoms[0]
        return ir.And(tuple(atoms), span=expr.span)

    def length(self, expr: ir.Expr) -> tuple[str, str] | None:
        """``("token_len", X)`` for ``len(TOKENS(X))``, ``("char_len", X)`` for
        ``len(X)``, else None."""
        if not (_is_call(expr, "len") and len(expr.args) == 1 and not expr.keywords):  # type: ignore[union-attr]
            return None
        argument = expr.args[0]  # type: ignore[union-attr]
        if _is_call(argument, "TOKENS"):
            if len(argument.args) != 1 or argument.keywords:  # type: ignore[union-attr]
                raise self.error("TOKENS takes one hole: len(TOKENS(X))", argument)
            return "token_len", self.hole(argument.args[0], "TOKENS")  # type: ignore[union-attr]
        return "char_len", self.hole(argument, "len() in a constraint")

    def comparison(self, left: ir.Expr, operator: str, right: ir.Expr,
                   span: Span) -> ir.Constraint:
        measured = self.length(left)
        if measured is None and (flipped := self.length(right)) is not None:
            measured, left, right = flipped, right, left
            operator = FLIPPED.get(operator, operator)
        if measured is not None:
            if operator not in COMPARISONS:
                raise self.error(f"a length is compared with one of {' '.join(COMPARISONS)}"
                                 f", not '{operator}'", span)
            kind, hole = measured
            return ir.Atom(kind, hole, operator, (right,), span=span)
        if operator in ("in", "not in"):
            if self.is_hole(left):
                atom = ir.Atom("in", left.id, None, (right,), span=span)  # type: ignore[union-attr]
            elif self.is_hole(right):
                atom = ir.Atom("contains", right.id, None, (left,), span=span)  # type: ignore[union-attr]
            else:
                raise self.no_hole(left, right, f"'{operator}'")
            return ir.Not(atom, span=span) if operator == "not in" else atom
        if operator in ("==", "!="):
            if self.is_hole(left):
                atom = ir.Atom("eq", left.id, None, (right,), span=span)  # type: ignore[union-attr]
            elif self.is_hole(right):
                atom = ir.Atom("eq", right.id, None, (left,), span=span)  # type: ignore[union-attr]
            else:
                raise self.no_hole(left, right, f"'{operator}'")
            return ir.Not(atom, span=span) if operator == "!=" else atom
        raise self.error(f"'{operator}' is not a constraint on a hole's text; use len(X) or "
                         "len(TOKENS(X)) to compare lengths, == or 'in' to compare text",
                         span)

    def is_hole(self, expr: ir.Expr) -> bool:
        return isinstance(expr, ir.Name) and expr.id in self.holes

    def no_hole(self, left: ir.Expr, right: ir.Expr, what: str) -> LmqCompileError:
        for side in (left, right):
            if isinstance(side, ir.Name):
                return self.unknown_hole(side)
        return self.error(f"neither side of {what} is a hole", left)

    # ------------------------------------------------------------ function atoms

    def call(self, expr: ir.Call) -> ir.Constraint:
        if not isinstance(expr.func, ir.Name):
            raise self.error("a predicate in a constraint must be a plain name: pred(X, ...)",
                             expr.func)
        name = expr.func.id
        if name == "TOKENS":
            raise self.error("TOKENS(X) is only used as len(TOKENS(X)) OP n", expr)
        if name == "len":
            raise self.error("len(...) needs a comparison: len(X) OP n", expr)
        if name not in FUNCTIONS:
            if name.isupper() and len(name) > 2:
                hint = did_you_mean(name, FUNCTIONS)
                if hint is not None:
                    raise self.error(f"unknown constraint '{name}'", expr.func, hint)
            if not expr.args:
                raise self.error(f"the predicate '{name}' needs the hole as its first "
                                 "argument", expr)
            hole = self.hole(expr.args[0], f"the predicate '{name}'")
            return ir.Atom("pred", hole, name, expr.args[1:], expr.keywords, span=expr.span)
        kind = FUNCTIONS[name]
        args = list(expr.args)
        keywords = list(expr.keywords)
        if kind.options:  # options may follow the arguments positionally
            for option, value in zip(kind.options, args[kind.arity:]):
                keywords.append(ir.Keyword(option, value, span=value.span))
            args = args[:kind.arity]
            for keyword in keywords:
                if keyword.name not in kind.options:
                    raise self.error(f"unknown argument '{keyword.name}' for {name}",
                                     keyword, did_you_mean(keyword.name, kind.options))
            if len({k.name for k in keywords}) != len(keywords):
                raise self.error(f"an argument of {name} is given twice", expr)
        elif keywords:
            raise self.error(f"{name} takes no keyword arguments", keywords[0])
        if kind.kind == "grammar":
            args, keywords = self.grammar_file(args, keywords)
        if len(args) != kind.arity:
            shape = f"{name}(X)" if kind.arity == 1 else f"{name}(X, ...)"
            raise self.error(f"{name} takes {kind.arity} argument{'s' * (kind.arity > 1)}: "
                             f"{shape}", expr)
        hole = self.hole(args[0], name)
        return ir.Atom(kind.kind, hole, None, tuple(args[1:]), tuple(keywords), span=expr.span)

    def grammar_file(self, args: list[ir.Expr], keywords: list[ir.Keyword],
                     ) -> tuple[list[ir.Expr], list[ir.Keyword]]:
        """``GRAMMAR(X, file="expr.lark")``: the file's text as the grammar argument, read
        relative to the program's file (:func:`lmq.grammars.read_grammar_file`); a
        grammar error points into the file."""
        given = [keyword for keyword in keywords if keyword.name == "file"]
        if not given:
            return args, keywords
        value = given[0].value
        if len(args) > 1:
            raise self.error("GRAMMAR takes a grammar text or file=, not both", value)
        if not (isinstance(value, ir.Const) and isinstance(value.value, str)):
            raise self.error("GRAMMAR's file= must be a string literal", value)
        text = read_grammar_file(self.source.filename, value.value, value.span)
        return args + [ir.Const(text, span=value.span)], \
            [keyword for keyword in keywords if keyword.name != "file"]


def _is_call(expr: ir.Expr, name: str) -> bool:
    return isinstance(expr, ir.Call) and isinstance(expr.func, ir.Name) and expr.func.id == name


def to_constraint(expr: ir.Expr, holes: Sequence[str], source: Source,
                  scope: str = "statement") -> ir.Constraint:
    """Convert a ``where`` expression; raises :class:`LmqCompileError`."""
    return ConstraintLowering(source, holes, scope).convert(expr)
