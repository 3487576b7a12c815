"""lmq on llama.cpp (``llama:smollm2``, the packaged Q4_1 GGUF as it is) against
llama-cpp-python's own greedy generation and against lmq on transformers (float32), same
prompts, greedy, measured in one run (rounds interleaved, medians).

1. Unconstrained, batch 1: ``"{prompt}[X]" where len(TOKENS(X)) == N`` on llama.cpp, on
   transformers, and ``Llama.generate`` (temperature 0, the same GGUF, flash attention on as
   in lmq's backend) with the prompt evaluated afresh each call, as lmq does.
2. Unconstrained, batch 16: ``q.batch`` of 16 prompts on each backend; the ratio to batch 1.
3. Constrained on llama.cpp (the date regex, continent choice and JSON person tasks of
   bench_e2e.py) against lmq unconstrained generating exactly as many tokens per row.
4. The physical bound: bytes of weights read per token (the GGUF's tensors) over this
   machine's memory bandwidth (a numpy copy of 512 MB: read and write), against the measured
   batch-1 speed.

    python bench/bench_llama.py [--quick] [--repeat N]
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np
from bench_e2e import lmq_query, run_lmq, tasks
from common import PROMPTS, Table, Target, interleaved, median, parser, ratio

LLAMA = "llama:smollm2"
TRANSFORMERS = "smollm2"


def own_generate(llm: Any, ids: list[int], new: int) -> int:
    out = 0
    for _ in llm.generate(ids, temp=0.0, top_k=1, reset=True):
        out += 1
        if out == new:
            break
    return out


def unconstrained(args: Any, repeat: int) -> tuple[Table, dict[str, float]]:
    import llama_cpp

    from lmq.runtime.backends.llama_models import gguf_path
    from lmq.runtime.engine import shared_engine

    new = 16 if args.quick else 48
    llama = shared_engine().backend(LLAMA)
    own = llama_cpp.Llama(str(gguf_path(LLAMA)), n_ctx=4096, n_threads=llama._threads,
                          flash_attn=True, verbose=False)
    source = '"{prompt}[X]" where len(TOKENS(X)) == n'
    queries = {"llama": lmq_query(source, LLAMA), "transformers": lmq_query(source, TRANSFORMERS)}
    table = Table(f"llama.cpp backend, unconstrained greedy ({new} new tokens per row)",
                  command(args), ["batch", "lmq llama.cpp tok/s", "llama-cpp-python tok/s",
                                  "lmq transformers tok/s", "lmq llama / llama-cpp-python",
                                  "lmq llama / lmq transformers"])
    speeds: dict[str, float] = {}
    for batch in (1, 16):
        inputs = [{"prompt": p, "n": new} for p in PROMPTS[:batch]]
        contenders = {name: (lambda q=q, i=inputs, b=batch: run_lmq(q, i, b))
                      for name, q in queries.items()}
        if batch == 1:
            ids = llama.vocabulary.encode(PROMPTS[0])
            contenders["own"] = lambda ids=ids: own_generate(own, ids, new)
        times, results, _ = interleaved(contenders, repeat)
        tps = {name: new * batch / median(t) for name, t in times.items()}
        for name in queries:
            assert sum(a.stats["generated_tokens"] for a in results[name]) == new * batch
        speeds.update({f"{name} {batch}": value for name, value in tps.items()})
        table.add(batch, tps["llama"], tps.get("own", float("nan")), tps["transformers"],
                  ratio(tps["llama"], tps.get("own", float("nan"))),
                  ratio(tps["llama"], tps["transformers"]))
    b1, b16 = speeds["llama 1"], speeds["llama 16"]
    table.targets += [
        Target("batch 1: lmq on llama.cpp / llama-cpp-python's own greedy", b1 / speeds["own 1"],
               0.9),
        Target("batch 1: lmq on llama.cpp / lmq on transformers float32",
               b1 / speeds["transformers 1"], 3.0),
        Target("batch 16 / batch 1 throughput, lmq on llama.cpp", b16 / b1, 3.0),
        Target("batch 16: lmq on llama.cpp / lmq on transformers", b16 / speeds["transformers 16"],
               1.5),
    ]
    table.notes.append(f"llama.cpp: {llama._threads} threads, flash attention, unified KV cache; "
                       f"transformers: float32. Medians of {repeat} interleaved rounds after a "
                       "warm-up round; tok/s = rows × new tokens / wall time, prefill included.")
    return table, speeds


def constrained(args: Any, repeat: int) -> Table:
    from lmq.runtime.engine import shared_engine

    llama = shared_engine().backend(LLAMA)
    table = Table("llama.cpp backend, constrained vs unconstrained (same tokens per row)",
                  command(args), ["task", "batch", "tokens", "constrained tok/s",
                                  "unconstrained tok/s", "constrained / unconstrained",
                                  "forward passes"])
    items = 1 if args.quick else 2
    for task in tasks():
        q_con = lmq_query('"{prompt}[X]" where ' + task["lmq"], LLAMA)
        q_free = lmq_query('"{prompt}[X]" where len(TOKENS(X)) == n', LLAMA)
        for batch in (1, 16):
            prompts = task["prompts"][:items] if batch == 1 else task["prompts"]
            inputs = [{"prompt": p} for p in prompts]
            reference = run_lmq(q_con, inputs, batch)
            lengths = [len(llama.vocabulary.encode(a.prompt[len(p):]))
                       for a, p in zip(reference, prompts)]
            free = [{"prompt": p, "n": max(n, 1)} for p, n in zip(prompts, lengths)]
            times, _, _ = interleaved({
                "con": lambda i=inputs, b=batch, q=q_con: run_lmq(q, i, b),
                "free": lambda i=free, b=batch, q=q_free: run_lmq(q, i, b)}, repeat)
            tokens = sum(lengths)
            con, unc = tokens / median(times["con"]), tokens / median(times["free"])
            passes = max(a.stats["forward_passes"] for a in reference)
            table.add(task["name"], batch, tokens, con, unc, ratio(con, unc), passes)
            table.targets.append(Target(f"llama.cpp {task['name']} batch {batch}: constrained "
                                        "/ unconstrained", ratio(con, unc), 0.9))
    table.notes.append("Tokens: the constrained values re-encoded; the unconstrained run makes "
                       "exactly as many per row. Constrained holes force the tokens their "
                       "constraint leaves no choice about, so they can beat unconstrained.")
    return table


def physical_bound(speeds: dict[str, float]) -> Table:
    import gguf

    from lmq.runtime.backends.llama_models import gguf_path

    reader = gguf.GGUFReader(gguf_path(LLAMA))
    weights = sum(int(t.n_bytes) for t in reader.tensors)
    embedding = next(int(t.n_bytes) for t in reader.tensors if t.name == "token_embd.weight")
    # Per token the model reads every matrix once; of the embedding table only one row as
    # input, but all of it as the (tied) output projection.
    per_token = weights
    source = np.ones(64 << 20, dtype=np.float64)  # 512 MB
    target = np.empty_like(source)
    best = min(_copy_seconds(source, target) for _ in range(5))
    bandwidth = 2 * source.nbytes / best
    bound = bandwidth / per_token
    table = Table("llama.cpp backend: the memory-bandwidth bound at batch 1",
                  "python bench/bench_llama.py", ["quantity", "value"])
    table.add("weights read per token (GGUF tensors, MB)", per_token / 1e6)
    table.add("of which the tied embedding / output table (MB)", embedding / 1e6)
    table.add("memory bandwidth, numpy copy of 512 MB (GB/s)", bandwidth / 1e9)
    table.add("bound: bandwidth / bytes per token (tok/s)", bound)
    table.add("measured, lmq on llama.cpp at batch 1 (tok/s)", speeds["llama 1"])
    table.add("measured / bound", speeds["llama 1"] / bound)
    return table


def _copy_seconds(source: np.ndarray, target: np.ndarray) -> float:
    start = time.perf_counter()
    np.copyto(target, source)
    return time.perf_counter() - start


def command(args: Any) -> str:
    return "python bench/bench_llama.py" + (" --quick" if args.quick else "") + (
        f" --repeat {args.repeat}" if args.repeat else "")


def main(argv: list[str] | None = None) -> list[Table]:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    if importlib.util.find_spec("llama_cpp") is None:
        print("# bench_llama: llama-cpp-python is not installed (pip install 'lmq[llama]')")
        return []
    repeat = args.repeat or (1 if args.quick else 3)
    first, speeds = unconstrained(args, repeat)
    first.show()
    tables = [first, constrained(args, repeat), physical_bound(speeds)]
    for table in tables[1:]:
        table.show()
    return tables


if __name__ == "__main__":
    main()
