"""Tokens/s of lmq's backend greedy loop vs ``model.generate`` on the same prompts.

Both decode 48 new tokens per row greedily (EOS does not stop either: ``generate`` gets
``min_new_tokens``), at batch 1 and batch 16, prefill included. Usage::

    python bench/bench_backend.py [--model smollm2] [--device cpu] [--dtype float32] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from common import PROMPTS, sync

from lmq.runtime.engine import shared_engine

NEW_TOKENS = 48


def lmq_loop(backend, prompts: list[list[int]]) -> float:
    sync(backend.device)
    start = time.perf_counter()
    rows = backend.new_rows(len(prompts))
    logits = backend.forward(dict(zip(rows, prompts)))
    for _ in range(NEW_TOKENS - 1):
        tokens = logits.argmax(dim=-1).tolist()
        logits = backend.forward({row: [token] for row, token in zip(rows, tokens)})
    logits.argmax(dim=-1).tolist()
    elapsed = time.perf_counter() - start
    backend.release(rows)
    return elapsed


def hf_generate(backend, texts: list[str]) -> float:
    tokenizer = backend.tokenizer
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    batch = {k: v.to(backend.device) for k, v in batch.items()}
    sync(backend.device)
    start = time.perf_counter()
    with torch.inference_mode():
        backend.model.generate(**batch, do_sample=False, max_new_tokens=NEW_TOKENS,
                               min_new_tokens=NEW_TOKENS, pad_token_id=tokenizer.pad_token_id)
    sync(backend.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batches", default="1,16")
    args = parser.parse_args()
    backend = shared_engine().backend(args.model, device=args.device, dtype=args.dtype)
    print(f"model={args.model} device={backend.device} dtype={backend.model.dtype} "
          f"threads={torch.get_num_threads()} new_tokens={NEW_TOKENS}")
    for batch in (int(b) for b in args.batches.split(",")):
        texts = (PROMPTS * (batch // len(PROMPTS) + 1))[:batch]
        prompts = [backend.vocabulary.encode(t) for t in texts]
        lmq_loop(backend, prompts[:1])  # warm-up
        hf_generate(backend, texts[:1])
        lmq_times, hf_times = [], []
        for _ in range(args.repeat):  # interleaved, so drifting machine load hits both alike
            lmq_times.append(lmq_loop(backend, prompts))
            hf_times.append(hf_generate(backend, texts))
        tokens = batch * NEW_TOKENS
        lmq_s, hf_s = statistics.median(lmq_times), statistics.median(hf_times)
        print(f"batch {batch:3d}: lmq {tokens / lmq_s:7.1f} tok/s "
              f"({lmq_s * 1000 / NEW_TOKENS:6.1f} ms/step)   "
              f"generate {tokens / hf_s:7.1f} tok/s ({hf_s * 1000 / NEW_TOKENS:6.1f} ms/step)   "
              f"lmq/generate {hf_s / lmq_s:4.2f}x")


if __name__ == "__main__":
    main()
