"""Knowledge edits as notes, read with a fallback (EREN, COLING 2024; PAPERS.md section 9).

An edit is a statement ("The Eiffel Tower stands in Rome."). Notes are kept in named
notebooks, embedded with the packaged all-MiniLM-L6-v2 sentence model, and retrieved by
cosine similarity (top ``k``). :func:`answer_with_notes` reads the retrieved notes with
the cascade of :mod:`lmq.stdlib.knowledge` — "using only these notes, answer, or reply
unanswerable" — and falls back to the model's own knowledge when the notes do not answer
(EREN's two-step rule, with the length-normalised margin small models need). So an edited
fact overrides what the model learned, and questions the notes do not cover keep the
unedited model's answer.

From a program::

    from lmq.stdlib.notes import note, answer_with_notes
    note("The Eiffel Tower stands in Rome.")
    "{answer_with_notes('Where is the Eiffel Tower?')['answer']}"

From the host, :class:`Notebook` is the same store as an object.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from lmq.errors import LmqLimitError
from lmq.stdlib import arguments
from lmq.stdlib.knowledge import DEFAULT_MARGIN, cascade_answer

__all__ = ["note", "recall", "forget", "answer_with_notes"]


# Notebooks live as long as the process and every retrieval embeds all their notes, so
# what programs may store is bounded: notes per notebook, characters per note, notebooks.
MAX_NOTES = 1000
MAX_NOTE_CHARACTERS = 10_000
MAX_NOTEBOOKS = 100


class Notebook:
    """Statements with their embeddings; ``retrieve`` ranks them by cosine similarity."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def add(self, statements: str | Iterable[str]) -> int:
        """Add one statement or several (a trailing period is dropped, duplicates are
        kept once); returns the number of notes. At most :data:`MAX_NOTES` notes of
        :data:`MAX_NOTE_CHARACTERS` characters each (``LmqLimitError`` past that, before
        any of the statements is added)."""
        texts = [text.strip().rstrip(".").strip() for text in arguments.texts(
            statements, "statements", "note", single=True)]
        for text in texts:
            if len(text) > MAX_NOTE_CHARACTERS:
                raise LmqLimitError(f"note(): a note of {len(text):,} characters; the limit "
                                    f"is {MAX_NOTE_CHARACTERS:,}")
        with self._lock:
            new = list(dict.fromkeys(t for t in texts if t and t not in self._known))
            if len(self.statements) + len(new) > MAX_NOTES:
                raise LmqLimitError(f"note(): a notebook holds at most {MAX_NOTES:,} notes "
                                    f"(it has {len(self.statements):,}; {len(new):,} more "
                                    "were given)")
            self.statements.extend(new)
            self._known.update(new)
            return len(self.statements)

    def retrieve(self, query: str, k: int = 5,
                 min_similarity: float | None = None) -> list[dict[str, Any]]:
        """The ``k`` notes most similar to ``query``: ``[{"note", "similarity"}]``, best
        first; ``min_similarity`` drops weaker ones."""
        from lmq.stdlib.routing import embed_vectors

        with self._lock:
            statements = list(self.statements)
        if not statements or k <= 0:
            return []
        vectors = embed_vectors([query, *statements])
        sims = vectors[1:] @ vectors[0]
        order = sorted(range(len(statements)), key=lambda i: -float(sims[i]))[:k]
        return [{"note": statements[i], "similarity": float(sims[i])} for i in order
                if min_similarity is None or float(sims[i]) >= min_similarity]

    def clear(self) -> None:
        with self._lock:
            self.statements.clear()
            self._known.clear()


_notebooks: dict[str, Notebook] = {}
_registry_lock = threading.Lock()


def notebook(name: str = "default") -> Notebook:
    """The process-wide notebook called ``name`` (created on first use; at most
    :data:`MAX_NOTEBOOKS` of them)."""
    name = arguments.text(name, "notebook_name", "notebook")
    with _registry_lock:
        if name not in _notebooks and len(_notebooks) >= MAX_NOTEBOOKS:
            raise LmqLimitError(f"at most {MAX_NOTEBOOKS} notebooks can exist at once; "
                                "forget() one first")
        return _notebooks.setdefault(name, Notebook())


def note(statements: str | list[str], notebook_name: str = "default") -> int:
    """Store one edit or a list of edits; returns how many notes the notebook holds."""
    return notebook(notebook_name).add(statements)


def recall(question: str, k: int = 5, notebook_name: str = "default",
           min_similarity: float | None = None) -> list[dict[str, Any]]:
    """The notes most similar to ``question``: ``[{"note", "similarity"}]``."""
    name = "recall"
    question = arguments.text(question, "question", name)
    k = arguments.integer(k, "k", name)
    min_similarity = arguments.number(min_similarity, "min_similarity", name, optional=True)
    return notebook(notebook_name).retrieve(question, k, min_similarity)


def forget(notebook_name: str = "default") -> None:
    """Empty a notebook (and forget its name)."""
    name = arguments.text(notebook_name, "notebook_name", "forget")
    with _registry_lock:
        book = _notebooks.pop(name, None)
    if book is not None:
        book.clear()


def answer_with_notes(question: str, notebook_name: str = "default", k: int = 5,
                      model: Any = None, margin: float = DEFAULT_MARGIN,
                      min_similarity: float | None = None, max_tokens: int = 16,
                      ) -> dict[str, Any]:
    """EREN: answer from the retrieved notes, else from the model's own knowledge.

    Returns ``{"answer", "source": "notes" | "parametric", "notes": [...], "steps"}``; the
    steps are :func:`~lmq.stdlib.knowledge.cascade_answer`'s (the notes are asked as user
    assumptions, the highest-priority source)."""
    found = recall(question, k, notebook_name, min_similarity)
    text = ".\n".join(n["note"] for n in found) + "." if found else None
    out = cascade_answer(question, instruction=text, model=model, margin=margin,
                         order=("instruction", "parametric"), max_tokens=max_tokens)
    source = "notes" if out["source"] == "instruction" else out["source"]
    return {"answer": out["answer"], "source": source, "notes": [n["note"] for n in found],
            "steps": out["steps"]}
