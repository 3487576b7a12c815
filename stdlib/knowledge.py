"""Knowledge preference: user instruction > context document > the model's own knowledge.

Three ways to make an answer follow the highest-ranked source that addresses the question
(PAPERS.md section 3.3). All three are modes of the ``prefer`` clause (LANGUAGE.md section
9), run by the decoding loop (:mod:`lmq.runtime.decoding.prefer`) with the text and
decision rule of :mod:`lmq.runtime.decoding.knowledge`; this module offers them to host
code:

* **prompt** (``with mode="prompt"``) — the sources as labelled sections, highest
  priority first, after a sentence stating the precedence: :func:`render_segments`
  rewrites a program's segments (the loop's view), :func:`render_sections` builds the same
  text from host strings;
* **cascade** (``with mode="cascade"``; :func:`cascade_answer` runs it from host code) —
  ask each source alone, top first, with an explicit way out (:func:`source_preamble`:
  "…or reply ``unanswerable``"); when the source does not answer, fall back to the next
  one, and last to a closed-book question (EREN, section 9);
* **contrastive** (the default) — logit-level, with extra batch rows; no text here.

``margin`` (``with margin=...``) of the cascade's decision rule (:func:`source_answered`)
trades following a source that does not address the question against ignoring one that
does; ``bench/eval_knowledge.py`` reports it per setting.

Scoring follows the data README: :func:`normalize_answer` lower-cases, drops punctuation,
the articles *a/an/the* and extra whitespace; :func:`is_correct` compares with the answer
and its aliases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lmq.runtime.decoding import knowledge as rules
from lmq.runtime.decoding.knowledge import (  # noqa: F401  (public here too)
    DEFAULT_MARGIN,
    HEADERS,
    ORDER,
    SENTINEL,
    check_order,
    section_inserts,
    source_answered,
    source_preamble,
)
from lmq.stdlib import arguments

__all__ = ["render_sections", "precedence_text", "cascade_answer", "normalize_answer",
           "is_correct"]

# One demonstration of the answer format, shared by every mode: a 135M model otherwise
# often answers with a sentence, which exact-match scoring counts as wrong.
SYSTEM = ("You answer questions with a short answer only: a name, a place, a number or a few "
          "words, never a sentence. Example: Question: Who wrote Hamlet? Answer: William "
          "Shakespeare")
STYLE = "Answer in one to three words."


# ------------------------------------------------------------------ prompt mode


def precedence_text(order: Sequence[str] = ORDER) -> str:
    """One or two sentences saying which source wins, in ``order`` (highest first)."""
    return rules.precedence_text(_order(order, "precedence_text"))


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    return rules.normalize_answer(arguments.text(text, "text", "normalize_answer"))


def render_sections(question: str | None = None, instruction: str | Iterable[str] | None = None,
                    context: str | Iterable[str] | None = None,
                    order: Sequence[str] = ORDER) -> str:
    """The prompt mode's text: the precedence sentence, then a labelled section per source
    that has text (in ``order``), then the question. Lists of texts become one line each."""
    name = "render_sections"
    order = _order(order, name)
    question = arguments.text(question, "question", name, optional=True)
    texts = {"instruction": _join(instruction, "instruction", name),
             "context": _join(context, "context", name)}
    arguments.characters(sum(map(len, texts.values())) + len(question or ""), "the text",
                         name)
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


def _join(value: str | Iterable[str] | None, name: str, function: str) -> str:
    """A source's text: a string, or a list of strings one per line."""
    if value is None:
        return ""
    lines = arguments.texts(value, name, function, single=True)
    return "\n".join(line.strip() for line in lines if line.strip())


def _order(order: Any, function: str) -> tuple[str, ...]:
    try:
        return check_order(arguments.texts(order, "order", function))
    except arguments.ArgumentError:
        raise
    except ValueError as error:
        raise arguments.ArgumentError(f"{function}(): {error}") from None


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

    name = "cascade_answer"
    order = _order(order, name)
    question = arguments.text(question, "question", name)
    instruction = _join(instruction, "instruction", name)
    context = _join(context, "context", name)
    model = arguments.model(model, name)
    margin = arguments.number(margin, "margin", name)
    sentinel = arguments.text(sentinel, "sentinel", name)
    max_tokens = arguments.integer(max_tokens, "max_tokens", name, low=1)
    source = _CASCADE_PROGRAM + " > ".join(order) + _CASCADE_OPTIONS
    result = query(source, model=model)(
        system=SYSTEM, instruction=instruction, context=context, question=question,
        style=STYLE, max_tokens=max_tokens, margin=margin, sentinel=sentinel)
    steps = [step for entry in result.trace if "decisions" in entry
             for step in entry["decisions"].get("steps", ())]
    answered = next((step for step in steps if step["answered"]), None)
    if answered is None:
        return {"answer": None, "source": None, "steps": steps}
    return {"answer": answered["answer"], "source": answered["source"], "steps": steps}


# ------------------------------------------------------------------ scoring


def is_correct(answer: str | None, gold: str, aliases: Iterable[str] = ()) -> bool:
    """The normalized answer equals the normalized gold answer or an alias."""
    name = "is_correct"
    answer = arguments.text(answer, "answer", name, optional=True)
    accepted = [arguments.text(gold, "gold", name),
                *arguments.texts(aliases, "aliases", name)]
    if answer is None:
        return False
    got = rules.normalize_answer(answer)
    return any(got == rules.normalize_answer(g) for g in accepted)
