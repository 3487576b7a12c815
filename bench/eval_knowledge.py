"""Evaluate knowledge preference (instruction > context > parametric) on the dev set.

Settings and scoring follow the data README ("Knowledge preference"): answers are
normalized (lower-case, no punctuation, no articles, collapsed whitespace) and compared with
the answer and its aliases; accuracy is reported per setting, plus the share of answers
equal to the parametric (world-knowledge) answer in the three conflict settings.

Every mode runs the same program: a system line, the instruction and the context as
``{:instruction}`` / ``{:context}`` sections, the question and the answer style. ``plain``
has no ``prefer`` clause; the others add ``prefer instruction > context > parametric with
mode="…"`` (LANGUAGE.md section 9, ``lmq.runtime.decoding.prefer``), the path a ``.lmq`` file takes:

* ``prompt``: the sections rewritten as labelled sections after a precedence sentence;
* ``cascade``: each source asked alone with an "unanswerable" way out, falling back down
  the hierarchy (``margin=`` decides);
* ``contrastive``: extra batch rows without each source, rank-weighted amplification
  under the plausibility constraint (one run per value of ``--plausibility``).

    python bench/eval_knowledge.py --model smollm2 --limit 4 --out /tmp/knowledge.json

``--limit N`` keeps the first N items of each setting; ``--modes`` picks modes. The
cascade runs once per item asking every source (``margin=inf``) and is reported at each of
``--margins`` (mean log-probability per token) by replaying its decision rule on the
recorded steps; its passes per item are those of the full run (an upper bound).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lmq
from lmq.runtime.decoding import prefer
from lmq.runtime.decoding.prefer import DEFAULT_PLAUSIBILITY
from lmq.stdlib.knowledge import STYLE, SYSTEM, is_correct, source_answered

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETTINGS = ("instruction_vs_context", "context_vs_parametric", "instruction_vs_parametric",
            "irrelevant_context", "all_agree")
CONFLICTS = SETTINGS[:3]
MODES = ("plain", "prompt", "cascade", "contrastive")

# The modes differ only in the prefer clause.
SECTIONED = '''argmax
    "{:system}{system}{:user}"
    if instruction:
        "{:instruction}{instruction}\\n"
    if context:
        "{:context}{context}\\n"
    "Question: {question}\\n{style}{:assistant}Answer:[A]"
where
    STOPS_BEFORE(A, "\\n") and len(TOKENS(A)) < 16
'''
PREFER = 'prefer\n    instruction > context > parametric with mode="{mode}"{options}\n'


def data_dir() -> Path:
    for candidate in (os.environ.get("LMQ_EVAL_DATA"), DATA, Path("/work/shared/data")):
        if candidate and (Path(candidate) / "knowledge_preference_dev.jsonl").is_file():
            return Path(candidate)
    sys.exit("knowledge_preference_dev.jsonl not found (set LMQ_EVAL_DATA)")


def program(mode: str) -> str:
    """The evaluated program of ``mode``; the cascade asks every source (``margin=inf``),
    the contrastive mode takes ``plausibility`` as a parameter."""
    if mode == "plain":
        return SECTIONED
    options = {"cascade": ", margin=margin", "contrastive": ", plausibility=plausibility"}
    return SECTIONED + PREFER.format(mode=mode, options=options.get(mode, ""))


def answer(mode: str, item: dict, model: str, plausibility: float | None = None
           ) -> tuple[Any, int]:
    """(answer, forward passes); for the cascade, its steps with every source asked."""
    params: dict[str, Any] = {"margin": math.inf} if mode == "cascade" else {}
    if mode == "contrastive":
        params["plausibility"] = plausibility
    result = lmq.query(program(mode), model=model)(
        system=SYSTEM, instruction=item.get("instruction") or "",
        context=item.get("context") or "", question=item["question"], style=STYLE, **params)
    if mode == "cascade":
        steps = [step for entry in result.trace if "decisions" in entry
                 for step in entry["decisions"]["steps"]]
        return steps, result.stats.get("forward_passes", 0)
    return result.variables["A"].strip(), result.stats.get("forward_passes", 0)


def cascade_at(steps: list[dict], margin: float) -> str | None:
    """The cascade's answer at ``margin``, replayed from a run that asked every source (the
    decision rule of ``lmq.stdlib.knowledge``; each step's answer and scores do not depend
    on the margin)."""
    for step in steps:
        if step["sentinel_score"] is None or source_answered(
                step["answer"], step["answer_score"], step["sentinel_score"], margin):
            return step["answer"]
    return steps[-1]["answer"] if steps else None  # the last source's value stands


def report(rows: list[dict], modes: list[str]) -> str:
    lines = ["| mode | " + " | ".join(SETTINGS) + " | overall | parametric share (conflicts) "
             "| passes/item |", "|---" * (len(SETTINGS) + 4) + "|"]
    for mode in modes:
        cells = []
        for setting in SETTINGS:
            members = [r for r in rows if r["setting"] == setting]
            ok = sum(r[mode]["correct"] for r in members)
            cells.append(f"{ok}/{len(members)}" if members else "-")
        total = sum(r[mode]["correct"] for r in rows)
        conflicts = [r for r in rows if r["setting"] in CONFLICTS]
        parametric = sum(r[mode]["parametric"] for r in conflicts)
        passes = sum(r[mode]["passes"] for r in rows) / max(len(rows), 1)
        lines.append(f"| {mode} | " + " | ".join(cells) +
                     f" | {total / max(len(rows), 1):.3f} | "
                     f"{parametric / max(len(conflicts), 1):.3f} | {passes:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--limit", type=int, default=None, help="first N items per setting")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--margins", default="-1,-0.5,0,0.5,1,2",
                        help="cascade margins to report (replayed from one run)")
    parser.add_argument("--plausibility", default=str(DEFAULT_PLAUSIBILITY),
                        help="contrastive plausibility values to run (one run each)")
    parser.add_argument("--agreement", choices=("skip", "amplify"), default="skip",
                        help="contrastive steps where every row has the same top token: "
                        "decoded plainly (skip, the runtime's default) or amplified (ablation)")
    parser.add_argument("--out", help="write per-item answers as JSON")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    margins = [float(m) for m in args.margins.split(",") if m.strip()]
    alphas = [float(a) for a in args.plausibility.split(",") if a.strip()]
    prefer.SKIP_AGREEMENT = args.agreement == "skip"
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    items = [json.loads(line) for line in
             (data_dir() / "knowledge_preference_dev.jsonl").read_text().splitlines()
             if line.strip()]
    if args.limit is not None:
        counts: dict[str, int] = {}
        items = [it for it in items
                 if counts.setdefault(it["setting"], 0) < args.limit
                 and not counts.update({it["setting"]: counts[it["setting"]] + 1})]
    # round-robin over the settings, so that a run cut short covers every setting
    position: dict[str, int] = {}
    keys = []
    for index, item in enumerate(items):
        position[item["setting"]] = position.get(item["setting"], -1) + 1
        keys.append((position[item["setting"]], index))
    items = [item for _, item in sorted(zip(keys, items), key=lambda pair: pair[0])]
    started = time.perf_counter()
    rows = []
    for i, item in enumerate(items, 1):
        row = {"id": item["id"], "setting": item["setting"], "gold": item["answer"]}
        for mode in modes:
            if mode == "contrastive":
                suffix = "" if args.agreement == "skip" else ", amplify agreement"
                for alpha in alphas:
                    got, passes = answer(mode, item, args.model, alpha)
                    name = f"contrastive (plausibility {alpha:g}{suffix})"
                    row[name] = {"answer": got, "passes": passes,
                                 "correct": is_correct(got, item["answer"], item["aliases"]),
                                 "parametric": is_correct(got, item["parametric_answer"])}
                continue
            got, passes = answer(mode, item, args.model)
            if mode == "cascade":
                row["cascade_steps"] = got
                for margin in margins:
                    name = f"cascade (margin {margin:g})"
                    value = cascade_at(got, margin)
                    row[name] = {"answer": value, "passes": passes,
                                 "correct": is_correct(value, item["answer"], item["aliases"]),
                                 "parametric": is_correct(value, item["parametric_answer"])}
                continue
            row[mode] = {"answer": got, "passes": passes,
                         "correct": is_correct(got, item["answer"], item["aliases"]),
                         "parametric": is_correct(got, item["parametric_answer"])}
        rows.append(row)
        columns = [m for m in row if m not in ("id", "setting", "gold", "cascade_steps")]
        print(f"[{i}/{len(items)}] {item['id']} gold={item['answer']!r} " +
              " ".join(f"{m}={row[m]['answer']!r}" for m in columns) +
              f" ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    columns = [m for m in rows[0] if m not in ("id", "setting", "gold", "cascade_steps")] \
        if rows else modes
    print(f"model: {args.model}, items: {len(rows)}, "
          f"{time.perf_counter() - started:.0f} s\n")
    print(report(rows, columns))
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
