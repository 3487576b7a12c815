"""functions.py — queries as Python functions, and queries inside queries.

Shows: ``@lmq.query`` (the docstring is the program, the function's parameters are the
query's parameters, defaults included); ``lmq.F`` (one hole, its value returned); a
host query passed as a tool and used as a nested query ``[X: summarize(doc)]``; a Python
function as a tool and as a predicate.

Run: python examples/functions.py [MODEL]   (default: $LMQ_MODEL, else smollm2)
"""

import sys

import lmq

MODEL = sys.argv[1] if len(sys.argv) > 1 else None


@lmq.query(model=MODEL)
def capital(country, question="What is the capital of"):
    r'''
    "Q: {question} {country}?\nA:[A]" where STOPS_AT(A, "\n") and len(TOKENS(A)) < 16
    '''


print(capital)
print(repr(capital("France")["A"]))
print(repr(capital(country="Peru", question="Which river flows through").prompt))

# lmq.F: prompt-string content and a constraint; the call returns the hole's value. The
# integer ends where the model stops writing digits (SmolLM2 writes one digit per token, so
# a year takes four; the bound only guards against a model that never stops).
year = lmq.F("The first moon landing was in the year [YEAR: int]", "len(TOKENS(YEAR)) < 8",
             model=MODEL)
print("year:", year(), type(year()).__name__)
pick = lmq.F("The best season for {activity} is[S]",
             'S in [" spring", " summer", " autumn", " winter"]', model=MODEL)
print("season:", repr(pick(activity="skiing")))

# A query used as a nested query by another: its own constraints apply, its holes stay
# inside, and with `return` only the returned value stays in the outer prompt.
summarize = lmq.query('"{text}\\nIn one sentence:[SUMMARY]" where STOPS_AT(SUMMARY, ".") '
                      'and len(TOKENS(SUMMARY)) < 20\n'
                      'return SUMMARY.strip()')


def word_count(text):
    return len(text.split())


def not_empty(text):
    return bool(text.strip())


report = lmq.query(
    '"Document: {doc}\\n[GIST: summarize(doc)]\\n"\n'
    '"({word_count(doc)} words) Keywords:[KEYS]" where not_empty(KEYS) and len(TOKENS(KEYS)) < 8',
    model=MODEL, tools={"summarize": summarize, "word_count": word_count,
                        "not_empty": not_empty})
result = report(doc="The Analytical Engine was a proposed mechanical computer.")
print(result.prompt)
print(sorted(result.variables))
