"""The text and the decision rule of knowledge preference (LANGUAGE.md section 9), used by
the ``prefer`` modes of :mod:`lmq.runtime.decoding.prefer` and by
:mod:`lmq.stdlib.knowledge`, which builds host-side entry points on them.

* the prompt mode's sections: :func:`precedence_text` states which source wins,
  :func:`section_inserts` puts it and a heading before each run of one source's sections;
* the cascade's question to one source (:func:`source_preamble`: "…or reply
  ``unanswerable``") and its decision rule (:func:`source_answered`): a small model rarely
  puts the sentinel first, so the greedy answer is compared with the sentinel by mean
  per-token log-probability, both scored exactly on the same prompt in one batched pass;
  the source counts as answering when ``(1/L_a) log P(answer) - (1/L_s) log P(sentinel) >
  margin`` and the answer is not the sentinel itself.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

ORDER = ("instruction", "context", "parametric")
SENTINEL = "unanswerable"
DEFAULT_MARGIN = 0.0
HEADERS = {"instruction": "User assumptions", "context": "Context documents"}
NOUNS = {"instruction": "the user assumptions", "context": "the context documents",
         "parametric": "what you know"}
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def check_order(order: Sequence[str]) -> tuple[str, ...]:
    order = tuple(order)
    unknown = [name for name in order if name not in ORDER]
    if unknown or len(set(order)) != len(order) or not order:
        raise ValueError(f"a preference order names distinct sources among "
                         f"{', '.join(ORDER)}, not {list(order)}")
    return order


def precedence_text(order: Sequence[str] = ORDER) -> str:
    """One or two sentences saying which source wins, in ``order`` (highest first)."""
    order = check_order(order)
    if len(order) == 1:
        return f"Answer from {NOUNS[order[0]]} only."
    first, rest = order[0], order[1:]
    clauses = [f"Treat {NOUNS[first]} as true even if they contradict "
               f"{' or '.join(NOUNS[r] for r in rest)}"]
    for higher, source in zip(order, rest):
        if source == "parametric":
            clauses.append(f"if {NOUNS[higher]} do not address the question, ignore them "
                           "and answer from what you know")
        else:
            clauses.append(f"use {NOUNS[source]} where {NOUNS[higher]} are silent")
    return "; ".join(clauses) + "."


def section_inserts(pieces: Sequence[tuple[str, str | None]],
                    order: Sequence[str] = ORDER) -> dict[int, list[tuple[str, str | None]]]:
    """What :func:`render_segments` inserts, by the index of the piece it goes before."""
    order = check_order(order)
    present = [s for s in order if s == "parametric" or any(
        k == s and text.strip() for text, k in pieces)]
    inserts: dict[int, list[tuple[str, str | None]]] = {}
    previous: str | None = None
    for i, (text, knowledge) in enumerate(pieces):
        if knowledge is not None and knowledge != previous and text.strip():
            before = inserts[i] = []
            if len(inserts) == 1:  # the first section: the precedence sentence first
                before.append((precedence_text(present) + "\n\n", None))
            rank = " (highest priority)" if knowledge == present[0] else ""
            before.append((f"{HEADERS.get(knowledge, knowledge.title())}{rank}:\n", knowledge))
        previous = knowledge if text.strip() or knowledge is None else previous
    return inserts


def source_preamble(source: str, sentinel: str = SENTINEL) -> str:
    """The text before a source's sections when the cascade asks that source alone."""
    noun = NOUNS[source]
    return (f"Using only {noun} below, answer the question. If {noun} do not answer it, "
            f"reply {sentinel}.\n\n{HEADERS[source]}:\n")


def source_answered(answer: str, answer_score: float, sentinel_score: float,
                    margin: float = DEFAULT_MARGIN, sentinel: str = SENTINEL) -> bool:
    """The cascade's decision rule (module docstring): scores are mean per-token
    log-probabilities of the answer and of the sentinel on the same prompt."""
    if not answer.strip() or normalize_answer(answer) == normalize_answer(sentinel):
        return False
    return answer_score - sentinel_score > margin


def mean_logprob(logprobs: Sequence[float]) -> float:
    """Mean per-token log-probability (``-inf`` for an empty sequence)."""
    return sum(logprobs) / len(logprobs) if logprobs else -math.inf


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())
