"""tools.py — Python functions that lmq programs use as tools and predicates.

Shows: host functions passed with ``lmq run --tools examples/tools.py:NAME`` or
``tools={...}`` in Python; a predicate is checked on a hole's final value (``pred(X)``).
"""


def has_vowel(text: str) -> bool:
    """True when ``text`` contains a vowel (a predicate for ``where has_vowel(X)``)."""
    return any(ch in "aeiouAEIOU" for ch in text)


def shout(text: str) -> str:
    return text.upper() + "!"
