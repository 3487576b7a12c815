"""Classification into a fixed label set, three ways, and the metrics to compare them.

``classify(text, labels)`` asks the model which labels fit ``text`` with one prompt and
answers in one of three ways (``method``):

* ``"labels"`` (default): decode the answer under ``LABELS(L, labels, sep=sep, max=k)``, so it
  is always a list of distinct labels (PAPERS.md section 2.5, trie search);
* ``"scores"``: do not decode; score every label as the answer's continuation in one batched
  pass over the shared prompt (a ``distribution`` clause) and take the top label, or for
  ``multi=True`` every label whose probability reaches ``threshold``;
* ``"free"``: unconstrained generation up to a newline, parsed afterwards with
  :func:`parse_labels` (the baseline that can produce labels outside the set).

Every method also returns per-label ``scores`` (unless ``scores=False``): the model's
probability of each label as the answer, renormalised over the labels (they sum to 1).

**Calibrating the multi-label threshold.** The scores of one prompt sum to 1, so a text with
two topics splits the mass between them. :func:`calibrate_threshold` picks, from a dev set of
``{"scores": {...}, "labels": [...]}`` items, the threshold that maximises micro-F1 of the
rule "every label with probability >= threshold, at least the top one, at most ``max``"
(candidates: the midpoints between consecutive distinct scores; ties go to the larger
threshold, which predicts fewer labels). Fit it on a dev split and apply it unchanged to new
data; ``bench/eval_labels.py`` reports it with two-fold cross-fitting on the dev set.

``calibrate=True`` (the default) divides each label's probability by its probability for a
content-free text ("N/A", computed once per label set and prompt) before renormalising —
contextual calibration against a small model's preference for some labels (e.g. the first
listed). On the labels dev set with SmolLM2 it lifts top-1 accuracy from 0.70 to 0.95 on
single-label topics and from 0.33 to 0.50 on intents (``bench/RESULTS_EVAL.md``);
``calibrate=False`` gives the raw scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from lmq.stdlib import arguments

__all__ = ["classify", "parse_labels", "calibrate_threshold", "label_metrics"]

CONTENT_FREE = "N/A"
METHODS = ("labels", "scores", "free")


def _prompt(labels: Sequence[str], multi: bool, k: int, kind: str,
            question: str | None) -> dict[str, str]:
    """A plain completion prompt (no chat turns): the label list, the text, then
    ``Kind:`` — on SmolLM2-135M this beats a chat question, which invites copying the list."""
    title = kind[:1].upper() + kind[1:]
    if question is None:
        question = (f"The text has one to {k} {kind}s, separated by commas." if multi
                    else f"The text has one {kind}.")
    return {"choices": f"{title}s: {', '.join(labels)}", "question": question,
            "answer": f"{title}:"}


def _source(method: str) -> str:
    head = 'argmax\n    "{choices}\\n\\nText: {text}\\n{question}\\n{answer}[L]"\n'
    if method == "labels":
        return head + "where\n    LABELS(L, spaced, sep=sep, min=1, max=k)\n"
    if method == "free":
        return head + 'where\n    STOPS_BEFORE(L, "\\n") and len(TOKENS(L)) < 32\n'
    return head + "distribution\n    L in spaced\n"


def _run(method: str, text: str, labels: Sequence[str], multi: bool, sep: str, k: int,
         model: Any, kind: str = "label", question: str | None = None) -> Any:
    """Labels are written after a space (``"Topic: sports"``: a byte-level BPE model reads
    `` sports`` as one token), so the separator inside the program is ``sep`` without its
    trailing space."""
    from lmq.api import query

    params: dict[str, Any] = {"text": text,
                              **_prompt(labels, multi, k, kind, question),
                              "spaced": [" " + label for label in labels],
                              "sep": sep.rstrip() or sep, "k": k}
    compiled = query(_source(method), model=model)
    return compiled(**{name: params[name] for name in compiled.params})


@lru_cache(maxsize=64)
def _prior(labels: tuple[str, ...], multi: bool, k: int, model: Any, kind: str,
           question: str | None) -> tuple[float, ...]:
    result = _run("scores", CONTENT_FREE, labels, multi, ", ", k, model, kind, question)
    return tuple(result.distribution["L"][" " + label] for label in labels)


def classify(text: str, labels: Sequence[str], multi: bool = False, sep: str = ", ",
             max: int = 3, model: Any = None, threshold: float | None = None,
             method: str = "labels", scores: bool = True, calibrate: bool = True,
             kind: str = "label", question: str | None = None) -> dict[str, Any]:
    """Classify ``text`` into ``labels``; see the module docstring for the methods.

    Returns ``{"labels": [...], "scores": {label: probability}, "raw_scores": the scores
    before ``calibrate``, "output": raw text, "valid": bool, "forward_passes": int}``
    (``forward_passes`` of this call's runs; the content-free prior is computed once per
    label set and not counted). ``labels`` is in generated order (``"labels"``,
    ``"free"``) or by decreasing score (``"scores"``); for ``"free"`` an invalid output gives
    ``[]`` and ``valid=False``. ``max`` bounds the number of labels when ``multi``; a single
    label is chosen otherwise. ``threshold`` (``"scores"`` with ``multi`` only) keeps every
    label whose probability reaches it; without one, ``"scores"`` keeps the top label."""
    name = "classify"
    method = arguments.choice(method, "method", name, METHODS)
    text = arguments.text(text, "text", name)
    labels = arguments.texts(labels, "labels", name)
    if not labels or len(set(labels)) != len(labels):
        raise arguments.ArgumentError("classify(): 'labels' must be a non-empty list of "
                                      "distinct strings")
    multi, scores, calibrate = (arguments.flag(value, flag, name) for value, flag in (
        (multi, "multi"), (scores, "scores"), (calibrate, "calibrate")))
    sep, kind = arguments.text(sep, "sep", name), arguments.text(kind, "kind", name)
    question = arguments.text(question, "question", name, optional=True)
    threshold = arguments.number(threshold, "threshold", name, optional=True)
    model = arguments.model(model, name)
    k = arguments.integer(max, "max", name, low=1) if multi else 1
    passes = 0
    probabilities: dict[str, float] = {}
    raw: dict[str, float] = {}
    if scores or method == "scores":
        result = _run("scores", text, labels, multi, sep, k, model, kind, question)
        passes += result.stats.get("forward_passes", 0)
        probabilities = {label: result.distribution["L"][" " + label] for label in labels}
        raw = probabilities
        if calibrate:
            prior = _prior(tuple(labels), multi, k, model, kind, question)
            adjusted = {label: probabilities[label] / (p or 1e-12)
                        for label, p in zip(labels, prior)}
            total = sum(adjusted.values())
            probabilities = {label: value / total for label, value in adjusted.items()}
    if method == "scores":
        chosen = choose_by_threshold(probabilities, threshold if multi else None, k)
        return {"labels": chosen, "scores": probabilities, "raw_scores": raw,
                "output": sep.join(chosen), "valid": True, "forward_passes": passes}
    result = _run(method, text, labels, multi, sep, k, model, kind, question)
    passes += result.stats.get("forward_passes", 0)
    if method == "labels":
        chosen = [label.strip() for label in result.variables["L"]]
        output = sep.join(chosen)
        valid = True
    else:
        output = str(result.variables["L"]).strip()
        parsed = parse_labels(output, labels, sep, exactly_one=not multi)
        chosen, valid = parsed or [], parsed is not None
    return {"labels": chosen, "scores": probabilities, "raw_scores": raw, "output": output,
            "valid": valid, "forward_passes": passes}


def choose_by_threshold(probabilities: Mapping[str, float], threshold: float | None,
                        k: int) -> list[str]:
    """The labels by decreasing probability: the top one, then (with a ``threshold``) each
    further one whose probability reaches it, at most ``k``."""
    ranked = sorted(probabilities, key=lambda label: -probabilities[label])
    if not ranked:
        return []
    if threshold is None:
        return ranked[:1]
    return [ranked[0]] + [label for label in ranked[1:k] if probabilities[label] >= threshold]


def parse_labels(output: str, labels: Sequence[str], sep: str = ", ",
                 exactly_one: bool = False) -> list[str] | None:
    """The labels of a generated ``output``: split on ``sep`` (its stripped form, so
    ``","`` also splits ``"a ,b"``), strip each piece, match label names ignoring case.
    None when the output is not valid: empty, a piece that is no label, a repeated label,
    or (``exactly_one``) not exactly one label (the data README's validity rule)."""
    name = "parse_labels"
    output, sep = arguments.text(output, "output", name), arguments.text(sep, "sep", name)
    labels = arguments.texts(labels, "labels", name)
    exactly_one = arguments.flag(exactly_one, "exactly_one", name)
    by_name = {label.strip().lower(): label for label in labels}
    splitter = sep.strip() or sep
    if not splitter:
        raise arguments.ArgumentError("parse_labels(): 'sep' must not be empty")
    pieces = [piece.strip().lower() for piece in output.split(splitter)]
    if not pieces or any(not piece or piece not in by_name for piece in pieces):
        return None
    chosen = [by_name[piece] for piece in pieces]
    if len(set(chosen)) != len(chosen) or (exactly_one and len(chosen) != 1):
        return None
    return chosen


def calibrate_threshold(items: Iterable[Mapping[str, Any]], max: int = 3) -> float:
    """The threshold maximising micro-F1 of :func:`choose_by_threshold` on ``items``, each
    ``{"scores": {label: probability}, "labels": gold labels}``.

    One sweep down the candidate thresholds, each label's prediction switched on as the
    threshold passes its score: ``O(n log n)`` in the number of scores, where trying
    every candidate on every item would be quadratic."""
    k = arguments.integer(max, "max", "calibrate_threshold", low=1)
    scored, golds = _calibration_items(items)
    tp = fp = fn = 0
    predicted: list[dict[str, int]] = []
    events: list[tuple[float, int, str]] = []  # (score, item, label) beyond the top label
    for index, (scores, gold) in enumerate(zip(scored, golds)):
        ranked = sorted(scores, key=lambda label: -scores[label])
        got = {ranked[0].lower(): 1} if ranked else {}
        predicted.append(got)
        tp += len(got.keys() & gold)
        fp += len(got.keys() - gold)
        fn += len(gold - got.keys())
        events += [(scores[label], index, label.lower()) for label in ranked[1:k]]
    events.sort(key=lambda event: -event[0])
    values = sorted({p for scores in scored for p in scores.values()})
    candidates = sorted([1.01] + [(a + b) / 2 for a, b in zip(values, values[1:])],
                        reverse=True)
    best, best_f1, next_event = 1.01, -1.0, 0
    for threshold in candidates:
        while next_event < len(events) and events[next_event][0] >= threshold:
            _, index, label = events[next_event]
            next_event += 1
            got = predicted[index]
            if not got.get(label):
                if label in golds[index]:
                    tp, fn = tp + 1, fn - 1
                else:
                    fp += 1
            got[label] = got.get(label, 0) + 1
        f1 = _micro_f1(tp, fp, fn)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = threshold, f1
    return round(best, 6)


def _calibration_items(items: Any) -> tuple[list[dict[str, float]], list[set[str]]]:
    """The scores and the lower-cased gold labels of each item, checked."""
    name = "calibrate_threshold"
    if not issubclass(type(items), (list, tuple)):
        raise arguments.ArgumentError(f"{name}(): 'items' must be a list of dicts")
    arguments.count(len(items), "items", name)
    scored, golds, total = [], [], 0
    for item in items:
        if type(item) is not dict or type(item.get("scores")) is not dict:
            raise arguments.ArgumentError(f"{name}(): each item must be a dict with "
                                          "'scores' (a dict) and 'labels'")
        scores = {arguments.text(label, "scores", name):
                  arguments.number(p, "scores[...]", name)
                  for label, p in item["scores"].items()}
        total += len(scores)
        arguments.count(total, "the items' scores", name)
        scored.append(scores)
        golds.append({label.lower() for label in arguments.texts(item.get("labels"),
                                                                 "labels", name)})
    arguments.work(total + len(items), "the items' scores", name)
    return scored, golds


def _micro_f1(tp: int, fp: int, fn: int) -> float:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def label_metrics(predictions: Sequence[Sequence[str] | None],
                  golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Validity rate, exact-set accuracy and micro-F1 (data README): a prediction of None
    is invalid and counts as the empty set; labels compare ignoring case."""
    name = "label_metrics"
    golds = [arguments.texts(gold, "golds[...]", name)
             for gold in arguments.sequence(golds, "golds", name)]
    predictions = [None if predicted is None else arguments.texts(
        predicted, "predictions[...]", name)
        for predicted in arguments.sequence(predictions, "predictions", name)]
    n = len(golds)
    arguments.work(n + sum(map(len, golds)), "the predictions", name)
    if n == 0:
        return {"n": 0, "validity": 0.0, "exact": 0.0, "micro_f1": 0.0}
    valid = exact = tp = fp = fn = 0
    for predicted, gold in zip(predictions, golds):
        got = {p.lower() for p in predicted} if predicted else set()
        want = {g.lower() for g in gold}
        valid += predicted is not None and bool(predicted)
        exact += got == want
        tp += len(got & want)
        fp += len(got - want)
        fn += len(want - got)
    return {"n": n, "validity": valid / n, "exact": exact / n,
            "micro_f1": _micro_f1(tp, fp, fn)}
