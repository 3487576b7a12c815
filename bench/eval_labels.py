"""Evaluate label classification three ways on the labels dev set (data README "Labels").

(a) ``free``: unconstrained generation up to a newline, parsed afterwards;
(b) ``labels``: decoding under ``LABELS(L, labels, sep=",", max=k)``;
(c) ``scores``: one batched scoring pass over the shared prompt (a ``distribution``
    clause); single-label sets take the top label; topics (1-3 labels) take every label
    whose probability reaches a threshold calibrated by two-fold cross-fitting on the dev
    items (each half is scored with the threshold fitted on the other half), reported
    raw and with content-free calibration (``calibrate=True``), plus top-1 for reference.

All methods use the same prompt (``lmq.stdlib.labels``). Reported per label set: validity
rate, exact-set accuracy, micro-F1 and forward passes per item; topics also split into
single- and multi-label items.

    python bench/eval_labels.py --model smollm2 --limit 8 --out /tmp/labels.json

``--limit N`` keeps the first N items of each group (topics single, topics multi, intents).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lmq.stdlib.labels import calibrate_threshold, choose_by_threshold, classify, label_metrics

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KINDS = {"topics": "topic", "intents": "intent"}


def data_dir() -> Path:
    for candidate in (os.environ.get("LMQ_EVAL_DATA"), DATA, Path("/work/shared/data")):
        if candidate and (Path(candidate) / "labels_dev.jsonl").is_file():
            return Path(candidate)
    sys.exit("labels_dev.jsonl not found (set LMQ_EVAL_DATA)")


def group(item: dict) -> str:
    if item["label_set"] == "intents":
        return "intents"
    return "topics-single" if len(item["labels"]) == 1 else "topics-multi"


def run_item(item: dict, label_sets: dict, model: str) -> dict:
    labels = label_sets[item["label_set"]]
    multi = item["label_set"] == "topics"
    options = {"multi": multi, "max": 3, "model": model, "kind": KINDS[item["label_set"]]}
    out = {"id": item["id"], "group": group(item), "gold": item["labels"]}
    for method in ("free", "labels"):
        r = classify(item["text"], labels, method=method, scores=False, **options)
        out[method] = {"labels": r["labels"] if r["valid"] else None, "output": r["output"],
                       "passes": r["forward_passes"]}
    r = classify(item["text"], labels, method="scores", calibrate=True, **options)
    out["scores"] = {"raw": r["raw_scores"], "calibrated": r["scores"],
                     "passes": r["forward_passes"]}
    return out


def cross_fit(rows: list[dict], key: str) -> list[list[str]]:
    """Threshold predictions for topics rows: fold = position parity."""
    predictions: list[list[str]] = []
    for i, row in enumerate(rows):
        train = [{"scores": r["scores"][key], "labels": r["gold"]}
                 for j, r in enumerate(rows) if j % 2 != i % 2]
        threshold = calibrate_threshold(train) if train else None
        predictions.append(choose_by_threshold(row["scores"][key], threshold, 3))
    return predictions


def table(rows: list[dict]) -> tuple[str, dict]:
    topics = [r for r in rows if r["group"] != "intents"]
    preds: dict[str, dict[str, list]] = {}
    for r in rows:
        scored = r["scores"]
        top1 = choose_by_threshold(scored["raw"], None, 1)
        top1c = choose_by_threshold(scored["calibrated"], None, 1)
        entry = preds.setdefault(r["id"], {})
        entry["(a) free generation, parsed"] = r["free"]["labels"]
        entry["(b) LABELS decoding"] = r["labels"]["labels"]
        entry["(c) scores, top-1"] = top1
        entry["(c) scores, calibrated, top-1"] = top1c
    for key, name in (("raw", "(c) scores, threshold"),
                      ("calibrated", "(c) scores, calibrated, threshold")):
        for r, p in zip(topics, cross_fit(topics, key)):
            preds[r["id"]][name] = p
    passes = {"(a) free generation, parsed": "free", "(b) LABELS decoding": "labels"}
    methods = list(dict.fromkeys(m for entry in preds.values() for m in entry))
    lines = ["| items | method | n | validity | exact-set acc. | micro-F1 | passes/item |",
             "|---|---|---|---|---|---|---|"]
    report: dict = {}
    for name, members in (("topics (all)", topics),
                          ("topics single-label", [r for r in topics
                                                   if r["group"] == "topics-single"]),
                          ("topics multi-label", [r for r in topics
                                                  if r["group"] == "topics-multi"]),
                          ("intents", [r for r in rows if r["group"] == "intents"])):
        if not members:
            continue
        for method in methods:
            if any(method not in preds[r["id"]] for r in members):
                continue
            m = label_metrics([preds[r["id"]][method] for r in members],
                              [r["gold"] for r in members])
            field = passes.get(method, "scores")
            fp = sum(r[field]["passes"] for r in members) / len(members)
            report.setdefault(name, {})[method] = {**m, "passes_per_item": fp}
            lines.append(f"| {name} | {method} | {m['n']} | {m['validity']:.3f} | "
                         f"{m['exact']:.3f} | {m['micro_f1']:.3f} | {fp:.1f} |")
    if topics:
        report["topics_threshold_all_dev"] = {
            key: calibrate_threshold([{"scores": r["scores"][key], "labels": r["gold"]}
                                      for r in topics]) for key in ("raw", "calibrated")}
    return "\n".join(lines), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--limit", type=int, default=None,
                        help="first N items of each group (topics single/multi, intents)")
    parser.add_argument("--out", help="write per-item outputs and metrics as JSON")
    args = parser.parse_args(argv)
    folder = data_dir()
    label_sets = json.loads((folder / "label_sets.json").read_text())
    items = [json.loads(line) for line in (folder / "labels_dev.jsonl").read_text().splitlines()
             if line.strip()]
    if args.limit is not None:
        counts: dict[str, int] = {}
        kept = []
        for item in items:
            counts[group(item)] = counts.get(group(item), 0) + 1
            if counts[group(item)] <= args.limit:
                kept.append(item)
        items = kept
    started = time.perf_counter()
    rows = []
    for i, item in enumerate(items, 1):
        rows.append(run_item(item, label_sets, args.model))
        print(f"[{i}/{len(items)}] {item['id']} gold={item['labels']} "
              f"free={rows[-1]['free']['labels']} labels={rows[-1]['labels']['labels']} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    text, report = table(rows)
    print(f"model: {args.model}, items: {len(rows)}, "
          f"{time.perf_counter() - started:.0f} s\n")
    print(text)
    if "topics_threshold_all_dev" in report:
        print(f"\nthreshold fitted on all topics dev items: {report['topics_threshold_all_dev']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "rows": rows,
                                              "metrics": report}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
