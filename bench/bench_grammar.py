"""Grammar constraints (issue 17): mask latency and compile time on SmolLM2's vocabulary,
lmq against Outlines' CFG generation, and grammar-constrained against unconstrained lmq.

1. Masks: for each grammar (arithmetic, a JSON-like language, the 30-rule SQL subset of
   examples/sql.lark), the compile time -- the guide alone (llguidance's grammar and the
   Earley recognizer, the grammar's Lark parse being cached from the program's check), and
   cold (the check with llguidance and Lark included) -- then, over the states of random
   walks (random allowed tokens, then the confirmed completion), the first mask of each
   state (llguidance's bitmask, unpacked) and the budget check of each step (a confirmed
   shortest completion of the text after the token). The llguidance tokenizer is built once
   per vocabulary (its time is in the notes).
2. lmq vs Outlines: the same grammar and prompts, greedy, at most N new tokens: lmq's
   ``GRAMMAR(X, g) and len(TOKENS(X)) <= N`` against ``outlines.Generator(model, CFG(g))``
   with ``max_new_tokens=N`` (Outlines' default CFG backend is llguidance too; its tokenizer
   is its own object, chat template off). Tokens = output text re-encoded.
3. Grammar-constrained vs unconstrained lmq at batch 1 and 16: the unconstrained run
   generates exactly as many tokens per row as the constrained one did.

    python bench/bench_grammar.py [--quick] [--model smollm2|smollm2-shape]
"""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
from common import (
    ROOT,
    Table,
    Target,
    command_line,
    describe,
    interleaved,
    median,
    own_tokenizer,
    parser,
    ratio,
    setup,
)

EXPR = (ROOT / "examples" / "expr.lark").read_text()
SQL = (ROOT / "examples" / "sql.lark").read_text()
JSONISH = (ROOT / "tests" / "cases" / "grammars" / "jsonish.lark").read_text()
GRAMMARS = {"expr": EXPR, "json-like": JSONISH, "sql (30 rules)": SQL}
TASKS = {  # end to end: grammar, prompts (16), most new tokens
    "sql": (SQL, [f"Write a SQL query that lists the {what}: " for what in (
        "names of users older than 30", "orders placed in 2024", "ten most expensive products",
        "customers from Norway", "number of orders per customer", "average price of books",
        "employees hired after 2020", "titles of films longer than two hours",
        "cities with more than a million people", "emails of inactive accounts",
        "total sales per month", "students with a grade above B",
        "flights from Oslo to Rome", "books written by Jane Austen",
        "products that are out of stock", "users who never logged in")], 32),
    "expr": (EXPR, [f"Write an arithmetic expression whose value is {n}: " for n in (
        12, 7, 100, 42, 3, 64, 15, 81, 9, 250, 36, 18, 5, 1000, 27, 60)], 24),
}


def _percentiles(seconds: list[float]) -> tuple[float, float, float]:
    us = np.array(seconds) * 1e6
    return float(np.percentile(us, 50)), float(np.percentile(us, 99)), float(us.max())


def masks(index: Any, args: Any) -> Table:
    from lmq import grammars
    from lmq import regular as rg
    from lmq.runtime.automata import fsm
    from lmq.runtime.automata.grammar import GrammarGuide, tokenizer

    start = time.perf_counter()
    tokenizer(index)
    tokenizer_s = time.perf_counter() - start
    walks = 8 if args.quick else 40
    table = Table("Grammar masks on the SmolLM2 vocabulary (49,152 tokens)",
                  command_line("bench_grammar.py", args),
                  ["grammar", "rules", "compile ms", "cold compile ms", "states",
                   "mask p50 µs", "mask p99 µs", "mask max µs", "wall p50 µs", "wall p99 µs",
                   "check p50 µs", "check p99 µs", "check max µs"])
    for name, text in GRAMMARS.items():
        compiles, colds = [], []
        for _ in range(3 if args.quick else 7):
            grammars._LOADED.clear()
            fsm._CACHE.clear()
            begun = time.perf_counter()
            grammars.check_grammar(text)
            checked = time.perf_counter()
            guide = GrammarGuide.from_tree(rg.Grammar(text), index)
            done = time.perf_counter()
            compiles.append(done - checked)
            colds.append(done - begun)
        rng = random.Random(0)
        mask_s: list[float] = []
        check_s: list[float] = []
        mask_wall: list[float] = []
        for _ in range(walks):
            state = guide.initial_state
            for _ in range(rng.randrange(4, 40)):
                begun, wall = time.thread_time(), time.perf_counter()
                allowed = guide.allowed(state)
                mask_s.append(time.thread_time() - begun)
                mask_wall.append(time.perf_counter() - wall)
                if not len(allowed):
                    break
                token = int(allowed[rng.randrange(len(allowed))])
                begun = time.thread_time()
                guide.fits(state, token, 256)
                check_s.append(time.thread_time() - begun)
                state = guide.advance(state, token)
        rules = len({rule.origin.name for rule in grammars.load(text).rules
                     if not rule.origin.name.startswith("__")})
        table.add(name, rules, median(compiles) * 1e3, median(colds) * 1e3, len(mask_s),
                  *_percentiles(mask_s), *_percentiles(mask_wall)[:2], *_percentiles(check_s))
        if name.startswith("sql"):
            p50, p99, _ = _percentiles(mask_s)
            table.targets += [
                Target("grammar mask p50 ≤ 100 µs (sql; 100 / p50)", ratio(100, p50), 1.0),
                Target("grammar mask p99 ≤ 2 ms (sql; 2000 / p99)", ratio(2000, p99), 1.0),
                Target("30-rule grammar compile ≤ 50 ms (50 / ms)",
                       ratio(50, median(compiles) * 1e3), 1.0,
                       f"cold with Lark's load and both checks: {median(colds) * 1e3:.0f} ms"),
            ]
    table.notes += [
        f"llguidance tokenizer from lmq's token index: {tokenizer_s * 1e3:.0f} ms, once per "
        "vocabulary. compile = GrammarGuide.from_tree with the grammar's Lark parse cached (as "
        "at run time after the program's check); cold = check_grammar (llguidance and Lark) "
        "plus the guide, all caches cleared. Medians of the repeats.",
        f"{walks} random walks per grammar (random allowed tokens, 4-40 steps): mask = first "
        "computation of a state's allowed ids (llguidance bitmask, unpacked, special ids "
        "cleared); check = the budget check of one choice (shortest completion of the text "
        "after the token, spelled by the tokenizer and confirmed by llguidance). Both in CPU "
        "time of the thread (time.thread_time): on the shared 2-core machine the wall clock "
        "of a call includes the scheduler's 4 ms time slices whenever the load exceeds the "
        "cores (wall columns; the targets use CPU time).",
        "rules: distinct rule names of the grammar as written (Lark's EBNF expansion makes "
        "more).",
    ]
    return table


def outlines_model(backend: Any) -> Any:
    try:
        import outlines
    except ImportError:
        return None
    model = outlines.from_transformers(backend.model, own_tokenizer(backend))
    model.type_adapter.has_chat_template = False  # plain prompts, as lmq gets them
    return model


def end_to_end(backend: Any, args: Any, repeat: int) -> list[Table]:
    import lmq
    from lmq import grammars

    om = outlines_model(backend)
    peers = Table("Grammar end to end: lmq vs Outlines' CFG generation (same grammar and "
                  "prompts, greedy)", command_line("bench_grammar.py", args),
                  ["task", "batch", "lmq s", "Outlines s", "lmq tok/s", "Outlines tok/s",
                   "lmq / Outlines (time)", "lmq sentences", "Outlines sentences",
                   "lmq cold s", "Outlines cold s"])
    free = Table("Grammar-constrained vs unconstrained lmq (same tokens per row)",
                 command_line("bench_grammar.py", args),
                 ["task", "batch", "tokens", "grammar tok/s", "unconstr. tok/s",
                  "grammar / unconstr.", "mask ms per step"])
    items = 1 if args.quick else 2
    for name, (grammar, prompts, most) in TASKS.items():
        q_con = lmq.query('"{prompt}[X]" where GRAMMAR(X, g) and len(TOKENS(X)) <= n',
                          model=backend)
        q_free = lmq.query('"{prompt}[X]" where len(TOKENS(X)) == n', model=backend)
        generator: list[Any] = []

        def outlines_run(texts: list[str], grammar=grammar, most=most,
                         generator=generator) -> list[str]:
            from outlines import Generator
            from outlines.types import CFG

            if not generator:  # the build is part of the cold call
                generator.append(Generator(om, CFG(grammar)))
            kwargs = {"max_new_tokens": most, "do_sample": False,
                      "pad_token_id": backend.tokenizer.pad_token_id}
            if len(texts) == 1:
                return [generator[0](texts[0], **kwargs)]
            return list(generator[0].batch(texts, **kwargs))

        for batch in (1, 16):
            chosen = prompts[:items] if batch == 1 else prompts
            inputs = [{"prompt": p, "g": grammar, "n": most} for p in chosen]

            def lmq_run(inputs=inputs, batch=batch, q=q_con) -> list[Any]:
                return [a for k in range(0, len(inputs), batch)
                        for a in q.batch(inputs[k:k + batch], batch_size=batch)]

            reference = lmq_run()
            values = [a["X"] for a in reference]
            lengths = [max(len(backend.vocabulary.encode(v)), 1) for v in values]
            free_inputs = [{"prompt": p, "n": n} for p, n in zip(chosen, lengths)]
            contenders = {
                "lmq": lmq_run,
                "free": lambda i=free_inputs, b=batch, q=q_free: [
                    a for k in range(0, len(i), b) for a in q.batch(i[k:k + b], batch_size=b)],
            }
            if om is not None:
                contenders["outlines"] = lambda c=chosen, b=batch: [
                    o for k in range(0, len(c), b) for o in outlines_run(c[k:k + b])]
            times, results, cold = interleaved(contenders, repeat, backend.device)
            tokens = sum(lengths)
            mask_ms = median([call["mask_ms"] for call in reference[0].trace])
            tps = {key: tokens / median(times[key]) for key in ("lmq", "free")}
            free.add(name, batch, tokens, tps["lmq"], tps["free"], ratio(tps["lmq"], tps["free"]),
                     mask_ms)
            free.targets.append(Target(f"{name} batch {batch}: grammar / unconstrained lmq",
                                       ratio(tps["lmq"], tps["free"]), 0.9))
            ok = sum(grammars.is_sentence(grammar, v) for v in values)
            if om is None:
                continue
            outs = results["outlines"]
            o_tokens = sum(len(backend.vocabulary.encode(o)) for o in outs)
            o_ok = sum(grammars.is_sentence(grammar, o) for o in outs)
            speed = ratio(median(times["outlines"]), median(times["lmq"]))
            peers.add(name, batch, median(times["lmq"]), median(times["outlines"]),
                      tps["lmq"], o_tokens / median(times["outlines"]), speed,
                      f"{ok}/{len(values)}", f"{o_ok}/{len(outs)}", cold["lmq"],
                      cold["outlines"])
            peers.targets.append(Target(f"{name} batch {batch}: lmq ≥ 1.5× faster than "
                                        "Outlines CFG (Outlines s / lmq s)", speed, 1.5))
    peers.notes += [
        f"{describe(backend)}; medians of {repeat} interleaved rounds after a warm-up round "
        "(cold = that first call: Outlines builds its Generator there).",
        "batch 1 = the first prompts one after another; batch 16 = 16 prompts in one batch. "
        "lmq closes every value within the bound (budget-aware); Outlines stops at "
        "max_new_tokens, possibly mid-sentence: 'sentences' counts values Lark parses.",
    ] + (["Outlines is not installed: no Outlines columns."] if om is None else [])
    free.notes += [f"{describe(backend)}; medians of {repeat} interleaved rounds; mask ms per "
                   "step: the trace's mask_ms (token choice under masks, budget checks "
                   "included) of the first answer's model calls, median."]
    return ([peers] if om is not None else []) + [free]


def main(argv: list[str] | None = None) -> list[Table]:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    backend = setup(args)
    print(f"# bench_grammar: {describe(backend)}", flush=True)
    from lmq.runtime.automata.tokens import TokenIndex

    tables = [masks(TokenIndex.from_vocabulary(backend.vocabulary), args)]
    tables[-1].show()
    for table in end_to_end(backend, args, repeat):
        table.show()
        tables.append(table)
    return tables


if __name__ == "__main__":
    main()
