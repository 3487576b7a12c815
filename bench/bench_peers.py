"""The six programs of PEERS.md: lmq against LMQL 0.7.3 on the same model.

For each program: wall time (median of the rounds), forward calls, tokens through the model
and tokens in the final sequence (the final prompt re-encoded). LMQL is measured in the same
run when its venv exists (``.bench-venvs/lmql``, see bench/README section in RESULTS.md): a
worker process (bench/lmql_worker.py) counts the forward calls inside LMQL's model process, and
rounds alternate lmq and LMQL program by program. Without the venv, or with another model than
``smollm2`` (LMQL needs the model as a folder), LMQL's published numbers from PEERS.md are
shown instead, and the table says so.

lmq's "tokens through the model" is what its backend was fed (prompt text and generated
tokens, each once: the KV store keeps the whole program); its billable tokens add the last
generated token, which is never fed.

    python bench/bench_peers.py [--quick] [--model smollm2] [--no-lmql]
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from common import (
    BENCH,
    ROOT,
    Table,
    Target,
    command_line,
    describe,
    median,
    parser,
    ratio,
    setup,
    timed,
)
from peers_programs import LMQL, PROGRAMS

LMQL_PYTHON = ROOT / ".bench-venvs" / "lmql" / "bin" / "python"
MULTI_HOLE = ("5 three holes", "6 loop of five holes")


class LmqlWorker:
    """bench/lmql_worker.py in the LMQL venv, driven over stdin/stdout."""

    def __init__(self, folder: str, threads: int | None = None) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        if threads:
            env["LMQ_BENCH_THREADS"] = str(threads)
        self.proc = subprocess.Popen([str(LMQL_PYTHON), str(BENCH / "lmql_worker.py"), folder],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"LMQL worker did not start: {ready}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@LMQLBENCH "):
                return json.loads(line[len("@@LMQLBENCH "):])
        raise RuntimeError(f"LMQL worker exited with code {self.proc.wait()}")

    def run(self, source: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"source": source}) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_lmql(args: Any) -> tuple[LmqlWorker | None, str]:
    """The worker, or None and the reason LMQL's published numbers are used."""
    if args.no_lmql:
        return None, "--no-lmql given"
    if args.model != "smollm2":
        return None, f"LMQL is run on smollm2 only (this run: {args.model})"
    if not LMQL_PYTHON.exists():
        return None, f"no LMQL venv at {LMQL_PYTHON.parent.parent} (see RESULTS.md)"
    from lmq.runtime.backends.hf_models import smollm2_folder

    try:
        return LmqlWorker(str(smollm2_folder()), args.threads), ""
    except Exception as error:  # noqa: BLE001 - any failure means: fall back
        return None, f"LMQL failed to start: {error}"


def main(argv: list[str] | None = None) -> list[Table]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--no-lmql", action="store_true", help="use LMQL's published numbers")
    args = p.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    import lmq

    backend = setup(args)
    print(f"# bench_peers: {describe(backend)}", flush=True)
    worker, why = start_lmql(args)
    names = list(PROGRAMS)
    if args.quick:
        names = ["2 choice", "4 REGEX date", "5 three holes"]
    queries = {name: lmq.query(PROGRAMS[name], model=backend) for name in names}
    ours: dict[str, list[float]] = {n: [] for n in names}
    theirs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    counts: dict[str, dict[str, Any]] = {}
    try:
        for round_ in range(repeat + 1):  # round 0 warms up (compiles, first masks)
            for name in names:
                fed = backend.stats.tokens_fed
                elapsed, result = timed(queries[name], backend.device)
                if round_:
                    ours[name].append(elapsed)
                counts[name] = {"stats": result.stats, "fed": backend.stats.tokens_fed - fed,
                                "final": len(backend.vocabulary.encode(result.prompt)),
                                "cold": counts.get(name, {}).get("cold", elapsed)}
                if worker is not None:
                    answer = worker.run(PROGRAMS[name])
                    if round_:
                        theirs[name].append(answer)
    except RuntimeError as error:
        worker, why = None, f"LMQL failed while running: {error}"
    finally:
        if worker is not None:
            worker.close()
    measured = worker is not None and all(theirs[n] for n in names)
    source = "measured in this run" if measured else f"published in PEERS.md ({why})"
    table = Table(f"PEERS programs: lmq vs LMQL 0.7.3 (LMQL {source})",
                  command_line("bench_peers.py", args),
                  ["program", "lmq s", "LMQL s", "LMQL / lmq", "lmq forward passes",
                   "LMQL forward calls", "lmq tokens fed", "LMQL tokens through model",
                   "final tokens (lmq / LMQL)", "lmq cold s"])
    for name in names:
        stats, ours_s = counts[name]["stats"], median(ours[name])
        if measured:
            runs = theirs[name]
            lmql_s = median([r["wall"] for r in runs])
            settled = median([r["settled"] for r in runs])
            calls, tokens, final = runs[-1]["calls"], runs[-1]["tokens"], runs[-1]["final_tokens"]
            lmql_cell = f"{lmql_s:.2f} ({settled:.2f} settled)"
        else:
            lmql_s, calls, tokens, final = LMQL[name]
            lmql_cell = f"{lmql_s:.2f}"
        speedup = ratio(lmql_s, ours_s)
        table.add(name, ours_s, lmql_cell, speedup, stats["forward_passes"], calls,
                  counts[name]["fed"], tokens, f"{counts[name]['final']} / {final}",
                  counts[name]["cold"])
        goal = 3.0 if name in MULTI_HOLE else 1.5
        table.targets.append(Target(f"{name}: LMQL wall / lmq wall", speedup, goal,
                                    "" if measured else "against LMQL's published time"))
        table.targets.append(Target(f"{name}: final tokens / lmq tokens fed (no token is "
                                    "fed twice)", ratio(counts[name]["final"],
                                                         counts[name]["fed"]), 1.0))
    table.notes += [
        f"{describe(backend)}; medians of {repeat} rounds after a warm-up round; "
        + ("lmq and LMQL alternate program by program." if measured else
           "LMQL numbers are PEERS.md's (same model, this machine type, another run)."),
        "LMQL s: until lmql.run returned; 'settled': until its model process stopped making "
        "forward calls (it goes on after returning). Tokens fed: every token the model "
        "processed; final tokens: the final prompt re-encoded.",
    ]
    if measured and len(names) < len(PROGRAMS):
        table.notes.append("--quick: three of the six programs.")
    table.show()
    return [table]


if __name__ == "__main__":
    main()
