"""The Hierarchical Prompting Taxonomy: escalate through five strategies (PAPERS.md 7).

The strategies, from least to most cognitive demand (HPT's order, justified in the paper
by LLM-as-judge scores):

1. ``role`` — the task, answered "as" a role;
2. ``zero_shot_cot`` — "think step by step", then the final answer;
3. ``three_shot_cot`` — three worked examples (``examples``), then the task;
4. ``least_to_most`` — list sub-questions, answer them, then the final answer (one
   multi-hole lmq program, each step seeing the previous ones);
5. ``generated_knowledge`` — a (possibly different) model writes facts useful for the task,
   which are put in front of the task.

:func:`hierarchical` tries the levels in order until the answer passes ``check`` (a gold
answer or list of accepted answers, a regular expression, or a function) — so with a check
that needs no gold (the answer parses as a number, passes unit tests) escalation works at
deployment time. Its ``score`` is the HP-score of the item: the level of the first success,
or ``5 + penalty`` when every level fails (the paper's dataset-level penalties are in
:data:`PENALTIES`); :func:`hp_score` averages items (lower = easier task / abler model).

Every level's final answer is the hole ``ANSWER`` under ``answer_constraint`` (lmq
constraint text, default: one line of at most 32 tokens), so format constraints hold at
every level. Level 3 is skipped (counted as failed) without three ``examples``; level 5
makes one knowledge generation (the paper's code makes three).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lmq.stdlib import arguments

__all__ = ["hierarchical", "hp_score", "LEVELS"]

LEVELS = ("role", "zero_shot_cot", "three_shot_cot", "least_to_most", "generated_knowledge")
PENALTIES = {"boolq": 1.71, "csqa": 2.52, "iwslt": 1.92, "samsum": 2.23, "humaneval": 4.68,
             "gsm8k": 2.14, "mmlu": 3.03}
DEFAULT_ANSWER = 'STOPS_BEFORE(ANSWER, "\\n") and len(TOKENS(ANSWER)) < 32'
_STEP = 'STOPS_BEFORE({0}, "\\n\\n") and len(TOKENS({0})) < {1}'


def _programs(constraint: str, steps: int) -> dict[str, str]:
    """The lmq program of each level; parameters: task, role, shots, knowledge_model."""
    where = f"where\n    {constraint}\n"
    return {
        "role": ('argmax\n    "{:system}You are {role}.{:user}{task}\\nGive only the final '
                 'answer.{:assistant}[ANSWER]"\n' + where),
        "zero_shot_cot": (
            'argmax\n    "{:user}{task}\\nThink step by step, then write the final answer '
            'after \\"Final answer:\\".{:assistant}[REASONING]" where '
            f'STOPS_BEFORE(REASONING, "Final answer:") and len(TOKENS(REASONING)) < {steps}\n'
            '    "\\nFinal answer:\\n[ANSWER]"\n' + where),
        "three_shot_cot": (
            'argmax\n    "{:user}Solve the last task like the examples.\\n\\n{shots}'
            'Task: {task}{:assistant}Reasoning:[REASONING]" where '
            f'STOPS_BEFORE(REASONING, "Final answer:") and len(TOKENS(REASONING)) < {steps}\n'
            '    "\\nFinal answer:\\n[ANSWER]"\n' + where),
        "least_to_most": (
            'argmax\n    "{:user}{task}\\nFirst list the sub-questions that must be answered '
            'to solve this, without answering them.{:assistant}[SUBQUESTIONS]" where '
            + _STEP.format("SUBQUESTIONS", steps) + "\n"
            '    "{:user}Now answer each sub-question in turn.{:assistant}[SOLUTIONS]" where '
            + _STEP.format("SOLUTIONS", steps) + "\n"
            '    "{:user}Using these answers, give only the final answer.'
            '{:assistant}[ANSWER]"\n' + where),
        "generated_knowledge": (
            'argmax\n    "{:user}Write down facts that help with this task:\\n{task}'
            '{:assistant}[KNOWLEDGE]" from knowledge_model where '
            + _STEP.format("KNOWLEDGE", steps) + "\n"
            '    "{:user}Knowledge: {KNOWLEDGE}\\n\\nUsing this knowledge: {task}\\nGive only '
            'the final answer.{:assistant}[ANSWER]"\n' + where),
    }


def _checker(check: Any) -> Callable[[str], bool]:
    """The check as a function of the answer; by the check's type alone. A function a
    program passes arrives as a callback through its sandbox, whose result is a value the
    program could hold."""
    kind = type(check)
    if check is None:
        return lambda answer: bool(answer.strip())
    if issubclass(kind, re.Pattern):
        return lambda answer: check.fullmatch(answer.strip()) is not None
    if issubclass(kind, str):
        gold = _norm(check)
        return lambda answer: _norm(answer) == gold
    if issubclass(kind, (list, tuple)):
        accepted = {_norm(c) for c in arguments.texts(check, "check", "hierarchical")}
        return lambda answer: _norm(answer) in accepted
    if callable(check):
        return lambda answer: bool(check(answer))
    raise arguments.ArgumentError("hierarchical(): 'check' must be None, a function, a "
                                  "regular expression, an answer or a list of answers")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _shots(examples: Sequence[Mapping[str, str]] | None) -> str | None:
    if examples is None:
        return None
    examples = arguments.sequence(examples, "examples", "hierarchical")
    if len(examples) < 3:
        return None
    shots = []
    for example in examples[:3]:
        if not issubclass(type(example), Mapping):
            raise arguments.ArgumentError("hierarchical(): each example must be a dict with "
                                          "'question', 'answer' and 'reasoning'")
        question, reasoning, answer = (
            arguments.text(example.get(key, default), f"examples[...]['{key}']",
                           "hierarchical") for key, default in
            (("question", None), ("reasoning", ""), ("answer", None)))
        shots.append(f"Task: {question}\nReasoning: {reasoning.strip()}\n"
                     f"Final answer: {answer}\n\n")
    return "".join(shots)


def hierarchical(task: str, check: Any = None, answer_constraint: str | None = None,
                 role: str = "an expert problem solver",
                 examples: Sequence[Mapping[str, str]] | None = None, model: Any = None,
                 knowledge_model: Any = None, levels: Sequence[str] = LEVELS,
                 penalty: float = 0.0, steps: int = 96) -> dict[str, Any]:
    """Run the levels in order until an answer passes ``check``.

    ``check``: None (any non-empty answer), a function of the answer, a compiled regular
    expression (full match), a gold answer or a list of accepted answers (compared
    lower-cased, punctuation ignored). ``examples``: ``{"question", "reasoning",
    "answer"}`` dicts for level 3. ``knowledge_model`` writes level 5's facts (default:
    ``model``). ``steps`` bounds each intermediate hole in tokens.

    Returns ``{"answer", "level" (1-5, None if all failed), "strategy", "score",
    "attempts": [{"level", "strategy", "answer", "passed"}]}``; ``answer`` is the last
    attempt's when every level fails."""
    from lmq.api import query

    name = "hierarchical"
    task, role = arguments.text(task, "task", name), arguments.text(role, "role", name)
    answer_constraint = arguments.text(answer_constraint, "answer_constraint", name,
                                       optional=True)
    model = arguments.model(model, name)
    knowledge_model = arguments.model(knowledge_model, name)
    levels = arguments.texts(levels, "levels", name)
    penalty = arguments.number(penalty, "penalty", name)
    steps = arguments.integer(steps, "steps", name, low=1)
    unknown = [level for level in levels if level not in LEVELS]
    if unknown:
        raise arguments.ArgumentError(f"hierarchical(): unknown levels {unknown}; levels: "
                                      f"{', '.join(LEVELS)}")
    passes = _checker(check)
    programs = _programs(answer_constraint or DEFAULT_ANSWER, steps)
    shots = _shots(examples)
    attempts: list[dict[str, Any]] = []
    answer = None
    for level in levels:
        number = LEVELS.index(level) + 1
        if level == "three_shot_cot" and shots is None:
            attempts.append({"level": number, "strategy": level, "answer": None,
                             "passed": False, "skipped": "needs three examples"})
            continue
        compiled = query(programs[level], model=model)
        params = {"task": task, "role": role, "shots": shots,
                  "knowledge_model": knowledge_model if knowledge_model is not None else model}
        result = compiled(**{name: params[name] for name in compiled.params})
        result = result[0] if isinstance(result, list) else result
        value = result.variables["ANSWER"]
        answer = value.strip() if isinstance(value, str) else value
        ok = passes(str(answer))
        attempts.append({"level": number, "strategy": level, "answer": answer, "passed": ok})
        if ok:
            return {"answer": answer, "level": number, "strategy": level, "score": number,
                    "attempts": attempts}
    return {"answer": answer, "level": None, "strategy": None, "score": 5 + penalty,
            "attempts": attempts}


def hp_score(results: Sequence[Any], penalty: float = 0.0) -> float:
    """The HP-score of a dataset: the mean over items of the level of first success, or
    ``5 + penalty`` for items no level solved. Items are levels (int or None) or
    :func:`hierarchical` results."""
    penalty = arguments.number(penalty, "penalty", "hp_score")
    values = []
    for item in arguments.sequence(results, "results", "hp_score"):
        level = item.get("level") if issubclass(type(item), Mapping) else item
        values.append(arguments.number(level, "results[...]", "hp_score") if level is not None
                      else 5.0 + penalty)
    return sum(values) / len(values) if values else 0.0
