"""Knowledge preference: user instruction > context document > the model's own knowledge.

Three ways to make an answer follow the highest-ranked source that addresses the question
(PAPERS.md section 3.3). All three are modes of the ``prefer`` clause (LANGUAGE.md section
9), run by the decoding loop (:mod:`lmq.runtime.decoding.prefer`); this module holds their text and
decision rule, and host-side entry points:

* **prompt** (``with mode="prompt"``) — the sources as labelled sections, highest
  priority first, after a sentence stating the precedence: :func:`render_segments`
  rewrites a program's segments (the loop's view), :func:`render_sections` builds the same
  text from host strings;
* **cascade** (``with mode="cascade"``; :func:`cascade_answer` runs it from host code) —
  ask each source alone, top first, with an explicit way out (:func:`source_preamble`:
  "…or reply ``unanswerable``"); when the source does not answer, fall back to the next
  one, and last to a closed-book question (EREN, section 9);
* **contrastive** (the default) — logit-level, with extra batch rows; no text here.

**The cascade's decision rule** (:func:`source_answered`). A small model rarely puts the
sentinel first, so the greedy answer is compared with the sentinel by mean per-token
log-probability, both scored exactly on the same prompt in one batched pass: the source
counts as answering when ``(1/L_a) log P(answer) - (1/L_s) log P(sentinel) > margin``;
otherwise (or when the greedy answer is the sentinel) the cascade moves on. ``margin``
(``with margin=...``) trades following a source that does not address the question
against ignoring one that does; ``bench/eval_knowledge.py`` reports it per setting.

Scoring follows the data README: :func:`normalize_answer` lower-cases, drops punctuation,
the articles *a/an/the* and extra whitespace; :func:`is_correct` compares with the answer
and its aliases.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["render_sections", "precedence_text", "cascade_answer", "normalize_answer",
           "is_correct"]

ORDER = ("instruction", "context", "parametric")
SENTINEL = "unanswerable"
DEFAULT_MARGIN = 0.0
# One demonstration of the answer format, shared by every mode: a 135M model otherwise
# often answers with a sentence, which exact-match scoring counts as wrong.
SYSTEM = ("You answer questions with a short answer only: a name, a place, a number or a few "
          "words, never a sentence. Example: Question: Who wrote Hamlet? Answer: William "
          "Shakespeare")
STYLE = "Answer in one to three words."
HEADERS = {"instruction": "User assumptions", "context": "Context documents"}
NOUNS = {"instruction": "the user assumptions", "context": "the context documents",
         "parametric": "what you know"}
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


# ------------------------------------------------------------------ prompt mode


def _check_order(order: Sequence[str]) -> tuple[str, ...]:
    order = tuple(order)
    unknown = [name for name in order if name not in ORDER]
    if unknown or len(set(order)) != len(order) or not order:
        raise ValueError(f"a preference order names distinct sources among "
                         f"{', '.join(ORDER)}, not {list(order)}")
    return order


def precedence_text(order: Sequence[str] = ORDER) -> str:
    """One or two sentences saying which source wins, in ``order`` (highest first)."""
    order = _check_order(order)
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


def render_sections(question: str | None = None, instruction: str | Iterable[str] | None = None,
                    context: str | Iterable[str] | None = None,
                    order: Sequence[str] = ORDER) -> str:
    """The prompt mode's text: the precedence sentence, then a labelled section per source
    that has text (in ``order``), then the question. Lists of texts become one line each."""
    order = _check_order(order)
    texts = {"instruction": _join(instruction), "context": _join(context)}
    parts = []
    present = [s for s in order if s == "parametric" or texts.get(s)]
    if any(texts.get(s) for s in order):
        parts.append(precedence_text(present))
    for source in order:
        if texts.get(source):
            rank = " (highest priority)" if source == present[0] else ""
            parts.append(f"{HEADERS[source]}{rank}:\n{texts[source]}")
    if question:
        parts.append(f"Question: {question}")
    return "\n\n".join(parts)


def render_segments(pieces: Sequence[tuple[str, str | None]],
                    order: Sequence[str] = ORDER) -> list[tuple[str, str | None]]:
    """Prompt mode for the runtime: ``pieces`` are ``(text, knowledge)`` in context order
    (``knowledge`` is ``"instruction"``, ``"context"`` or None, as on the interpreter's
    segments). Returns pieces with the same knowledge tags, where the precedence sentence
    is inserted before the first knowledge piece and each run of pieces of one source
    starts with that source's heading; other text is unchanged. A source whose pieces are
    all empty is not announced."""
    inserts = section_inserts(pieces, order)
    out: list[tuple[str, str | None]] = []
    for i, piece in enumerate(pieces):
        out += inserts.get(i, [])
        out.append(piece)
    return out


def section_inserts(pieces: Sequence[tuple[str, str | None]],
                    order: Sequence[str] = ORDER) -> dict[int, list[tuple[str, str | None]]]:
    """What :func:`render_segments` inserts, by the index of the piece it goes before."""
    order = _check_order(order)
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


def _join(value: str | Iterable[str] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return "\n".join(str(v).strip() for v in value if str(v).strip())


# ------------------------------------------------------------------ cascade mode

# The sections are separate statements, so each is tagged with its source alone; the
# cascade's views drop the other sources' sections (lmq.runtime.decoding.prefer).
_CASCADE_PROGRAM = '''argmax
    "{:system}{system}{:user}"
    if instruction:
        "{:instruction}{instruction}\\n\\n"
    if context:
        "{:context}{context}\\n\\n"
    "Question: {question}\\n{style}{:assistant}Answer:[A]"
where
    STOPS_BEFORE(A, "\\n") and len(TOKENS(A)) < max_tokens
prefer
    '''
_CASCADE_OPTIONS = ' with mode="cascade", margin=margin, sentinel=sentinel\n'


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


def cascade_answer(question: str, instruction: str | Iterable[str] | None = None,
                   context: str | Iterable[str] | None = None, model: Any = None,
                   margin: float = DEFAULT_MARGIN, order: Sequence[str] = ORDER,
                   sentinel: str = SENTINEL, max_tokens: int = 16) -> dict[str, Any]:
    """Answer ``question`` from the first source in ``order`` that answers it: a program
    with ``{:instruction}`` and ``{:context}`` sections and ``prefer … with
    mode="cascade"``, the path a ``.lmq`` file takes.

    Each source with text is asked alone ("using only …, or reply ``sentinel``"); the greedy
    answer and the sentinel are scored exactly on that prompt and :func:`source_answered`
    decides. ``parametric`` (the closed-book question) always answers; an order without
    it may end unanswered (``answer`` None). Returns ``{"answer", "source", "steps"}`` where
    each step is ``{"source", "answer", "answer_score", "sentinel_score", "answered"}`` (mean
    per-token log-probabilities; None for ``parametric``, which is not scored)."""
    from lmq.api import query

    order = _check_order(order)
    source = _CASCADE_PROGRAM + " > ".join(order) + _CASCADE_OPTIONS
    result = query(source, model=model)(
        system=SYSTEM, instruction=_join(instruction), context=_join(context),
        question=question, style=STYLE, max_tokens=max_tokens, margin=float(margin),
        sentinel=sentinel)
    steps = [step for entry in result.trace if "decisions" in entry
             for step in entry["decisions"].get("steps", ())]
    answered = next((step for step in steps if step["answered"]), None)
    if answered is None:
        return {"answer": None, "source": None, "steps": steps}
    return {"answer": answered["answer"], "source": answered["source"], "steps": steps}


# ------------------------------------------------------------------ scoring


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def is_correct(answer: str | None, gold: str, aliases: Iterable[str] = ()) -> bool:
    """The normalized answer equals the normalized gold answer or an alias."""
    if answer is None:
        return False
    got = normalize_answer(answer)
    return any(got == normalize_answer(g) for g in (gold, *aliases))
