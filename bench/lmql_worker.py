"""Runs LMQL 0.7.3 programs for bench_peers.py; runs under the LMQL venv, never imports lmq.

    .bench-venvs/lmql/bin/python bench/lmql_worker.py MODEL_FOLDER

Loads the model as PEERS.md says (``lmql.model("local:" + folder, tokenizer=folder)``; its
local models run in a forked worker process). ``LlamaForCausalLM.forward`` is wrapped before
the fork, so the worker's forward calls and the tokens fed to them (``input_ids.numel()``)
land in shared counters. Reads one JSON request per line on stdin (``{"source": ...}``) and
answers with one line ``@@LMQLBENCH {json}``: ``wall`` (seconds until ``lmql.run``
returned), ``settled`` (until the forward counters stopped moving for a second: LMQL goes on
working after it returns), ``calls``, ``tokens``, ``final_tokens`` (the final prompt
re-encoded), ``prompt``. Anything else it prints is LMQL's own output.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
import time

import transformers  # noqa: F401  (imported before the fork so the patch is inherited)
from transformers import AutoTokenizer
from transformers.models.llama import modeling_llama

CALLS = multiprocessing.Value("q", 0)
TOKENS = multiprocessing.Value("q", 0)
_forward = modeling_llama.LlamaForCausalLM.forward


def counted_forward(self, input_ids=None, *args, **kwargs):
    with CALLS.get_lock():
        CALLS.value += 1
        TOKENS.value += int(input_ids.numel()) if input_ids is not None else 0
    return _forward(self, input_ids, *args, **kwargs)


modeling_llama.LlamaForCausalLM.forward = counted_forward


def reply(data: dict) -> None:
    sys.stdout.write("@@LMQLBENCH " + json.dumps(data) + "\n")
    sys.stdout.flush()


async def settle(quiet: float = 1.0, limit: float = 15.0) -> float:
    """Wait until the counters have not moved for ``quiet`` seconds; returns the
    ``perf_counter`` time of their last move (or of the call if they did not move)."""
    start = time.perf_counter()
    last = (CALLS.value, TOKENS.value)
    still = time.perf_counter()
    while time.perf_counter() - start < limit:
        await asyncio.sleep(0.05)
        now = (CALLS.value, TOKENS.value)
        if now != last:
            last, still = now, time.perf_counter()
        elif time.perf_counter() - still >= quiet:
            return still
    return still


async def main(folder: str) -> None:
    import lmql

    if os.environ.get("LMQ_BENCH_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["LMQ_BENCH_THREADS"]))

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = lmql.model("local:" + folder, tokenizer=folder)
    await lmql.run('argmax\n    "Hello[X]" where len(TOKENS(X)) < 3\n', model=model)  # load
    await settle()
    reply({"ready": True})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        request = json.loads(line)
        await settle(0.3)
        calls, tokens = CALLS.value, TOKENS.value
        start = time.perf_counter()
        try:
            result = await lmql.run(request["source"], model=model)
        except Exception as error:  # noqa: BLE001 - reported to the parent
            reply({"error": f"{type(error).__name__}: {error}"})
            continue
        wall = time.perf_counter() - start
        settled = max(await settle(), start + wall) - start
        prompt = result.prompt if not isinstance(result, list) else result[0].prompt
        reply({"wall": wall, "settled": settled, "calls": CALLS.value - calls,
               "tokens": TOKENS.value - tokens, "prompt": prompt,
               "final_tokens": len(tokenizer.encode(prompt, add_special_tokens=False))})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
