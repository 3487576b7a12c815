"""Token healing (LANGUAGE.md section 6).

A prompt that ends in whitespace the tokenizer would normally merge into the next word
("Topics: " with a byte-level BPE, whose vocabulary spells " sports" as one token) leaves
the model at a boundary it never saw in training: it has to continue after a lone " "
token. When a hole starts there, the decoding loop takes that last prompt token out of the
row (:meth:`RowContext.take_text_token`) and decodes the hole under
``HoleSpec.generation(h)``, where ``h`` is the token's text: the first generated tokens
spell ``h`` before the value, so the model may pick " sports". The value (the generated
text after ``h``) and the rendered prompt are what they would be without healing; the
hole's tokens, which spell ``h`` and the value, stand in the context for both (see
:mod:`lmq.runtime.decoding.context`).

The healed token counts as one of the hole's generated tokens (``len(TOKENS(X))``, the
``generated_tokens`` stat; ``healed_tokens`` counts the prompt tokens taken over), and a
hole that could not spell ``h`` within its token budget is left unhealed.
``LMQ_TOKEN_HEALING=0`` turns healing off. Holes decoded under a plan (companions, a view
or a review: ``prefer``, ``fuse``) are not healed: their other contexts would have to be
healed alike.
"""

from __future__ import annotations

import os

from lmq.constraints import HoleSpec
from lmq.runtime.decoding.context import RowContext
from lmq.runtime.decoding.holes import HoleRun


def healing_enabled() -> bool:
    """Whether token healing is on (``LMQ_TOKEN_HEALING``, default on)."""
    return os.environ.get("LMQ_TOKEN_HEALING", "1").strip().lower() not in ("0", "false", "no",
                                                                             "off")


def heal(context: RowContext, runtime, spec: HoleSpec, budget: int,
         enabled: bool | None = None) -> str:
    """Take the row's last token out for a hole under ``spec`` with ``budget`` tokens if it
    is prompt text the tokenizer merges into the next word, and return its text ("" if the
    row is left as it is: healing is off, there is no such token, or the hole could not
    spell it within its budget, as ``len(TOKENS(N)) == 1 and INT(N)`` after "N: " cannot
    with SmolLM2, which has no " 7" token). ``enabled`` overrides ``LMQ_TOKEN_HEALING``."""
    last = context.last_text_token()
    if last is None or not (healing_enabled() if enabled is None else enabled) or \
            runtime.text_bytes[last] not in runtime.merging_whitespace:
        return ""
    text = runtime.text_bytes[last]
    trial = HoleRun(spec, runtime.guide(spec.generation(text.decode())), runtime.text_bytes,
                    runtime.eos_ids, budget, prefix=text)
    if not trial.mask(len(runtime.text_bytes)).any():
        return ""
    context.take_text_token()
    return text.decode()
