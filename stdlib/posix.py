"""POSIX, the prompt sensitivity index (Chatterjee et al., EMNLP 2024 Findings; PAPERS.md 6).

For an intent-aligned set of prompts ``x_1..x_N`` with responses ``y_j`` (the model's
greedy answer to ``x_j``, or given)::

    psi = 1/(N(N-1)) * sum_i sum_j (1/L_{y_j}) * | log P(y_j | x_i) - log P(y_j | x_j) |

and POSIX is the mean of ``psi`` over sets. ``L_{y_j}`` is the number of tokens of ``y_j``
(an empty response contributes 0). It is 0 when every prompt gives the same response with
the same likelihood, and grows with response diversity and changes of confidence.

``posix(query_source, variants)`` takes an lmq program whose first hole is the response:
each variant is that program's parameters (a dict, or a string bound to its only
parameter), so ``x_i`` is the exact prompt the runtime shows before the hole (chat turns
included). The ``N x N`` matrix ``A[i][k] = log P(y_k | x_i)`` costs one forward pass over
the N prompts and N batched scoring passes (all responses on top of each prompt's KV
cache). ``variant="repo"`` computes the authors' code instead (``|A[j][i] - A[j][j]|``
divided by ``max_tokens``: same prompt, two responses), for parity checks only.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from lmq.runtime.interpreter.budget import Budget
from lmq.runtime.scoring import encode, prompt_ids, score_after
from lmq.stdlib import arguments

__all__ = ["posix", "psi", "typo_variants", "template_variants"]


def psi(matrix: Sequence[Sequence[float]], lengths: Sequence[int],
        variant: str = "paper", max_tokens: int = 5) -> float:
    """The sensitivity of one set from its log-likelihood matrix ``matrix[i][k] =
    log P(y_k | x_i)`` and response lengths in tokens."""
    name = "psi"
    variant = arguments.choice(variant, "variant", name, ("paper", "repo"))
    max_tokens = arguments.integer(max_tokens, "max_tokens", name, low=1)
    rows = arguments.sequence(matrix, "matrix", name)
    n = len(rows)
    arguments.work(n * n, f"a {n:,} x {n:,} matrix", name)
    matrix = [[arguments.number(x, "matrix[...][...]", name)
               for x in arguments.sequence(row, "matrix[...]", name)] for row in rows]
    lengths = [arguments.integer(x, "lengths[...]", name, low=0)
               for x in arguments.sequence(lengths, "lengths", name)]
    if any(len(row) != n for row in matrix) or len(lengths) < n:
        raise arguments.ArgumentError(f"psi(): 'matrix' must be {n} x {n} and 'lengths' "
                                      f"have {n} entries")
    if n < 2:
        return 0.0
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if variant == "paper":
                if lengths[j]:
                    total += abs(matrix[i][j] - matrix[j][j]) / lengths[j]
            else:
                total += abs(matrix[j][i] - matrix[j][j]) / max_tokens
    return total / (n * (n - 1))


def _params(source: str, variant: Any) -> dict[str, Any]:
    if issubclass(type(variant), Mapping):
        return dict(variant)
    from lmq.api import compile_cached

    params = compile_cached(source, "<stdlib>").params
    if len(params) != 1:
        raise arguments.ArgumentError(f"posix(): a variant given as a string needs a program "
                                      f"with exactly one parameter, not {list(params)}; pass "
                                      "dicts of parameters")
    return {params[0]: variant}


def _generate(source: str, params: Sequence[dict[str, Any]], model: Any,
              max_tokens: int) -> list[str]:
    """Each variant's greedy response: the raw text of the program's first hole."""
    from lmq.api import query

    compiled = query(source, model=model, decoder=f"argmax(max_tokens={int(max_tokens)})")
    out = []
    for p in params:
        result = compiled(**p)
        result = result[0] if isinstance(result, list) else result
        out.append(next((text for text, hole in result.segments if hole is not None), ""))
    return out


def posix(query_source: str, variants: Sequence[Any], responses: Sequence[Any] | None = None,
          model: Any = None, max_tokens: int = 5, variant: str = "paper") -> dict[str, Any]:
    """The prompt sensitivity index of ``model`` on the intent-aligned ``variants``.

    ``variants`` is one set (a list of variants) or several (a list of lists); each variant
    is a dict of the program's parameters or a string for its only parameter.
    ``responses`` (same shape) skips generation. Returns ``{"posix": mean psi, "sets":
    [{"responses", "lengths", "matrix", "psi"}]}``. Each set of ``N`` variants costs
    ``N`` runs of the program and ``N * N`` scored continuations, within the caller's
    limits."""
    name = "posix"
    query_source = arguments.text(query_source, "query_source", name)
    variants = arguments.sequence(variants, "variants", name)
    model = arguments.model(model, name)
    max_tokens = arguments.integer(max_tokens, "max_tokens", name, low=1)
    variant = arguments.choice(variant, "variant", name, ("paper", "repo"))
    nested = bool(variants) and all(issubclass(type(v), (list, tuple)) for v in variants)
    sets = [arguments.sequence(v, "variants[...]", name) for v in variants] if nested \
        else [variants]
    arguments.work(sum(len(members) ** 2 for members in sets), "its scored continuations",
                   name)
    for members in sets:
        for member in members:
            if not issubclass(type(member), (dict, str)):
                raise arguments.ArgumentError("posix(): each variant must be a dict of "
                                              "parameters or a string")
    if responses is not None:
        given = [arguments.texts(r, "responses[...]", name)
                 for r in arguments.sequence(responses, "responses", name)] if nested \
            else [arguments.texts(responses, "responses", name)]
        if [len(r) for r in given] != [len(s) for s in sets]:
            raise arguments.ArgumentError("posix(): 'responses' must have the shape of "
                                          "'variants'")
    out: list[dict[str, Any]] = []
    for index, members in enumerate(sets):
        params = [_params(query_source, v) for v in members]
        answers = given[index] if responses is not None else \
            _generate(query_source, params, model, max_tokens)
        answers = [str(a) for a in answers]
        if not members:
            out.append({"responses": [], "lengths": [], "matrix": [], "psi": 0.0})
            continue
        prefixes: list[list[int]] = []
        view: Any = None
        for p in params:
            Budget.check_time()
            view, ids = prompt_ids(query_source, p, model)
            prefixes.append(ids)
        encoded = [encode(view, a) for a in answers]
        scores = score_after(view, prefixes, [encoded] * len(prefixes))
        matrix = [[sum(scores[i][k]) for k in range(len(answers))] for i in range(len(prefixes))]
        lengths = [len(e) for e in encoded]
        out.append({"responses": answers, "lengths": lengths, "matrix": matrix,
                    "psi": psi(matrix, lengths, variant, max_tokens)})
    value = sum(s["psi"] for s in out) / len(out) if out else 0.0
    return {"posix": value, "sets": out}


# ------------------------------------------------------------------ variant generators


def typo_variants(text: str, n: int = 3, rate: float = 0.05, seed: int = 0) -> list[str]:
    """``text`` and ``n - 1`` copies with seeded spelling errors (adjacent letters swapped
    at about ``rate`` of the letters; at least one swap each when there are two letters)."""
    name = "typo_variants"
    text = arguments.text(text, "text", name)
    n = arguments.integer(n, "n", name, low=0)
    rate = arguments.number(rate, "rate", name)
    seed = arguments.integer(seed, "seed", name)
    arguments.count(n, "n", name)
    arguments.characters(n * len(text), f"{n:,} copies of the text", name)
    rng = random.Random(seed)
    out = [text]
    for _ in range(max(n - 1, 0)):
        chars = list(text)
        spots = [i for i in range(len(chars) - 1) if chars[i].isalpha() and chars[i + 1].isalpha()]
        swaps = max(1, round(rate * len(spots))) if spots else 0
        for i in rng.sample(spots, min(swaps, len(spots))):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        out.append("".join(chars))
    return out


TEMPLATES = ("Question: {q}\nAnswer:", "Q: {q}\nA:", "{q}\nThe answer is", "{q}")


def template_variants(question: str, templates: Sequence[str] = TEMPLATES) -> list[str]:
    """``question`` in each template (``{q}`` marks its place): template-change variants."""
    name = "template_variants"
    question = arguments.text(question, "question", name)
    templates = arguments.texts(templates, "templates", name)
    arguments.characters(sum(len(t) + t.count("{q}") * len(question) for t in templates),
                         "the variants", name)
    return [t.replace("{q}", question) for t in templates]
