"""Tools, few-shot examples and questions of the three LMQL case studies (bench_lmql_cases.py).

The few-shot texts and questions are written for this benchmark in the style of the paper's
tasks (BIG-bench Odd One Out, HotpotQA with ReAct, GSM8K with calculator annotations); they
are not copied from those data sets. ``lookup`` is a tiny offline stand-in for a Wikipedia
search; ``calculate`` evaluates arithmetic safely (numbers, + - * / and parentheses).

    lmq run bench/cases/react.lmq --tools bench/cases/tools.py:lookup \\
        --arg examples="$(python -c 'from bench.cases.tools import *; print(REACT_EXAMPLES)')" ...
"""

from __future__ import annotations

import ast
import operator

# ----------------------------------------------------------------------------- odd one out

OOO_EXAMPLES = (
    "Pick the odd word out: shirt, trousers, spoon, coat.\n"
    "shirt is clothing, trousers is clothing, spoon is cutlery, coat is clothing.\n"
    "So the odd one is spoon.\n\n"
    "Pick the odd word out: Norway, Sweden, Danish, Finland, Iceland.\n"
    "Norway is a country, Sweden is a country, Danish is a language, Finland is a country, "
    "Iceland is a country.\n"
    "So the odd one is Danish.\n\n"
)
OOO_QUESTIONS = [
    (["apple", "banana", "carrot", "cherry"], "carrot"),
    (["dog", "cat", "hammer", "horse"], "hammer"),
    (["red", "blue", "seven", "green"], "seven"),
    (["violin", "guitar", "cello", "trumpet"], "trumpet"),
]

# ----------------------------------------------------------------------------- ReAct

REACT_EXAMPLES = (
    "Question: Which mountain range contains the highest peak of the country where the "
    "Matterhorn stands?\n"
    "Thought 1: I need to find where the Matterhorn stands, then the highest peak of that "
    "country and its range.\n"
    "Action 1: Search[Matterhorn]\n"
    "Observation 1: The Matterhorn is a mountain of the Alps on the border between "
    "Switzerland and Italy.\n"
    "Thought 2: The Matterhorn stands in Switzerland. I need the highest peak of "
    "Switzerland.\n"
    "Action 2: Search[Switzerland]\n"
    "Observation 2: Switzerland is a country in Central Europe. Its highest peak is the "
    "Dufourspitze in the Monte Rosa massif of the Alps.\n"
    "Thought 3: The highest peak is in the Monte Rosa massif of the Alps, so the answer is "
    "the Alps.\n"
    "Action 3: Finish[the Alps]\n\n"
)
REACT_QUESTIONS = [
    ("In which country was the scientist who discovered penicillin born?", "Scotland"),
    ("Which river flows through the capital of Austria?", "Danube"),
    ("In which city is the university that Alan Turing attended for his PhD?", "Princeton"),
]
WIKI = {
    "penicillin": "Penicillin was discovered in 1928 by the Scottish scientist Alexander "
                  "Fleming at St Mary's Hospital in London.",
    "alexander fleming": "Sir Alexander Fleming (1881-1955) was a physician and "
                         "microbiologist, born in Darvel, Scotland.",
    "scotland": "Scotland is a country that is part of the United Kingdom. Its capital is "
                "Edinburgh.",
    "austria": "Austria is a country in Central Europe. Its capital and largest city is "
               "Vienna.",
    "vienna": "Vienna is the capital of Austria. It lies on the river Danube.",
    "danube": "The Danube is the second-longest river in Europe; it flows through Vienna, "
              "Bratislava, Budapest and Belgrade.",
    "alan turing": "Alan Turing was an English mathematician. He studied at King's College, "
                   "Cambridge, and received his PhD from Princeton University in 1938.",
    "princeton university": "Princeton University is a private research university in "
                            "Princeton, New Jersey, United States.",
    "king's college, cambridge": "King's College is a constituent college of the University "
                                 "of Cambridge, England.",
}


def lookup(subject: str) -> str:
    """The first sentence(s) of the entry whose title best matches ``subject``."""
    key = " ".join(str(subject).strip().strip(".").lower().split())
    if key in WIKI:
        return WIKI[key]
    for title, text in WIKI.items():
        if key and (key in title or title in key):
            return text
    similar = [t.title() for t in WIKI if set(t.split()) & set(key.split())][:3]
    return f"Could not find {subject}. Similar: {similar}."


# ----------------------------------------------------------------------------- calculator

CALC_EXAMPLES = (
    "Q: A baker makes 36 rolls in the morning and a third as many in the afternoon. How many "
    "rolls does the baker make that day?\n"
    "A: Let's think step by step.\n"
    "In the afternoon the baker makes 36/3 = <<36/3=12>>12 rolls.\n"
    "That day the baker makes 36+12 = <<36+12=48>>48 rolls.\n"
    "So the answer is 48.\n\n"
    "Q: Tom buys 4 books at 7 dollars each and pays with a 50 dollar note. How much change "
    "does he get?\n"
    "A: Let's think step by step.\n"
    "The books cost 4*7 = <<4*7=28>>28 dollars.\n"
    "His change is 50-28 = <<50-28=22>>22 dollars.\n"
    "So the answer is 22.\n\n"
)
CALC_QUESTIONS = [
    ("A farmer has 15 cows and buys 3 times as many sheep. How many animals does the farmer "
     "have now?", 60),
    ("Anna reads 12 pages a day. How many days does she need for a book of 96 pages?", 8),
    ("A ticket costs 9 dollars. How much do 6 tickets cost with a 5 dollar discount on the "
     "total?", 49),
]

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.USub: operator.neg, ast.UAdd: operator.pos}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.operand))
    raise ValueError("not arithmetic")


def calculate(expression: str) -> str:
    """The value of an arithmetic expression (a trailing ``=`` is ignored), as text;
    ``?`` if it is not one."""
    text = str(expression).strip().rstrip("=").strip()
    try:
        value = _evaluate(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return "?"
    if abs(value) > 1e15:
        return "?"
    value = round(value, 2)
    return str(int(value)) if float(value).is_integer() else str(value)
