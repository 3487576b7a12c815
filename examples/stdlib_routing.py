"""stdlib_routing.py — choosing a specialist model for each request.

Shows: ``route`` by sentence-embedding similarity to each specialist's description and
examples, and by a language model's constrained choice among the names (a probability per
name); the answer is the chosen model's spec, so a program can run its next hole on it
with ``from route(...)``, under the chosen specialist's system prompt; ``decision`` gives
the scores inside a program. Specialists can also be declared as
``[tool.lmq.specialists.NAME]`` tables in pyproject.toml or lmq.toml, and their names then
work as models too: see examples/specialists/.

Run: python examples/stdlib_routing.py [MODEL]   (default: $LMQ_MODEL, else smollm2)
"""

import os
import sys

import lmq
from lmq.stdlib.routing import route

MODEL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("LMQ_MODEL", "smollm2")
specialists = {
    "geography": {"model": MODEL, "description": "Countries, capitals, rivers, mountains.",
                  "examples": ["What is the capital of Peru?"],
                  "system": "You are a geography teacher. Answer in one sentence."},
    "cooking": {"model": MODEL, "description": "Recipes, ingredients and kitchen advice.",
                "examples": ["How long should I boil an egg?"],
                "system": "You are a chef. Answer in one sentence."},
}
for request in ("Which river flows through Vienna?", "How do I make a pancake batter?"):
    by_embedding = route(request, specialists)
    by_lm = route(request, specialists, by="lm", model=MODEL)
    print(f"{request}\n  embedding -> {by_embedding.name} "
          f"{ {k: round(v, 3) for k, v in by_embedding.scores.items()} }\n"
          f"  lm        -> {by_lm.name} { {k: round(v, 3) for k, v in by_lm.scores.items()} }")

result = lmq.query('''
from lmq.stdlib.routing import route, decision
r = route(q, specialists)
"{:user}{q}{:assistant}[A]" from r where STOPS_AT(A, ".") and len(TOKENS(A)) < 32
return decision(r)["name"]
''')(q="What is the capital of Canada?", specialists=specialists)
print(f"program: routed to {result.return_value}, answered {result['A']!r}")
