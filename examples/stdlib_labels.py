"""stdlib_labels.py — classification into a fixed label set, three ways.

Shows: ``lmq.stdlib.labels.classify`` with ``method="labels"`` (decoding under LABELS:
always a list of labels from the set), ``method="scores"`` (every label scored as the
answer in one batched pass; per-label probabilities), ``method="free"`` (unconstrained
generation parsed afterwards, which may be invalid), and ``calibrate_threshold`` fitting
the multi-label threshold on a small dev set, then applying it.

Run: python examples/stdlib_labels.py [MODEL]   (default: $LMQ_MODEL, else smollm2)
"""

import sys

from lmq.stdlib.labels import calibrate_threshold, classify, label_metrics

MODEL = sys.argv[1] if len(sys.argv) > 1 else None
TOPICS = ["business", "sports", "politics", "science", "health"]
text = "The new vaccine cut hospital admissions by half in a large clinical trial."

for method in ("labels", "scores", "free"):
    out = classify(text, TOPICS, method=method, model=MODEL, kind="topic", scores=False)
    print(f"{method:>6}: {out['labels']}  valid={out['valid']}  "
          f"forward passes={out['forward_passes']}")

# Multi-label: fit the threshold on a dev set, apply it to new text.
dev = [("Shares fell after the minister announced new taxes.", ["business", "politics"]),
       ("The striker scored twice in the final.", ["sports"]),
       ("A study links exercise to lower blood pressure.", ["science", "health"])]
scored = [{"scores": classify(t, TOPICS, multi=True, method="scores", model=MODEL,
                              kind="topic")["scores"], "labels": gold} for t, gold in dev]
threshold = calibrate_threshold(scored)
out = classify("Parliament debated funding for cancer research.", TOPICS, multi=True,
               method="scores", threshold=threshold, model=MODEL, kind="topic")
print(f"threshold {threshold:.3f} -> {out['labels']}")
print("top scores:", {k: round(v, 3) for k, v in sorted(out["scores"].items(),
                                                        key=lambda kv: -kv[1])[:3]})
predictions = [classify(t, TOPICS, multi=True, method="scores", threshold=threshold,
                        model=MODEL, kind="topic")["labels"] for t, _ in dev]
print("dev metrics:", label_metrics(predictions, [gold for _, gold in dev]))
