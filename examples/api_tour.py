"""api_tour.py — the Python front door: lmq.query, calls, batches, streams, async.

Shows: compiling once and calling with parameters; a Result's fields and JSON;
``q.batch`` running many instances in lockstep (its ``stats.forward_passes`` counts each
shared forward pass once) with a failing input kept in its place; ``q.stream`` events;
``await q.acall``; a decoder given as text.

Run: python examples/api_tour.py [MODEL]   (default: $LMQ_MODEL, else smollm2)
"""

import asyncio
import sys

import lmq

MODEL = sys.argv[1] if len(sys.argv) > 1 else None  # None: LMQ_MODEL, lmq.toml, smollm2

capital = lmq.query(
    '"{:user}What is the capital of {country}? Answer in one sentence.{:assistant}[ANSWER]" '
    'where STOPS_AT(ANSWER, ".") and len(TOKENS(ANSWER)) < 16',
    model=MODEL)

# One call: a Result.
result = capital(country="France")
print(repr(result))
print("answer:", repr(result["ANSWER"]))
print("tokens:", len(result.logprobs["ANSWER"]), "forward passes:", result.stats["forward_passes"])
print("json keys:", sorted(result.to_dict()))

# Many calls in lockstep: results in input order, errors in place.
answers = capital.batch([{"country": "Peru"}, {"country": "Japan"}, {"contry": "Chile"}])
for params, answer in zip(["Peru", "Japan", "(misspelled parameter)"], answers):
    print(f"{params:>24}: {answer!r}")
print("batch forward passes:", answers.stats["forward_passes"],
      "(one call each would take", sum(a.stats["forward_passes"] for a in answers
                                      if isinstance(a, lmq.Result)), ")")

# Streaming: tokens as they come, then the finished hole, then the result.
for event in capital.stream(country="Kenya"):
    if event["event"] == "token":
        print(event["text"], end="", flush=True)
    elif event["event"] == "hole":
        print(f"\n[hole {event['hole']} done]")
    else:
        print("result:", repr(event["result"]))

# From async code (and inside notebooks, where a loop is already running).
async def main():
    inline = capital(country="Italy")            # plain calls work inside a running loop
    awaited = await capital.acall(country="Spain")
    return inline, awaited

print(asyncio.run(main()))

# A decoder as text: three samples, best first.
poem = lmq.query('"{:user}Describe rain in one word.{:assistant}[W]" '
                 'where REGEX(W, r"[A-Z]?[a-z]+")', model=MODEL,
                 decoder="sample(n=3, temperature=0.6, seed=1)")
for sample in poem():
    print(f"{sample.score:8.3f} {sample['W']!r}")
