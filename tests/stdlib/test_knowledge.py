"""lmq.stdlib.knowledge: answer normalisation (data README), the prompt mode's rendering,
the cascade's decision rule, and ``cascade_answer`` (the language's cascade run from host
code) with an exactly scored sentinel."""

from __future__ import annotations

import math

import pytest

from lmq.stdlib.knowledge import (
    ORDER,
    cascade_answer,
    is_correct,
    normalize_answer,
    precedence_text,
    render_sections,
    render_segments,
    section_inserts,
    source_answered,
    source_preamble,
)


def test_normalisation_follows_the_data_readme():
    assert normalize_answer("  The Eiffel-Tower!  ") == "eiffeltower"
    assert normalize_answer("A cat, an apple and THE dog.") == "cat apple and dog"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words
    assert is_correct("Rome.", "Rome")
    assert is_correct("roma", "Rome", ["Roma"])
    assert is_correct("São Paulo", "Sao Paulo", ["São Paulo"])
    assert not is_correct("Paris", "Rome", ["Roma"])
    assert not is_correct(None, "Rome")


def test_precedence_text_names_the_sources_in_order():
    text = precedence_text(ORDER)
    assert text.index("user assumptions") < text.index("context documents") < \
        text.index("what you know")
    assert precedence_text(["context", "parametric"]).startswith("Treat the context")
    with pytest.raises(ValueError):
        precedence_text(["instruction", "memes"])
    with pytest.raises(ValueError):
        precedence_text(["context", "context"])


def test_render_sections_orders_and_omits_sections():
    text = render_sections("Where is it?", "Assume it is in Rome.", ["Doc one.", "Doc two."])
    assert text.index("User assumptions (highest priority):\nAssume it is in Rome.") < \
        text.index("Context documents:\nDoc one.\nDoc two.") < text.index("Question: Where")
    only_context = render_sections("Q?", None, "Doc.")
    assert "User assumptions" not in only_context
    assert "Context documents (highest priority):\nDoc." in only_context
    assert render_sections("Q?") == "Question: Q?"
    flipped = render_sections("Q?", "I.", "C.", order=("context", "instruction", "parametric"))
    assert flipped.index("Context documents (highest priority)") < flipped.index("User")


def test_render_segments_keeps_text_and_tags():
    pieces = [("Intro. ", None), ("Assume A.\n", "instruction"), ("Doc.\n", "context"),
              ("More doc.\n", "context"), ("Q?", None)]
    out = render_segments(pieces)
    assert [p for p in out if p in pieces] == pieces  # every piece, in order, unchanged
    texts = [text for text, _ in out]
    assert texts[1] == precedence_text(ORDER) + "\n\n"
    assert out[2] == ("User assumptions (highest priority):\n", "instruction")
    assert ("Context documents:\n", "context") in out
    assert sum(t.startswith("Context documents") for t in texts) == 1  # one heading per run
    assert render_segments([("Just a question", None)]) == [("Just a question", None)]
    assert sorted(section_inserts(pieces)) == [1, 2]  # before the first piece of each run


def test_the_decision_rule_compares_mean_scores_with_a_margin():
    assert source_answered(" Rome", -1.0, -3.0, margin=1.5)
    assert not source_answered(" Rome", -1.0, -3.0, margin=2.5)
    assert not source_answered(" Unanswerable.", 0.0, -9.0)  # the sentinel itself declines
    assert not source_answered("  ", 0.0, -9.0)
    assert source_preamble("context").endswith("reply unanswerable.\n\nContext documents:\n")


def test_cascade_margins_choose_where_it_stops(tiny):
    kwargs = {"instruction": "Assume the tower is in Rome.", "context": "The tower is in Paris.",
              "model": tiny, "max_tokens": 4}
    first = cascade_answer("Where is the tower?", margin=-math.inf, **kwargs)
    assert first["source"] == "instruction" and len(first["steps"]) == 1
    last = cascade_answer("Where is the tower?", margin=math.inf, **kwargs)
    assert last["source"] == "parametric"
    assert [s["source"] for s in last["steps"]] == ["instruction", "context", "parametric"]
    assert not any(s["answered"] for s in last["steps"][:2])
    assert last["answer"] == last["steps"][-1]["answer"]
    only = cascade_answer("Where is the tower?", model=tiny, max_tokens=4)
    assert [s["source"] for s in only["steps"]] == ["parametric"]
    none = cascade_answer("Q?", context="C.", model=tiny, max_tokens=4, margin=math.inf,
                          order=("instruction", "context"))
    assert none["answer"] is None and none["source"] is None


# What the cascade shows the model when it asks the context alone, written out by hand.
CONTEXT_ALONE = '''argmax
    "{:system}{system}{:user}Using only the context documents below, answer the question. \\
If the context documents do not answer it, reply unanswerable.\\n\\nContext documents:\\n\\
The tower is in Paris.\\n\\nQuestion: Where is the tower?\\n{style}{:assistant}Answer:[A]"
'''


def test_the_sentinel_is_scored_exactly(tiny, reference_logprobs):
    from lmq.runtime.scoring import prompt_ids
    from lmq.stdlib import knowledge

    out = cascade_answer("Where is the tower?", context="The tower is in Paris.", model=tiny,
                         max_tokens=4, margin=math.inf, order=("context",))
    [step] = out["steps"]
    assert step["source"] == "context" and not step["answered"] and out["answer"] is None
    params = {"system": knowledge.SYSTEM, "style": knowledge.STYLE}
    _, prefix = prompt_ids(CONTEXT_ALONE, params, tiny)
    sentinel = reference_logprobs(tiny, prefix, tiny.vocabulary.encode(" " + knowledge.SENTINEL))
    assert step["sentinel_score"] == pytest.approx(sum(sentinel) / len(sentinel), abs=1e-4)


@pytest.mark.smollm2
def test_smollm2_cascade_follows_an_instruction_and_keeps_world_knowledge():
    followed = cascade_answer("What is the capital of France?",
                              instruction="Assume that the capital of France is Lyon.",
                              model="smollm2")
    assert followed["source"] == "instruction" and is_correct(followed["answer"], "Lyon")
    fallback = cascade_answer("What is the capital of France?",
                              context="Bananas are rich in potassium.", model="smollm2")
    assert is_correct(fallback["answer"], "Paris")  # from either source: both say Paris
