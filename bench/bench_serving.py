"""lmq on a serving engine: llama-server on the packaged SmolLM2 GGUF (issue 13's targets).

The benchmark starts ``llama-server`` itself (4 slots, 2,048 tokens each, flash attention,
on 127.0.0.1 at a free port) and always stops it, with its process group, in ``finally``.
The binary is ``$LMQ_LLAMA_SERVER``, else one that ``.ci/llama-server`` built into
``~/.cache/lmq/llama-server/*/``; without one the section is skipped with a note.
``--server SPEC`` measures a server that is already running instead (``llama-server:URL``,
``vllm:URL``, ``sglang:URL``; bench/gpu_serving.sh does this with vLLM on a GPU).

1. **Prefix cache.** Multi-hole programs (the five-hole program of tests/runtime/backends/
   test_served_llama.py, PEERS.md programs 5 and 6), each run once on empty caches: the
   prompt tokens the server evaluated (``server_computed_tokens``, its ``timings.prompt_n``
   summed over lmq's requests) against the final sequence. Target: computed ≤ final
   length, i.e. every hole after the first reuses the prefix.
2. **Client overhead.** lmq's wall time against one plain ``/completion`` call generating as
   many tokens of the same sequence length (token prompt, ``n_predict`` = N, ``ignore_eos``,
   temperature 0): a free hole of N tokens, and the five-hole program against one call with
   its prompt-token count and its generated-token count. Target (the free hole): lmq ≤ 1.2×
   the plain call.
3. **Concurrency.** ``q.batch`` of 64 inputs (16 with ``--quick``) with lmq's default
   in-flight cap (the server's 4 slots) against the same batch with ``inflight=1``; plain
   ``/completion`` calls of the same token counts, one and 4 at a time, show the engine's own
   scaling on the machine. Target: lmq's throughput ≥ 3×.
4. **Against the SGLang frontend's pattern**, on the same server and programs. SGLang's
   frontend (``sglang/lang/backend/runtime_endpoint.py``) keeps the program as text and
   sends, for every ``gen``, the whole text so far as a text prompt (the server tokenizes it
   again; its radix cache reuses whatever token prefix still matches), with ``stop``,
   ``max_new_tokens`` and a ``regex`` (``dtype=int`` is ``REGEX_INT`` = ``[-+]?[0-9]+[ \\n]*``
   with stops ``" "`` and ``"\\n"``); the generated text (stop phrase cut off) is appended.
   A ``select`` first caches the prefix (``max_new_tokens=0``) and then scores every choice
   as the prompt ``text + choice`` with prompt log-probabilities, taking the best mean
   log-probability per token (``token_length_normalized``). Here the same requests go to
   llama-server's ``/completion`` with text prompts: the regex as the equivalent GBNF,
   ``cache_prompt`` on (as SGLang's radix cache is by default; a second variant turns it off,
   an engine without prefix caching), and, because llama-server has no prompt
   log-probabilities, each choice scored by forcing its text with a literal grammar and
   reading ``n_probs`` (the same request per choice and the same tokens through the model;
   one after another, where SGLang sends them in one HTTP request). ``STOPS_AT`` holes get
   their stop phrase back (``gen(stop=...) + phrase``) so both sides build the same text.
   Target: lmq ≥ 2× faster.

   LMQL 0.7.3 cannot be measured on this server: its OpenAI backend
   (``lmql/runtime/openai_integration.py``) asserts a tiktoken tokenizer ("OpenAI models are
   not compatible with HuggingFace tokenizers"), so its ``logit_bias`` masks are cl100k ids,
   not SmolLM2's; and every request sends ``echo: true`` with ``logprobs`` and reads the
   legacy ``{tokens, token_logprobs, top_logprobs}`` answer, while llama-server's
   ``/v1/completions`` ignores ``echo`` and answers ``logprobs`` as ``{content: [...]}``.

Every call of every contender starts on empty caches: all slots are erased first, untimed
(the server runs with ``--slot-save-path``, which the erase action needs, and ``--cache-ram
0``: erasing leaves the host-memory prompt cache in place, and rows of an earlier round were
seen to find their whole prompt restored from it). Rounds interleave the contenders after one
warm-up round; medians are reported. The server runs with ``--server-threads`` threads, by
default half the cores: on the shared 2-core machine two threads spin at llama.cpp's barriers
whenever another process holds a core (measured: 1–9 tokens/s with ``-t 2`` against 56–80
with ``-t 1``, at load 5).

    python bench/bench_serving.py [--quick] [--repeat N] [--server SPEC] [--server-threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import PROMPTS, Table, Target, median, ratio
from peers_programs import PROGRAMS as PEERS

SLOTS = 4
FIVE_HOLES = '''argmax
    "Q: Name a fruit.\\nA:[A]\\n" where STOPS_AT(A, "\\n") and len(TOKENS(A)) < 8
    "Q: Its colour?\\nA:[B]\\n" where STOPS_AT(B, "\\n") and len(TOKENS(B)) < 8
    "Q: A number from 1 to 9: [N]\\n" where INT(N) and len(TOKENS(N)) < 3
    "Q: Sweet or sour?\\nA:[C]\\n" where C in [" sweet", " sour"]
    "Q: One word for it:[D]" where len(TOKENS(D)) < 4
'''
THREE_HOLES = PEERS["5 three holes"]
LOOP = PEERS["6 loop of five holes"]
BATCH = '"{prompt}[X]" where STOPS_AT(X, ".") and len(TOKENS(X)) < 16'
FREE = '"{prompt}[X]" where len(TOKENS(X)) == n'


# ----------------------------------------------------------------------------- the server


def find_binary() -> str | None:
    """``$LMQ_LLAMA_SERVER``, else a binary ``.ci/llama-server`` cached, else None."""
    explicit = os.environ.get("LMQ_LLAMA_SERVER")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    cache = os.environ.get("LMQ_LLAMA_SERVER_CACHE") or str(Path.home() / ".cache" / "lmq" /
                                                             "llama-server")
    found = sorted(glob.glob(os.path.join(cache, "*", "llama-server")), key=os.path.getmtime)
    return found[-1] if found else None


@contextlib.contextmanager
def llama_server(binary: str, gguf: Path, threads: int) -> Iterator[str]:
    """The address of a llama-server serving ``gguf`` with :data:`SLOTS` slots, ended with
    its process group on exit."""
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="lmq-serving-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log_path = Path(folder) / "server.log"
        log = stack.enter_context(open(log_path, "wb"))
        process = subprocess.Popen(
            [binary, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
             "-c", str(2048 * SLOTS), "-np", str(SLOTS), "-t", str(threads), "-fa", "on",
             "--no-webui", "--slot-save-path", folder, "--cache-ram", "0"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):  # loads in seconds; bounded at ~5 minutes
                if process.poll() is not None:
                    raise RuntimeError(f"llama-server exited with {process.returncode}: "
                                       f"{log_path.read_text(errors='replace')[-2000:]}")
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                        if answer.status == 200:
                            break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"llama-server did not become ready on {url}")
            yield url
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@dataclass
class Server:
    """The server under test: lmq's spec for it, its engine and plain HTTP calls to it."""

    spec: str  # llama-server:URL?tokenizer=... (options included)
    client: Any  # lmq's served_http.Client (the baselines use the same HTTP client)
    kind: str  # llama-server, vllm, sglang
    model: str  # the engine's name for the model
    vocabulary: Any
    slots: int  # requests the engine runs at once (lmq's default in-flight cap)
    reset_note: str = ""  # set when the caches could not be emptied

    def with_options(self, **options: Any) -> str:
        extra = "&".join(f"{key}={value}" for key, value in options.items())
        return self.spec + ("&" if "?" in self.spec else "?") + extra

    def reset(self) -> None:
        """Empty the engine's prefix caches (once a failure is noted, give up quietly)."""
        if self.reset_note:
            return
        try:
            if self.kind == "llama-server":
                for slot in range(self.slots):
                    self.client.post(f"/slots/{slot}?action=erase", {})
            elif self.kind == "vllm":
                self.client.post("/reset_prefix_cache", {})  # needs VLLM_SERVER_DEV_MODE=1
            else:
                self.client.post("/flush_cache", {})
        except Exception as error:  # noqa: BLE001 - measured anyway, with the note
            self.reset_note = (f"the server's caches could not be emptied between runs "
                               f"({str(error)[:120]}), so later runs may reuse earlier ones")

    def complete_ids(self, ids: list[int], n: int) -> int:
        """One plain greedy request generating exactly ``n`` tokens after ``ids``."""
        if self.kind == "llama-server":
            answer = self.client.post("/completion", {
                "prompt": ids, "n_predict": n, "ignore_eos": True, "temperature": 0.0})
            made = int(answer["tokens_predicted"])
        elif self.kind == "vllm":
            answer = self.client.post("/v1/completions", {
                "model": self.model, "prompt": ids, "max_tokens": n, "ignore_eos": True,
                "temperature": 0.0})
            made = int(answer["usage"]["completion_tokens"])
        else:
            answer = self.client.post("/generate", {"input_ids": ids, "sampling_params": {
                "max_new_tokens": n, "ignore_eos": True, "temperature": 0.0}})
            made = int(answer["meta_info"]["completion_tokens"])
        assert made == n, (made, n)
        return made


def connect(spec: str) -> Server:
    from lmq.runtime.backends.served_models import parse
    from lmq.runtime.engine import shared_engine

    backend = shared_engine().backend(spec)
    kind, _, _ = parse(spec)
    return Server(spec, backend.client, kind, backend.info.model, backend.vocabulary,
                  backend.info.slots)


# ----------------------------------------------------------------------------- timing


def rounds(contenders: dict[str, Callable[[], Any]], repeat: int, server: Server,
           ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """One warm-up round, then ``repeat`` rounds of every contender in turn, each call on
    empty caches (the reset is not timed). Returns seconds per round and last results."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    results: dict[str, Any] = {}
    for round_ in range(repeat + 1):
        for name, fn in contenders.items():
            server.reset()
            start = time.perf_counter()
            results[name] = fn()
            if round_:
                times[name].append(time.perf_counter() - start)
    return times, results


def run_lmq(query: Any, **params: Any) -> Any:
    answer = query(**params)
    return answer[0] if isinstance(answer, list) else answer


# ----------------------------------------------------------------------------- SGLang's pattern


@dataclass(frozen=True)
class Gen:
    """``sgl.gen``: at most ``max_tokens``, ending at a stop phrase (cut off, added back when
    ``keep_stop``: LMQL's STOPS_AT keeps it) or where ``grammar`` (GBNF) ends."""

    name: str
    max_tokens: int
    stop: tuple[str, ...] = ()
    grammar: str | None = None
    keep_stop: bool = False


@dataclass(frozen=True)
class Select:
    """``sgl.select``: the choice of best mean log-probability per token."""

    name: str
    choices: tuple[str, ...]


INT_GEN = dict(stop=(" ", "\n"), grammar='root ::= [-+]? [0-9]+ [ \\n]*')  # dtype=int
FIVE_STEPS = ["Q: Name a fruit.\nA:", Gen("A", 7, ("\n",), keep_stop=True), "\n",
              "Q: Its colour?\nA:", Gen("B", 7, ("\n",), keep_stop=True), "\n",
              "Q: A number from 1 to 9: ", Gen("N", 2, **INT_GEN), "\n",  # type: ignore[arg-type]
              "Q: Sweet or sour?\nA:", Select("C", (" sweet", " sour")), "\n",
              "Q: One word for it:", Gen("D", 3)]
THREE_STEPS = ["Name a fruit:", Gen("A", 7, ("\n",), keep_stop=True),
               "\nName a colour:", Gen("B", 7, ("\n",), keep_stop=True),
               "\nName a city:", Gen("C", 7, ("\n",), keep_stop=True)]
LOOP_STEPS = [piece for i in range(5) for piece in
              (f"- item {i}:", Gen("IT", 9, ("\n",), keep_stop=True), "\n")]
MULTI_HOLE = {"five holes (test_served_llama)": (FIVE_HOLES, FIVE_STEPS),
            "PEERS 5: three holes": (THREE_HOLES, THREE_STEPS),
            "PEERS 6: loop of five holes": (LOOP, LOOP_STEPS)}


@dataclass
class TextRun:
    text: str = ""
    values: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    computed: int = 0  # prompt tokens the server evaluated


def run_text(client: Any, steps: list, cache: bool) -> TextRun:
    """The program as SGLang's frontend runs it, on llama-server (module docstring, 4)."""
    run = TextRun()

    def post(body: dict[str, Any]) -> dict[str, Any]:
        answer = client.post("/completion", {"prompt": run.text, "temperature": 0.0,
                                             "cache_prompt": cache, **body})
        run.requests += 1
        run.computed += int(answer["timings"]["prompt_n"])
        return answer

    for step in steps:
        if isinstance(step, str):
            run.text += step
            continue
        if isinstance(step, Gen):
            body: dict[str, Any] = {"n_predict": step.max_tokens, "stop": list(step.stop)}
            if step.grammar:
                body["grammar"] = step.grammar
            answer = post(body)
            value = answer["content"]
            if step.keep_stop and answer.get("stop_type") == "word":
                value += answer["stopping_word"]
        else:
            post({"n_predict": 0})  # cache the prefix (the server still samples one token)
            scores = [mean_logprob(post({
                "n_predict": len(choice.encode()) + 1, "n_probs": 1,
                "samplers": ["temperature"], "grammar": "root ::= " + gbnf_literal(choice)}),
                choice) for choice in step.choices]
            value = step.choices[scores.index(max(scores))]
        run.values[step.name] = value
        run.text += value
    return run


def gbnf_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def mean_logprob(answer: dict[str, Any], choice: str) -> float:
    """The mean log-probability of the tokens that spell ``choice`` (the end token after
    them left out)."""
    need, got, total, count = len(choice.encode()), 0, 0.0, 0
    for entry in answer["completion_probabilities"]:
        if got >= need:
            break
        got += len(entry["bytes"])
        total += float(entry["logprob"])
        count += 1
    return total / max(count, 1)


# ----------------------------------------------------------------------------- the parts


def prefix_cache(server: Server) -> Table:
    import lmq

    table = Table(f"Served: prompt tokens the server evaluated vs the final sequence "
                  f"({server.kind}'s prefix cache, each program once on empty caches)",
                  command(),
                  ["program", "requests", "prompt tokens", "generated", "final length",
                   "server computed", "server cached", "computed / final",
                   "computed − prompt tokens"])
    for name, (source, _) in MULTI_HOLE.items():
        server.reset()
        stats = run_lmq(lmq.query(source, model=server.spec)).stats
        final = stats["prompt_tokens"] + stats["generated_tokens"]
        computed = stats.get("server_computed_tokens", float("nan"))
        table.add(name, stats["forward_passes"], stats["prompt_tokens"],
                  stats["generated_tokens"], final, computed,
                  stats.get("server_cached_tokens", float("nan")), ratio(computed, final),
                  computed - stats["prompt_tokens"])
        if name == next(iter(MULTI_HOLE)):
            table.targets.append(Target(f"{name}: final length / server-computed prompt "
                                        "tokens (prefix cache hit on every later hole)",
                                        ratio(final, computed), 1.0))
    table.notes.append("Requests: one per hole plus one after each forced stretch; "
                       "'computed − prompt tokens' is what the server evaluated beyond the "
                       "program's own text (llama-server always re-evaluates one cached "
                       "token per request, to get its logits).")
    return table


def overhead(server: Server, args: argparse.Namespace, repeat: int) -> Table:
    import lmq

    n = 16 if args.quick else 48
    free = lmq.query(FREE, model=server.spec)
    five = lmq.query(FIVE_HOLES, model=server.spec)
    ids = server.vocabulary.encode(PROMPTS[0])
    reference = run_lmq(five)  # its token counts shape the baseline
    stats = reference.stats
    final = server.vocabulary.encode(reference.prompt)
    length = stats["prompt_tokens"] + stats["generated_tokens"]
    prompt = final[:stats["prompt_tokens"]]
    contenders = {
        "lmq free": lambda: run_lmq(free, prompt=PROMPTS[0], n=n),
        "plain free": lambda: server.complete_ids(ids, n),
        "lmq five": lambda: run_lmq(five),
        "plain five": lambda: server.complete_ids(prompt, length - len(prompt)),
    }
    if server.kind == "llama-server":
        contenders["streamed free"] = lambda: streamed_like_lmq(server, ids, n)
    times, results = rounds(contenders, repeat, server)
    assert results["lmq free"].stats["generated_tokens"] == n
    table = Table(f"Served: lmq through {server.kind} vs one plain completion call of the "
                  "same length (greedy)", command(),
                  ["program", "prompt tokens", "generated tokens", "lmq s", "plain call s",
                   "lmq / plain call", "lmq's request, streamed, no client s",
                   "lmq requests"])
    rows = [("free hole", "lmq free", "plain free", len(ids), n,
             results["lmq free"].stats["forward_passes"]),
            ("five holes", "lmq five", "plain five", len(prompt), length - len(prompt),
             stats["forward_passes"])]
    for label, mine, plain, p_tokens, generated, requests in rows:
        lmq_s, plain_s = median(times[mine]), median(times[plain])
        streamed = median(times.get("streamed free", [])) if label == "free hole" else \
            float("nan")
        table.add(label, p_tokens, generated, lmq_s, plain_s, ratio(lmq_s, plain_s),
                  streamed, requests)
    free_s, plain_s = median(times["lmq free"]), median(times["plain free"])
    table.targets.append(Target(f"free hole of {n} tokens: plain call time / lmq time (lmq ≤ "
                                "1.2× the plain call)", ratio(plain_s, free_s), 1 / 1.2))
    table.notes.append(f"The plain call: the prompt as token ids, n_predict = the tokens lmq "
                       f"generated, ignore_eos, temperature 0, one non-streaming request. "
                       f"For the five holes: the first {len(prompt)} tokens of lmq's final "
                       f"sequence as the prompt and {length - len(prompt)} generated, lmq's "
                       "split and length; the plain call evaluates that prompt in one batch "
                       "where lmq evaluates each hole's new text in a request of its own "
                       "(shown, no target). 'lmq's request, streamed': the body "
                       "lmq sends for the free hole (stream, n_probs 1, return_tokens, "
                       "timings_per_token), read to its end with no interpreter behind it: "
                       "what the request shape costs the server. Medians of "
                       f"{repeat} interleaved rounds after a warm-up round, each call on "
                       "empty caches.")
    return table


def streamed_like_lmq(server: Server, ids: list[int], n: int) -> int:
    """The request lmq sends for a free hole of ``n`` tokens, read to its end."""
    from lmq.runtime.backends.served import Job
    from lmq.runtime.backends.served_llama import request

    made = 0
    body = request(Job(tuple(ids), n, allow_end=False))
    with contextlib.closing(server.client.stream("/completion", body)) as events:
        for event in events:  # as lmq reads them: up to the last event, then closed
            made += len(event.get("tokens") or [])
            if event.get("stop"):
                break
    assert made == n, (made, n)
    return made


def batching(server: Server, args: argparse.Namespace, repeat: int) -> Table:
    import lmq

    count = 16 if args.quick else 64
    inputs = [{"prompt": f"Text {i}: {PROMPTS[i % len(PROMPTS)]}"} for i in range(count)]
    concurrent = lmq.query(BATCH, model=server.spec)
    sequential = lmq.query(BATCH, model=server.with_options(inflight=1))
    inflight = concurrent_cap(server)
    reference = sequential.batch(inputs, batch_size=count)
    rows = [(server.vocabulary.encode(i["prompt"]), r.stats["generated_tokens"])
            for i, r in zip(inputs, reference)]
    tokens = sum(n for _, n in rows)

    def plain(workers: int) -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda row: server.complete_ids(*row), rows))

    contenders = {"lmq 1": lambda: sequential.batch(inputs, batch_size=count),
                  "lmq n": lambda: concurrent.batch(inputs, batch_size=count),
                  "plain 1": lambda: plain(1), "plain n": lambda: plain(inflight)}
    times, results = rounds(contenders, repeat, server)
    differ = sum(a.variables != b.variables for a, b in zip(results["lmq n"], reference))
    seconds = {name: median(t) for name, t in times.items()}
    table = Table(f"Served: q.batch of {count} inputs, {inflight} requests in flight vs one "
                  f"at a time ({server.kind}, {server.slots} slots)", command(),
                  ["client", "in flight", "wall s", "inputs/s", "generated tok/s",
                   "speed-up over one at a time"])
    for client, key in (("lmq q.batch", "lmq"), ("plain calls", "plain")):
        for cap, suffix in ((1, " 1"), (inflight, " n")):
            wall = seconds[key + suffix]
            table.add(client, cap, wall, count / wall, tokens / wall,
                      ratio(seconds[key + " 1"], wall))
    table.targets.append(Target(f"batch of {count}: lmq throughput with {inflight} in flight "
                                "/ one at a time", ratio(seconds["lmq 1"], seconds["lmq n"]),
                                3.0))
    table.notes.append(f"Program: {BATCH}, prompt i = 'Text i: ' + a bench prompt; "
                       f"{tokens} generated tokens. 'Plain calls': one /completion per input "
                       "generating as many tokens as lmq did (token prompt, ignore_eos), "
                       "from a pool of that many threads: the engine's own scaling on this "
                       "machine. Values with all in flight vs one at a time: "
                       + (f"{differ} of {count} differ (batched decoding's arithmetic "
                          "differs from single-sequence decoding)" if differ else "identical")
                       + f". Medians of {repeat} rounds after a warm-up round.")
    return table


def concurrent_cap(server: Server) -> int:
    from lmq.runtime.engine import shared_engine

    return shared_engine().backend(server.spec).max_inflight


def text_pattern(server: Server, repeat: int) -> Table:
    import lmq

    table = Table("Served: lmq vs the SGLang frontend's pattern (the program text re-sent "
                  "per hole) on the same llama-server", command(),
                  ["program", "lmq s", "text per hole s", "text, no prefix cache s",
                   "text / lmq", "no cache / lmq", "requests lmq / text",
                   "computed lmq / text / no cache", "same text"])
    for name, (source, steps) in MULTI_HOLE.items():
        query = lmq.query(source, model=server.spec)
        contenders = {"lmq": lambda q=query: run_lmq(q),
                      "text": lambda s=steps: run_text(server.client, s, cache=True),
                      "nocache": lambda s=steps: run_text(server.client, s, cache=False)}
        times, results = rounds(contenders, repeat, server)
        mine, text, nocache = results["lmq"], results["text"], results["nocache"]
        seconds = {key: median(value) for key, value in times.items()}
        table.add(name, seconds["lmq"], seconds["text"], seconds["nocache"],
                  ratio(seconds["text"], seconds["lmq"]),
                  ratio(seconds["nocache"], seconds["lmq"]),
                  f"{mine.stats['forward_passes']} / {text.requests}",
                  f"{mine.stats.get('server_computed_tokens')} / {text.computed} / "
                  f"{nocache.computed}", "yes" if mine.prompt == text.text else "no")
        table.targets.append(Target(f"{name}: SGLang-frontend pattern time / lmq time",
                                    ratio(seconds["text"], seconds["lmq"]), 2.0))
    table.notes.append("Text per hole: SGLang's frontend requests (module docstring, 4) sent to "
                       "llama-server's /completion as text prompts, prefix cache on; 'no "
                       "prefix cache': the same with cache_prompt false. 'same text': whether "
                       "both built the same final text (they can part: lmq decides a choice "
                       "token by token where SGLang takes the best mean log-probability, and "
                       "lmq heals the prompt's last token into the hole after it).")
    table.notes.append("LMQL 0.7.3 not measured: its OpenAI path needs tiktoken ids for "
                       "logit_bias, echo and legacy logprobs, which llama-server does not give "
                       "(module docstring).")
    table.notes.append(f"Medians of {repeat} interleaved rounds after a warm-up round, each "
                       "call on empty caches.")
    return table


def command() -> str:
    return _COMMAND


_COMMAND = "python bench/bench_serving.py"


def main(argv: list[str] | None = None) -> list[Table]:
    global _COMMAND
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, inputs and tokens")
    p.add_argument("--repeat", type=int, default=None, help="timed rounds (median reported)")
    p.add_argument("--server", default=None,
                   help="measure a running server (llama-server:URL, vllm:URL, sglang:URL, "
                        "with ?tokenizer=... as lmq takes it) instead of starting one")
    p.add_argument("--server-threads", type=int,
                   default=max(1, (os.cpu_count() or 2) // 2),
                   help="llama-server threads (default: half the cores)")
    args = p.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    _COMMAND = " ".join(["python bench/bench_serving.py"] + (["--quick"] if args.quick else [])
                        + ([f"--repeat {args.repeat}"] if args.repeat else [])
                        + ([f"--server {args.server}"] if args.server else []))
    with contextlib.ExitStack() as stack:
        spec = args.server
        if spec is None:
            binary = find_binary()
            if binary is None:
                print("# bench_serving: skipped, no llama-server binary (set LMQ_LLAMA_SERVER, "
                      "or build one with .ci/llama-server)", flush=True)
                return []
            from lmq.runtime.backends.hf_models import smollm2_gguf

            url = stack.enter_context(llama_server(binary, smollm2_gguf(),
                                                   args.server_threads))
            spec = f"llama-server:{url}?tokenizer=smollm2"
            _COMMAND += f" --server-threads {args.server_threads}"
        server = connect(spec)
        tables = [prefix_cache(server)]
        tables[-1].show()
        tables.append(overhead(server, args, repeat))
        tables[-1].show()
        tables.append(batching(server, args, repeat))
        tables[-1].show()
        if server.kind == "llama-server":
            tables.append(text_pattern(server, repeat))
            tables[-1].show()
        else:
            print(f"# the SGLang-frontend pattern is measured on llama-server only "
                  f"(here: {server.kind})", flush=True)
        if server.reset_note:
            for table in tables:
                table.notes.append(server.reset_note)
        return tables


if __name__ == "__main__":
    main()
