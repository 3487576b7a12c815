"""From a hole's ``where`` constraints to a :class:`HoleSpec` the decoding loop enforces.

Constraint argument expressions (``LIST``, ``s``, ``n`` …) are evaluated when the hole
starts (LANGUAGE.md section 4), so this runs at run time, but it is pure: it sees IR and
plain values, never a model. Each atom is checked and built by its entry of
:data:`lmq.atoms.ATOMS`: the regular part of a constraint (everything a byte-level
automaton can check) becomes one :mod:`lmq.regular` tree; token counts, stop phrases and
predicates, which are not regular over the text, must be top-level conjuncts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lmq import ir, regular
from lmq.atoms import ATOMS, AtomKind, strings
from lmq.errors import LmqCompileError, LmqConstraintError
from lmq.regular import Regular

TYPED_HOLES = {"int": regular.INT_PATTERN, "float": regular.FLOAT_PATTERN}


@dataclass(frozen=True)
class Predicate:
    """``pred(X, ...)``: checked on the final value only, as
    ``function(value, *args, **kwargs)``."""

    function: Any
    args: tuple[Any, ...]
    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class HoleSpec:
    """Everything the decoding loop needs to generate one hole's value.

    ``regular`` is ``None`` for unconstrained text. Token counts: the value has at least
    ``min_tokens`` and at most ``max_tokens`` tokens and never a count in
    ``excluded_counts`` when it ends. ``convert`` names the conversion of the final text
    (``int``, ``float``, ``bool``, ``labels``: the list of the top-level ``LABELS``
    conjunct, see ``regular.labels_of``; ``json``: the parsed value) or is ``None``.
    """

    hole: str
    regular: regular.Regular | None = None
    min_tokens: int = 0
    max_tokens: int | None = None
    excluded_counts: frozenset[int] = frozenset()
    stops_at: tuple[str, ...] = ()
    stops_before: tuple[str, ...] = ()
    convert: str | None = None
    predicates: tuple[Predicate, ...] = ()
    description: str = ""

    def count_allows_end(self, count: int) -> bool:
        return count >= self.min_tokens and count not in self.excluded_counts

    def generation(self, prefix: str = "") -> Regular | None:
        """The language of the text generated for the hole (``None``: any text), which the
        token masks enforce: the value's, after the healed prompt text ``prefix`` (token
        healing), and where ``STOPS_BEFORE`` phrases are cut off, also a value followed by
        a phrase and the overshoot of the token that completed it."""
        if self.regular is None:
            return regular.Prefix(prefix) if prefix else None
        tree = regular.Concat((regular.Literal(prefix), self.regular)) if prefix else \
            self.regular
        return regular.StopsBefore(tree, self.stops_before) if self.stops_before else tree


def conjuncts(constraint: ir.Constraint | None) -> list[ir.Constraint]:
    if constraint is None:
        return []
    if isinstance(constraint, ir.And):
        return [item for sub in constraint.items for item in conjuncts(sub)]
    return [constraint]


def holes_of(constraint: ir.Constraint) -> set[str]:
    if isinstance(constraint, ir.Atom):
        return {constraint.hole}
    if isinstance(constraint, ir.Not):
        return holes_of(constraint.item)
    return {hole for item in constraint.items for hole in holes_of(item)}


def constraints_for(hole: str, *wheres: ir.Constraint | None) -> list[ir.Constraint]:
    """The conjuncts of the given ``where`` clauses that constrain ``hole``."""
    found = []
    for where in wheres:
        for item in conjuncts(where):
            names = holes_of(item)
            if hole not in names:
                continue
            if len(names) > 1:
                raise LmqCompileError(
                    "a constraint combined with 'or'/'not' may only involve one hole",
                    item.span)
            found.append(item)
    return found


def hole_spec(hole: ir.Hole, items: Iterable[ir.Constraint],
              evaluate: Callable[[ir.Expr], Any], describe: Callable[[ir.Node], str] = str,
              ) -> HoleSpec:
    """Build the :class:`HoleSpec` of ``hole`` from its constraint conjuncts."""
    items = list(items)
    check_grammar_combination(hole, items, describe)
    builder = _SpecBuilder(hole.name, evaluate, describe)
    if hole.type in TYPED_HOLES:
        builder.add_regular(regular.Regex(TYPED_HOLES[hole.type]))
        builder.convert = hole.type
    elif hole.type == "bool":
        builder.add_regular(regular.OneOf(("true", "false")))
        builder.convert = "bool"
    if hole.regex is not None:
        builder.add_regular(regular.Regex(hole.regex))
    descriptions = [f"[{hole.name}: {hole.type or repr(hole.regex)}]"] \
        if hole.type or hole.regex else []
    for item in items:
        builder.add(item)
        descriptions.append(describe(item))
    return builder.build(" and ".join(descriptions))


GRAMMAR_PARTNERS = frozenset(("token_len", "stops_at", "stops_before", "pred", "in", "eq"))
"""The atoms a ``GRAMMAR`` combines with under ``and``: token counts, stop phrases,
predicates and finite sets of values (the sentences among them are the values)."""


def check_grammar_combination(hole: ir.Hole, items: Sequence[ir.Constraint],
                              describe: Callable[[ir.Node], str] = str) -> None:
    """Raise :class:`LmqCompileError`, pointing at the conjunct, where a ``GRAMMAR`` on
    ``hole`` is combined with a constraint lmq cannot keep its masks exact with (any other
    regular one could leave a mask with no way to finish), or ``STOPS_BEFORE`` with a lower
    token bound (LANGUAGE.md section 4). Decided by the kinds of atoms alone, so it holds
    before their arguments are known."""
    grammar = next((item for item in items if isinstance(item, ir.Atom) and
                    item.kind == "grammar"), None)
    if grammar is None:
        return
    hint = ("a grammar combines with len(TOKENS(X)) bounds, STOPS_AT, STOPS_BEFORE, "
            "X in [...], X == s and predicates")
    if hole.type or hole.regex:
        raise LmqCompileError(f"GRAMMAR cannot constrain the typed hole '{hole.name}'",
                              grammar.span, hint=hint)
    for item in items:
        if item is grammar or isinstance(item, ir.Atom) and item.kind in GRAMMAR_PARTNERS:
            continue
        what = "another GRAMMAR" if isinstance(item, ir.Atom) and item.kind == "grammar" \
            else f"'{describe(item)}'"
        raise LmqCompileError(f"GRAMMAR cannot be combined with {what} on '{hole.name}': "
                              "lmq cannot keep the masks of that combination exact",
                              item.span, hint=hint)
    stops = [item for item in items if isinstance(item, ir.Atom) and item.kind == "stops_before"]
    lower = [item for item in items if isinstance(item, ir.Atom) and item.kind == "token_len"
             and item.op in (">", ">=", "==", "!=")]
    if stops and lower:
        raise LmqCompileError(f"GRAMMAR with STOPS_BEFORE cannot also have the token bound "
                              f"'{describe(lower[0])}' on '{hole.name}' (only upper bounds)",
                              lower[0].span)


class _SpecBuilder:
    def __init__(self, hole: str, evaluate: Callable[[ir.Expr], Any],
                 describe: Callable[[ir.Node], str]) -> None:
        self.hole = hole
        self.evaluate = evaluate
        self.describe = describe
        self.regulars: list[regular.Regular] = []
        self.min_tokens = 0
        self.max_tokens: int | None = None
        self.excluded: set[int] = set()
        self.stops_at: list[str] = []
        self.stops_before: list[str] = []
        self.convert: str | None = None
        self.predicates: list[Predicate] = []

    def build(self, description: str) -> HoleSpec:
        tree = None
        if self.regulars:
            tree = self.regulars[0] if len(self.regulars) == 1 else regular.And(
                tuple(self.regulars))
        return HoleSpec(self.hole, tree, self.min_tokens, self.max_tokens,
                        frozenset(self.excluded), tuple(self.stops_at),
                        tuple(self.stops_before), self.convert, tuple(self.predicates),
                        description)

    def add_regular(self, node: regular.Regular) -> None:
        self.regulars.append(node)

    def add(self, item: ir.Constraint) -> None:
        if isinstance(item, ir.Atom) and ATOMS[item.kind].build is None:
            self.add_enforced(item)
            return
        node = self.regular_of(item, top=True)
        self.add_regular(node)
        if isinstance(item, ir.Atom) and ATOMS[item.kind].convert:
            self.convert = ATOMS[item.kind].convert
        if isinstance(node, regular.Grammar) and node.tree:
            self.convert = "tree"

    def add_enforced(self, atom: ir.Atom) -> None:
        """An atom the decoding loop enforces itself: a token count, stop phrases, a
        predicate."""
        if atom.kind == "token_len":
            self.add_token_bound(atom.op or "<", self.value(atom, 0))
        elif atom.kind in ("stops_at", "stops_before"):
            target = self.stops_at if atom.kind == "stops_at" else self.stops_before
            target.extend(strings(self.value(atom, 0)))
        else:  # pred
            function = self.evaluate(ir.Name(atom.op or "", span=atom.span))
            args = tuple(self.evaluate(arg) for arg in atom.args)
            kwargs = tuple((kw.name, self.evaluate(kw.value)) for kw in atom.keywords)
            self.predicates.append(Predicate(function, args, atom.op or "predicate", kwargs))

    def add_token_bound(self, op: str, n: int) -> None:
        if op == "<":
            self.max_tokens = _min(self.max_tokens, n - 1)
        elif op == "<=":
            self.max_tokens = _min(self.max_tokens, n)
        elif op == ">":
            self.min_tokens = max(self.min_tokens, n + 1)
        elif op == ">=":
            self.min_tokens = max(self.min_tokens, n)
        elif op == "==":
            self.min_tokens = max(self.min_tokens, n)
            self.max_tokens = _min(self.max_tokens, n)
        else:
            self.excluded.add(n)

    def regular_of(self, item: ir.Constraint, top: bool = False) -> regular.Regular:
        if isinstance(item, ir.And):
            return regular.And(tuple(self.regular_of(sub) for sub in item.items))
        if isinstance(item, ir.Or):
            return regular.Or(tuple(self.regular_of(sub) for sub in item.items))
        if isinstance(item, ir.Not):
            return regular.Not(self.regular_of(item.item))
        kind = ATOMS[item.kind]
        if kind.build is None or (kind.top_level and not top):
            raise LmqCompileError(
                f"'{self.describe(item)}' must be a top-level 'and' condition, not inside "
                "'or' or 'not'", item.span)
        values = [self.value(item, i) for i in range(len(kind.arguments))]
        options = {kw.name: self.option(item, kind, kw) for kw in item.keywords}
        return self.checked(item, lambda: kind.build(values, options, item.op))  # type: ignore[misc]

    def value(self, atom: ir.Atom, index: int) -> Any:
        """The ``index``-th argument of ``atom`` after the hole, evaluated and checked."""
        kind = ATOMS[atom.kind]
        value = self.evaluate(atom.args[index])
        problem = kind.arguments[index].problem(value)
        if problem:
            raise LmqConstraintError(f"{kind.title(self.hole, atom.op)} {problem} (in the "
                                     f"constraint on '{self.hole}')", atom.span)
        return value

    def option(self, atom: ir.Atom, kind: AtomKind, keyword: ir.Keyword) -> Any:
        value = self.evaluate(keyword.value)
        problem = kind.option_problem(keyword.name, value)
        if problem:
            raise LmqConstraintError(f"{problem} (in the constraint on '{self.hole}')",
                                     atom.span)
        return value

    def checked(self, atom: ir.Atom, make: Callable[[], regular.Regular]) -> regular.Regular:
        """``make()``, its ``TypeError``/``ValueError`` as a constraint error."""
        try:
            return make()
        except (TypeError, ValueError) as e:
            raise LmqConstraintError(f"{e} (in the constraint on '{self.hole}')",
                                     atom.span) from None
        except LmqCompileError as e:  # a pattern known only at run time: point at the atom
            if e.span is None:
                e.span = atom.span
            raise


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)
