"""End-to-end tokens/s: lmq against plain ``generate`` and against Outlines, same model, same
prompts, greedy, measured in one run (rounds interleaved, medians).

1. Unconstrained: lmq running ``"{prompt}[X]" where len(TOKENS(X)) == N`` (the whole pipeline:
   interpreter, masks, KV store) against ``model.generate(do_sample=False, min_new_tokens=N,
   max_new_tokens=N)`` with its KV cache, at batch 1 and 16 (left padding for generate). A third
   column, lmq's backend driven by a bare greedy loop, shows what the interpreter costs.
2. Constrained: a regex (dates), a choice (continents, multi-token labels) and a JSON schema
   task at batch 1 (the first prompts, one after another) and batch 16 (one batch). Contenders:
   lmq constrained (forced tokens on, the default), lmq constrained with forced tokens off,
   lmq unconstrained generating exactly as many tokens per row as the constrained run did, and
   Outlines' ``Generator`` on the same prompts and the same language (its tokenizer is its own
   object with the chat template off, so it sees the same prompt text). Tokens are counted
   the same way for everyone: the output text re-encoded by the tokenizer (EOS not counted).
   "cold" is the first call (lmq: constraint compile and first masks; Outlines: the
   ``Generator`` build, the index of the whole language, plus its first call).
3. Sampling: lmq ``sample(n=16)`` (with and without ``top_p``) against ``generate(do_sample=True,
   num_return_sequences=16)`` on one prompt, and lmq alone on the date regex.

    python bench/bench_e2e.py [--quick] [--model smollm2|smollm2-shape] [--device cuda]
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from common import (
    PROMPTS,
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

EVENTS = ["the Berlin wall fall", "the first moon landing happen", "the Titanic sink",
          "World War II end in Europe", "the French Revolution begin",
          "the Declaration of Independence get signed", "the Chernobyl disaster happen",
          "Nelson Mandela leave prison", "the euro banknotes come into circulation",
          "the first iPhone go on sale", "the Wright brothers first fly",
          "the Soviet Union dissolve", "Queen Elizabeth II die",
          "the Great Fire of London start", "the United Nations get founded",
          "Columbus reach the Americas"]
COUNTRIES = ["Kenya", "Japan", "Norway", "Canada", "Peru", "Australia", "Egypt", "India",
             "Italy", "Mexico", "Chile", "Vietnam", "Nigeria", "Poland", "Brazil", "New Zealand"]
CONTINENTS = [" Africa", " Asia", " Europe", " North America", " South America", " Oceania",
              " Antarctica"]
PEOPLE = ["Marie Curie", "Albert Einstein", "Ada Lovelace", "Isaac Newton", "Frida Kahlo",
          "Nikola Tesla", "Jane Austen", "Leonardo da Vinci", "Charles Darwin",
          "Amelia Earhart", "Wolfgang Mozart", "Rosalind Franklin", "Galileo Galilei",
          "Florence Nightingale", "Pablo Picasso", "Alan Turing"]
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "born": {"type": "integer", "minimum": 1000, "maximum": 2100},
        "country": {"type": "string", "maxLength": 16},
    },
    "required": ["name", "born", "country"],
}
DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"


def tasks() -> list[dict[str, Any]]:
    """name, prompts (16), lmq constraint on X, outlines output type (a callable: built
    lazily, since importing outlines is optional), max new tokens for Outlines."""
    def outlines_regex(pattern: str):
        return lambda: __import__("outlines.types", fromlist=["Regex"]).Regex(pattern)

    def outlines_json():
        from outlines.types import JsonSchema

        return JsonSchema(json.dumps(PERSON_SCHEMA), whitespace_pattern="")

    choice = "(" + "|".join(re.escape(c) for c in CONTINENTS) + ")"
    return [
        {"name": "regex (date)", "max_new": 16,
         "prompts": [f"When did {e}? Give the date as YYYY-MM-DD: " for e in EVENTS],
         "lmq": f'REGEX(X, r"{DATE}")', "outlines": outlines_regex(DATE)},
        {"name": "choice (continent)", "max_new": 8,
         "prompts": [f"Q: On which continent is {c}?\nA:" for c in COUNTRIES],
         "lmq": "X in " + json.dumps(CONTINENTS), "outlines": outlines_regex(choice)},
        {"name": "JSON (person)", "max_new": 64,
         "prompts": [f"{p} as a JSON record with name, year of birth and country:\n"
                     for p in PEOPLE],
         "lmq": f"JSON(X, {json.dumps(PERSON_SCHEMA)})", "outlines": outlines_json},
    ]


def lmq_query(source: str, backend: Any):
    import lmq

    return lmq.query(source, model=backend)


def run_lmq(q: Any, inputs: list[dict[str, Any]], batch: int, forced: bool = True):
    """Results of the inputs: one call each at batch 1, ``q.batch`` otherwise."""
    old = os.environ.get("LMQ_FORCED_TOKENS")
    os.environ["LMQ_FORCED_TOKENS"] = "1" if forced else "0"
    try:
        if batch == 1:
            return [q(**item) for item in inputs]
        return list(q.batch(inputs, batch_size=batch, errors="raise"))
    finally:
        if old is None:
            del os.environ["LMQ_FORCED_TOKENS"]
        else:
            os.environ["LMQ_FORCED_TOKENS"] = old


# ----------------------------------------------------------------------------- unconstrained


def hf_generate(backend: Any, tokenizer: Any, texts: list[str], new: int) -> int:
    import torch

    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    batch = {k: v.to(backend.device) for k, v in batch.items()}
    with torch.inference_mode():
        out = backend.model.generate(**batch, do_sample=False, max_new_tokens=new,
                                     min_new_tokens=new, pad_token_id=tokenizer.pad_token_id)
    return (out.shape[1] - batch["input_ids"].shape[1]) * len(texts)


def backend_loop(backend: Any, texts: list[str], new: int) -> int:
    rows = backend.new_rows(len(texts))
    try:
        logits = backend.forward({row: backend.vocabulary.encode(t) for row, t in zip(rows, texts)})
        for _ in range(new - 1):
            tokens = logits.argmax(dim=-1).tolist()
            logits = backend.forward({row: [tok] for row, tok in zip(rows, tokens)})
        logits.argmax(dim=-1).tolist()
    finally:
        backend.release(rows)
    return new * len(texts)


def unconstrained(backend: Any, args: Any, repeat: int) -> Table:
    new = 16 if args.quick else 48
    tokenizer = own_tokenizer(backend)
    tokenizer.padding_side = "left"
    q = lmq_query('"{prompt}[X]" where len(TOKENS(X)) == n', backend)
    table = Table(f"End-to-end, unconstrained: lmq vs transformers generate ({new} new tokens "
                  "per row, greedy, KV cache)", command_line("bench_e2e.py", args),
                  ["batch", "lmq tok/s", "generate tok/s", "lmq / generate",
                   "lmq backend loop tok/s", "lmq forward passes", "generate forward calls"])
    for batch in (1, 16):
        texts = PROMPTS[:batch]
        inputs = [{"prompt": t, "n": new} for t in texts]

        def lmq_run(inputs=inputs, batch=batch):
            answers = run_lmq(q, inputs, batch)
            return sum(a.stats["generated_tokens"] for a in answers)

        contenders = {
            "lmq": lmq_run,
            "generate": lambda texts=texts: hf_generate(backend, tokenizer, texts, new),
            "loop": lambda texts=texts: backend_loop(backend, texts, new),
        }
        times, results, _ = interleaved(contenders, repeat, backend.device)
        assert results["lmq"] == results["generate"] == new * batch, results
        tps = {name: new * batch / median(t) for name, t in times.items()}
        answers = run_lmq(q, inputs, batch)
        passes = answers[0].stats["forward_passes"]
        table.add(batch, tps["lmq"], tps["generate"], ratio(tps["lmq"], tps["generate"]),
                  tps["loop"], passes, new)
        table.targets.append(Target(f"unconstrained lmq / generate at batch {batch}",
                                    ratio(tps["lmq"], tps["generate"]),
                                    0.9 if batch == 1 else 1.0))
    table.notes.append(f"{describe(backend)}; medians of {repeat} interleaved rounds after a "
                       "warm-up round. tok/s = rows × new tokens / wall time, prefill included.")
    return table


def hf_sample(backend: Any, tokenizer: Any, text: str, rows: int, new: int, top_p: float | None,
              seed: int) -> int:
    import torch

    torch.manual_seed(seed)
    batch = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    batch = {k: v.to(backend.device) for k, v in batch.items()}
    with torch.inference_mode():
        out = backend.model.generate(**batch, do_sample=True, top_p=top_p or 1.0, top_k=0,
                                     num_return_sequences=rows, max_new_tokens=new,
                                     min_new_tokens=new, pad_token_id=tokenizer.pad_token_id)
    return (out.shape[1] - batch["input_ids"].shape[1]) * rows


def sampling(backend: Any, args: Any, repeat: int) -> Table:
    """lmq ``sample(n=16)`` against ``generate(do_sample=True, num_return_sequences=16)``
    on one prompt, free text and a date regex (lmq only: generate has no constraints)."""
    new, rows = (16 if args.quick else 32), 16
    tokenizer = own_tokenizer(backend)
    table = Table(f"End-to-end, sampling: lmq sample(n={rows}) vs transformers generate "
                  f"(do_sample, {rows} sequences)", command_line("bench_e2e.py", args),
                  ["task", "top_p", "lmq tok/s", "generate tok/s", "lmq / generate",
                   "lmq forward passes"])
    prompt = "Write a sentence about the sea:"
    for top_p in (None, 0.9):
        settings = f"n={rows}, seed=1" + (f", top_p={top_p}" if top_p else "")
        q = lmq_query(f'sample({settings})\n    "{prompt}[X]" where len(TOKENS(X)) == {new}',
                      backend)
        contenders = {
            "lmq": q,
            "generate": lambda top_p=top_p: hf_sample(backend, tokenizer, prompt, rows, new,
                                                      top_p, 1),
        }
        times, results, _ = interleaved(contenders, repeat, backend.device)
        generated = sum(a.stats["generated_tokens"] for a in results["lmq"])
        assert generated == results["generate"] == new * rows, (generated, results)
        tps = {name: new * rows / median(t) for name, t in times.items()}
        table.add(f"free {new} tokens", top_p or "–", tps["lmq"], tps["generate"],
                  ratio(tps["lmq"], tps["generate"]), results["lmq"][0].stats["forward_passes"])
    date = lmq_query(f'sample(n={rows}, seed=1)\n    "When did the Berlin wall fall? Give the '
                     f'date as YYYY-MM-DD: [X]" where REGEX(X, r"{DATE}")', backend)
    times, results, _ = interleaved({"lmq": date}, repeat, backend.device)
    answers = results["lmq"]
    tokens = sum(len(backend.vocabulary.encode(a.variables["X"])) for a in answers)
    table.add("regex (date)", "–", tokens / median(times["lmq"]), "–", "–",
              answers[0].stats["forward_passes"])
    table.notes.append(f"{describe(backend)}; medians of {repeat} interleaved rounds after a "
                       "warm-up round; one prompt, 16 rows; generate with top_k=0 (no top-k, "
                       "as lmq's default). Date: tokens = values re-encoded.")
    return table


# ----------------------------------------------------------------------------- constrained


def outlines_model(backend: Any):
    try:
        import outlines
    except ImportError:
        return None
    tokenizer = own_tokenizer(backend)
    model = outlines.from_transformers(backend.model, tokenizer)
    model.type_adapter.has_chat_template = False  # plain prompts, as lmq gets them
    return model


def constrained(backend: Any, args: Any, repeat: int) -> Table:
    tokenizer = backend.tokenizer
    om = outlines_model(backend)
    missing = ["Outlines is not installed: its columns are empty."] if om is None else []
    table = Table("End-to-end, constrained: lmq vs lmq unconstrained vs Outlines Generator",
                  command_line("bench_e2e.py", args),
                  ["task", "batch", "tokens", "lmq tok/s", "lmq no-forced tok/s",
                   "lmq unconstr. tok/s", "Outlines tok/s", "lmq / unconstr.",
                   "lmq / Outlines", "lmq passes", "lmq cold s", "Outlines cold s",
                   "same text"])
    batch1_items = 1 if args.quick else 2
    for task in tasks():
        q_con = lmq_query('"{prompt}[X]" where ' + task["lmq"], backend)
        q_free = lmq_query('"{prompt}[X]" where len(TOKENS(X)) == n', backend)
        generator: list[Any] = []

        def outlines_run(prompts: list[str], task=task, generator=generator) -> list[str]:
            if not generator:  # the build is part of the cold call
                from outlines import Generator

                generator.append(Generator(om, task["outlines"]()))
            gen = generator[0]
            kwargs = {"max_new_tokens": task["max_new"], "do_sample": False,
                      "pad_token_id": tokenizer.pad_token_id}
            if len(prompts) == 1:
                return [gen(prompts[0], **kwargs)]
            return list(gen.batch(prompts, **kwargs))

        for batch in (1, 16):
            prompts = task["prompts"][:batch1_items] if batch == 1 else task["prompts"]
            inputs = [{"prompt": p} for p in prompts]
            # Reference run: the constrained values fix the lengths of the unconstrained run.
            reference = run_lmq(q_con, inputs, batch)
            values = [a.prompt[len(p):] for a, p in zip(reference, prompts)]
            lengths = [len(backend.vocabulary.encode(v)) for v in values]
            free_inputs = [{"prompt": p, "n": max(n, 1)} for p, n in zip(prompts, lengths)]
            contenders = {
                "lmq": lambda i=inputs, b=batch, q=q_con: run_lmq(q, i, b),
                "noforce": lambda i=inputs, b=batch, q=q_con: run_lmq(q, i, b, forced=False),
                "free": lambda i=free_inputs, b=batch, q=q_free: run_lmq(q, i, b),
            }
            if om is not None:
                contenders["outlines"] = lambda p=prompts, b=batch, run=outlines_run: (
                    [o for k in range(0, len(p), b) for o in run(p[k:k + b])])
            times, results, cold = interleaved(contenders, repeat, backend.device)
            tokens = sum(lengths)
            tps = {name: tokens / median(times[name]) for name in ("lmq", "noforce", "free")}
            tps["outlines"] = float("nan")
            cold.setdefault("outlines", float("nan"))
            same = "–"
            if om is not None:
                o_tokens = sum(len(backend.vocabulary.encode(t)) for t in results["outlines"])
                tps["outlines"] = o_tokens / median(times["outlines"])
                same = f"{sum(v == o for v, o in zip(values, results['outlines']))}/{len(prompts)}"
            passes = sum(a.stats["forward_passes"] for a in reference) if batch == 1 else \
                max(a.stats["forward_passes"] for a in reference)
            table.add(task["name"], batch, tokens, tps["lmq"], tps["noforce"], tps["free"],
                      tps["outlines"], ratio(tps["lmq"], tps["free"]),
                      ratio(tps["lmq"], tps["outlines"]), passes, cold["lmq"],
                      cold["outlines"], same)
            table.targets.append(Target(f"{task['name']} batch {batch}: constrained / "
                                        "unconstrained lmq", ratio(tps["lmq"], tps["free"]),
                                        0.95))
            if om is not None:
                table.targets.append(Target(f"{task['name']} batch {batch}: lmq / Outlines",
                                            ratio(tps["lmq"], tps["outlines"]), 1.0))
    table.notes += [
        f"{describe(backend)}; medians of {repeat} interleaved rounds after a warm-up round.",
        f"batch 1 = the first {batch1_items} prompts one after another; batch 16 = 16 prompts "
        "in one batch. tokens = output values re-encoded (lmq's; Outlines' own count is used "
        "for its tok/s). 'same text': Outlines' output equals lmq's.",
        "lmq unconstr. generates exactly as many tokens per row as lmq's constrained output "
        "has (len(TOKENS(X)) == n). lmq passes: forward passes of the constrained run "
        "(batch 1: summed over the prompts; batch 16: shared passes of the batch).",
    ] + missing
    return table


def main(argv: list[str] | None = None) -> list[Table]:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    backend = setup(args)
    print(f"# bench_e2e: {describe(backend)}", flush=True)
    tables = [unconstrained(backend, args, repeat)]
    tables[-1].show()
    tables.append(constrained(backend, args, repeat))
    tables[-1].show()
    tables.append(sampling(backend, args, repeat))
    tables[-1].show()
    return tables


if __name__ == "__main__":
    main()
