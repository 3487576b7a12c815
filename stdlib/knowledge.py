"""Knowledge preference: user instruction > context document > the model's own knowledge.

Three ways to make an answer follow the highest-ranked source that addresses the question
(PAPERS.md section 3.3; the ``prefer`` clause, LANGUAGE.md section 9):

* **prompt** — one call: the sources are rendered as labelled sections, highest priority
  first, after a sentence stating the precedence (:func:`render_sections` for host code,
  :func:`render_segments` for the runtime, which tags knowledge text as segments);
* **cascade** — :func:`cascade_answer`: ask each source alone, top first, with an explicit
  way out (the sentinel ``unanswerable``); when the source does not answer, fall back to
  the next one, and last to a closed-book question (EREN, section 9);
* **contrastive** — logit-level, in the decoding loop (``prefer … with mode="contrastive"``);
  not here.

**The cascade's decision rule.** A small model rarely puts the sentinel first, so the
greedy answer is compared with the sentinel by mean per-token log-probability, both
scored exactly on the same prompt in one batched pass: the source counts as answering when
``(1/L_a) log P(answer) - (1/L_s) log P(sentinel) > margin``; otherwise (or when the greedy
answer is the sentinel) the cascade moves on. ``margin`` trades following a source that does
not address the question against ignoring one that does; ``bench/eval_knowledge.py``
reports it per setting.

Scoring follows the data README: :func:`normalize_answer` lower-cases, drops punctuation,
the articles *a/an/the* and extra whitespace; :func:`is_correct` compares with the answer
and its aliases.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

from lmq.stdlib._scoring import normalized, prompt_ids, score_after

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
    order = _check_order(order)
    present = [s for s in order if s == "parametric" or any(
        k == s and text.strip() for text, k in pieces)]
    out: list[tuple[str, str | None]] = []
    previous: str | None = None
    announced = False
    for text, knowledge in pieces:
        if knowledge is not None and knowledge != previous and text.strip():
            if not announced:
                out.append((precedence_text(present) + "\n\n", None))
                announced = True
            rank = " (highest priority)" if knowledge == present[0] else ""
            out.append((f"{HEADERS.get(knowledge, knowledge.title())}{rank}:\n", knowledge))
        out.append((text, knowledge))
        previous = knowledge if text.strip() or knowledge is None else previous
    return out


def _join(value: str | Iterable[str] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return "\n".join(str(v).strip() for v in value if str(v).strip())


# ------------------------------------------------------------------ cascade mode

_SOURCE_PROGRAM = '''argmax
    "{:system}{system}{:user}Using only {noun} below, answer the question. If {noun} do not \
answer it, reply {sentinel}.\\n\\n{header}:\\n{text}\\n\\nQuestion: {question}\\n{style}\
{:assistant}Answer:[A]"
where
    STOPS_BEFORE(A, "\\n") and len(TOKENS(A)) < max_tokens
'''
_CLOSED_PROGRAM = '''argmax
    "{:system}{system}{:user}Question: {question}\\n{style}{:assistant}Answer:[A]"
where
    STOPS_BEFORE(A, "\\n") and len(TOKENS(A)) < max_tokens
'''


def cascade_answer(question: str, instruction: str | Iterable[str] | None = None,
                   context: str | Iterable[str] | None = None, model: Any = None,
                   margin: float = DEFAULT_MARGIN, order: Sequence[str] = ORDER,
                   sentinel: str = SENTINEL, max_tokens: int = 16) -> dict[str, Any]:
    """Answer ``question`` from the first source in ``order`` that answers it.

    Each source with text is asked alone ("using only …, or reply ``sentinel``"); the greedy
    answer and the sentinel are scored exactly on that prompt and the module docstring's
    rule decides. ``parametric`` (the closed-book question) always answers; an order without
    it may end unanswered (``answer`` None). Returns ``{"answer", "source", "steps"}`` where
    each step is ``{"source", "answer", "answer_score", "sentinel_score", "answered"}`` (mean
    per-token log-probabilities)."""
    from lmq.api import query

    order = _check_order(order)
    texts = {"instruction": _join(instruction), "context": _join(context)}
    steps: list[dict[str, Any]] = []
    for source in order:
        if source == "parametric":
            params = {"system": SYSTEM, "question": question, "style": STYLE,
                      "max_tokens": max_tokens}
            result = query(_CLOSED_PROGRAM, model=model)(**params)
            answer = result.variables["A"].strip()
            steps.append({"source": source, "answer": answer,
                          "answer_score": normalized(result.logprobs.get("A", [])),
                          "sentinel_score": None, "answered": True})
            return {"answer": answer, "source": source, "steps": steps}
        if not texts[source]:
            continue
        params = {"system": SYSTEM, "noun": NOUNS[source], "sentinel": sentinel,
                  "header": HEADERS[source], "text": texts[source], "question": question,
                  "style": STYLE, "max_tokens": max_tokens}
        result = query(_SOURCE_PROGRAM, model=model)(**params)
        raw = result.variables["A"]
        answer = raw.strip()
        backend, prefix = prompt_ids(_SOURCE_PROGRAM, params, model)
        # Both as written after "Answer:", with the leading space a BPE model writes.
        candidates = [backend.encode(raw) or [], backend.encode(" " + sentinel)]
        answer_lp, sentinel_lp = (normalized(s) for s in
                                  score_after(backend, [prefix], [candidates])[0])
        declined = normalize_answer(answer) == normalize_answer(sentinel) or not answer
        answered = not declined and answer_lp - sentinel_lp > margin
        steps.append({"source": source, "answer": answer, "raw": raw,
                      "answer_score": answer_lp, "sentinel_score": sentinel_lp,
                      "answered": answered})
        if answered:
            return {"answer": answer, "source": source, "steps": steps}
    return {"answer": None, "source": None, "steps": steps}


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
