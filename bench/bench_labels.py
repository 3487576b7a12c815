"""Label classification of ../shared/data/labels_dev.jsonl: trie decoding against scoring.

Every item is classified top-1 (correct when the label is among the item's gold labels) by:

* trie decoding: ``"…{field}:[L]" where L in [" business", …]`` — the label trie masks each
  step, forced tokens append what a label prefix leaves no choice about;
* the same program, 16 items per ``q.batch`` (rows in lockstep);
* the ``distribution`` clause: the prompt once, then every label scored in one batched pass on
  the shared prompt;
* one forward per label (the naive baseline, no lmq): the model run on prompt + label for each
  label, no cache shared, log-probabilities of the label tokens summed.

And the multi-label topic items with ``LABELS(L, topics, sep=", ", max=3)`` (trie decoding of
a label list; exact-set matches shown).

    python bench/bench_labels.py [--quick] [--model smollm2] [--data PATH]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from common import ROOT, Table, command_line, describe, parser, setup, sync

DATA = ROOT.parent / "shared" / "data"
PROMPTS = {
    "topics": "Classify the news text into one of these topics: {names}.\nText: {text}\nTopic:",
    "intents": "Classify the bank customer's request into one of these intents: {names}.\n"
               "Request: {text}\nIntent:",
}
TRIE = '"{prompt}[L]" where L in labels'
DISTRIBUTION = 'argmax\n    "{prompt}[L]"\ndistribution\n    L in labels\n'
MULTI = '"{prompt}[L]" where LABELS(L, names, sep=", ", min=1, max=3)'


def load(path: Path) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    sets = json.loads((path.parent / "label_sets.json").read_text())
    return items, sets


def params(item: dict[str, Any], sets: dict[str, list[str]]) -> dict[str, Any]:
    names = sets[item["label_set"]]
    prompt = PROMPTS[item["label_set"]].format(names=", ".join(names), text=item["text"])
    return {"prompt": prompt, "labels": [" " + n for n in names]}


def naive(backend: Any, prompt: str, labels: list[str]) -> tuple[int, int, int]:
    """One forward per label on prompt + label: (best index, forward passes, tokens fed)."""
    import torch

    model, fed = backend.model, 0
    prompt_len = len(backend.vocabulary.encode(prompt))
    scores = []
    with torch.inference_mode():
        for label in labels:
            ids = backend.vocabulary.encode(prompt + label)
            tensor = torch.tensor([ids], device=model.device)
            logits = model(input_ids=tensor).logits[0].float()
            logprobs = torch.log_softmax(logits[prompt_len - 1:-1], dim=-1)
            target = tensor[0, prompt_len:]
            scores.append(float(logprobs.gather(-1, target[:, None]).sum()))
            fed += len(ids)
    best = max(range(len(labels)), key=scores.__getitem__)
    return best, len(labels), fed


def main(argv: list[str] | None = None) -> list[Table]:
    import lmq

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA / "labels_dev.jsonl"))
    args = p.parse_args(argv)
    repeat = args.repeat or 1
    items, sets = load(Path(args.data))
    if args.quick:
        items = [i for i in items if len(i["labels"]) == 1][:4] + \
            [i for i in items if len(i["labels"]) > 1][:2] + \
            [i for i in items if i["label_set"] == "intents"][:2]
    backend = setup(args)
    print(f"# bench_labels: {describe(backend)}", flush=True)
    trie = lmq.query(TRIE, model=backend)
    dist = lmq.query(DISTRIBUTION, model=backend)
    inputs = [params(item, sets) for item in items]
    stats: dict[str, dict[str, float]] = {}

    def add(method: str, seconds: float, passes: float, fed: float, correct: int) -> None:
        row = stats.setdefault(method, {"s": 0.0, "passes": 0, "fed": 0, "correct": 0})
        row["s"] += seconds
        row["passes"] += passes
        row["fed"] += fed
        row["correct"] += correct

    def timed_call(fn: Any) -> tuple[float, Any, int]:
        sync(backend.device)
        fed = backend.stats.tokens_fed
        start = time.perf_counter()
        value = fn()
        sync(backend.device)
        return time.perf_counter() - start, value, backend.stats.tokens_fed - fed

    # warm-up: compile the tries and the queries once
    trie(**inputs[0])
    dist(**inputs[0])
    for _ in range(repeat):
        for item, given in zip(items, inputs):
            gold = {" " + g for g in item["labels"]}
            s, r, fed = timed_call(lambda given=given: trie(**given))
            add("trie decoding (X in labels)", s, r.stats["forward_passes"], fed,
                r.variables["L"] in gold)
            s, r, fed = timed_call(lambda given=given: dist(**given))
            add("distribution clause (one scoring pass)", s, r.stats["forward_passes"], fed,
                r.variables["L"] in gold)
            s, (best, passes, fed), _ = timed_call(
                lambda given=given: naive(backend, given["prompt"], given["labels"]))
            add("one forward per label (naive)", s, passes, fed,
                given["labels"][best] in gold)
        for start in range(0, len(items), 16):
            chunk, given = items[start:start + 16], inputs[start:start + 16]
            s, answers, fed = timed_call(lambda given=given: trie.batch(given, batch_size=16,
                                                                        errors="raise"))
            add("trie decoding, q.batch(16)", s, answers.stats["forward_passes"], fed,
                sum(a.variables["L"] in {" " + g for g in i["labels"]}
                    for a, i in zip(answers, chunk)))
    n = len(items) * repeat
    table = Table(f"Labels: {len(items)} items of {Path(args.data).name}, top-1",
                  command_line("bench_labels.py", args),
                  ["method", "forward passes / item", "tokens fed / item", "ms / item",
                   "speed-up vs naive", "top-1 correct"])
    base = stats["one forward per label (naive)"]
    for method, row in stats.items():
        table.add(method, row["passes"] / n, row["fed"] / n, 1000 * row["s"] / n,
                  base["s"] / row["s"], f"{row['correct'] // repeat}/{len(items)}")
    multi = [(i, g) for i, g in zip(items, inputs) if i["label_set"] == "topics"
             and len(i["labels"]) > 1]
    try:
        labels_q = lmq.query(MULTI, model=backend)
        labels_q(prompt=multi[0][1]["prompt"], names=sets["topics"])  # warm-up
        total = passes = fed_total = exact = 0
        for item, given in multi:
            s, r, fed = timed_call(lambda given=given: labels_q(prompt=given["prompt"],
                                                                names=sets["topics"]))
            total += s
            passes += r.stats["forward_passes"]
            fed_total += fed
            exact += set(r.variables["L"]) == set(item["labels"])
        table.add(f"LABELS(max=3), multi-label topic items ({len(multi)})", passes / len(multi),
                  fed_total / len(multi), 1000 * total / len(multi), "–",
                  f"{exact}/{len(multi)} exact sets")
    except lmq.LmqError as error:
        table.notes.append(f"LABELS row skipped: {error}")
    k = {name: len(v) for name, v in sets.items()}
    table.notes += [
        f"{describe(backend)}; times are means over the items ({repeat} round(s), after a "
        f"warm-up item); label sets: {k}.",
        "tokens fed: every token the model processed (lmq: backend counter; naive: prompt + "
        "label per label). Top-1 correct: the chosen label is among the item's gold labels.",
        f"naive baseline: {base['passes'] / n:.1f} forward passes per item (one per label); "
        "the distribution clause needs 2 (prompt, then all labels in one batched pass).",
    ]
    table.show()
    return [table]


if __name__ == "__main__":
    main()
