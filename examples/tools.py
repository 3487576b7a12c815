"""tools.py — Python functions that lmq programs use as tools and predicates.

Shows: host functions passed with ``lmq run --tools examples/tools.py:NAME`` or
``tools={...}`` in Python; a predicate is checked on a hole's final value (``pred(X)``).
"""


def has_vowel(text: str) -> bool:
    """True when ``text`` contains a vowel (a predicate for ``where has_vowel(X)``)."""
    return any(ch in "aeiouAEIOU" for ch in text)


def shout(text: str) -> str:
    return text.upper() + "!"


def evaluate(tree) -> str:
    """The value of an arithmetic expression given as the parse tree of examples/expr.lark
    (``GRAMMAR(X, file="expr.lark", tree=True)``), as exact text ("undefined" when it
    divides by zero)."""
    from fractions import Fraction

    def value(node) -> Fraction:
        if not hasattr(node, "data"):  # a token
            return Fraction(int(node))
        if node.data == "number":
            return value(node.children[0])
        if node.data == "neg":
            return -value(node.children[0])
        if node.data == "start":
            return value(node.children[0])
        left, right = (value(child) for child in node.children)
        if node.data == "add":
            return left + right
        if node.data == "sub":
            return left - right
        if node.data == "mul":
            return left * right
        return left / right

    try:
        return str(value(tree))
    except ZeroDivisionError:
        return "undefined"
