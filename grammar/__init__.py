"""The lmq grammar, shipped as package data (``lmq.grammar``)."""

from importlib.resources import files


def grammar_text() -> str:
    """Return the text of ``lmq.lark``."""
    return (files(__name__) / "lmq.lark").read_text(encoding="utf-8")
