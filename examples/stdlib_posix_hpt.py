"""stdlib_posix_hpt.py — how sensitive a model is to rewording, and how much prompting a
task needs.

Shows: ``posix`` (the prompt sensitivity index: each response's length-normalised
log-likelihood under every intent-preserving variant, the matrix scored in batched
passes), the variant generators ``template_variants`` and ``typo_variants``, and
``hierarchical`` (the five strategies of the Hierarchical Prompting Taxonomy, escalated
until the answer passes a check; its HP-score with ``hp_score``).

Run: python examples/stdlib_posix_hpt.py [MODEL]   (default: $LMQ_MODEL, else smollm2)
"""

import sys

from lmq.stdlib.hierarchical import hierarchical, hp_score
from lmq.stdlib.posix import posix, template_variants, typo_variants

MODEL = sys.argv[1] if len(sys.argv) > 1 else None
program = '"{:user}{prompt}{:assistant}[Y]" where STOPS_BEFORE(Y, "\\n")'
question = "What is the capital of France?"
for name, variants in (("templates", template_variants(question)),
                       ("typos", typo_variants(question, n=4, seed=1))):
    out = posix(program, variants, model=MODEL, max_tokens=5)
    print(f"POSIX over {name}: {out['posix']:.3f}  responses={out['sets'][0]['responses']}")

items = [("What is 12 + 30? Reply with the number.", "42"),
         ("What is the largest planet of the solar system?", ["Jupiter", "jupiter"])]
results = []
for task, gold in items:
    out = hierarchical(task, check=gold, model=MODEL, steps=24,
                       levels=["role", "zero_shot_cot", "least_to_most"])
    results.append(out)
    print(f"{task} -> {out['answer']!r} at level {out['level']} "
          f"({[a['strategy'] for a in out['attempts']]})")
print(f"HP-score: {hp_score(results, penalty=2.14):.2f}")
