"""stdlib_knowledge.py — answers that follow instruction > context > the model's own
knowledge, and knowledge edits kept as notes.

Shows: ``render_sections`` (the prompt mode: labelled sections after a precedence
sentence), ``cascade_answer`` (ask each source alone with an "unanswerable" way out,
scored exactly; fall back down the hierarchy), a program with ``{:instruction}`` and
``{:context}`` sections and a ``prefer`` clause, and ``lmq.stdlib.notes`` (EREN: edits
stored as notes, retrieved by sentence embeddings, read or fallen back from).

On SmolLM2-135M the instruction is phrased "Suppose … was moved to Rome": the model
follows a supposition but answers "Paris" to a bare "Assume … stands in Rome", and a
note contradicting what it knows well loses to its prior (a note about what it cannot
know, Acme's CEO, is followed).

Run: python examples/stdlib_knowledge.py [MODEL]   (default: $LMQ_MODEL, else smollm2)
"""

import sys

import lmq
from lmq.stdlib.knowledge import cascade_answer, render_sections
from lmq.stdlib.notes import answer_with_notes, note

MODEL = sys.argv[1] if len(sys.argv) > 1 else None
instruction = "Suppose the Eiffel Tower was moved to Rome."
context = "The Eiffel Tower is a wrought-iron tower in Paris, completed in 1889."
question = "In which city is the Eiffel Tower?"

print(render_sections(question, instruction, context))
print()
out = cascade_answer(question, instruction, context, model=MODEL, max_tokens=8)
print(f"cascade: {out['answer']!r} from {out['source']}")
for step in out["steps"]:
    print(f"  {step['source']:>11}: {step['answer']!r} answered={step['answered']}")

program = lmq.query('''argmax
    "{:user}"
    "{:instruction}{instruction}\\n"
    "{:context}{context}\\n"
    "Question: {question}\\nAnswer in one to three words.{:assistant}Answer:[A]"
where
    STOPS_BEFORE(A, "\\n") and len(TOKENS(A)) < 8
prefer
    instruction > context > parametric
''', model=MODEL)
print("prefer clause:", repr(program(instruction=instruction, context=context,
                                     question=question)["A"]))

note(["The Eiffel Tower stands in Rome.", "The CEO of Acme is Jane Roe."], "example")
for q in ("Who is the CEO of Acme?", "What is the capital of Japan?"):
    # a note less similar than 0.5 is not read: Japan's question falls back to the model
    eren = answer_with_notes(q, notebook_name="example", k=1, min_similarity=0.5,
                             model=MODEL)
    print(f"notes: {q} -> {eren['answer']!r} ({eren['source']}, read {eren['notes']})")
