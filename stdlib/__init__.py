"""The lmq standard library: building blocks written in lmq and host Python.

Programs import names with ``from lmq.stdlib.MODULE import NAME`` (only the names in a
module's ``__all__``, checked when the program compiles; they arrive as callables and
return plain values); host code imports the modules as usual. Every function checks its
arguments by type before using them and bounds its work by the calling program's limits
(:mod:`lmq.stdlib.arguments`); programs it runs spend that program's budget. A
``model=None`` argument means the default model (``LMQ_MODEL``, the configuration, else
``smollm2``), not the model of the program that calls the function: pass ``model=`` to
use another.

* :mod:`lmq.stdlib.labels` — ``classify`` into a fixed label set by ``LABELS`` decoding,
  by scoring every label in one batched pass, or by free generation parsed afterwards;
  ``calibrate_threshold`` for multi-label scores; ``label_metrics``.
* :mod:`lmq.stdlib.knowledge` — knowledge preference (instruction > context > parametric):
  ``render_sections`` / ``render_segments`` for the prompt mode, ``cascade_answer`` for the
  source cascade, ``normalize_answer`` / ``is_correct`` for scoring.
* :mod:`lmq.stdlib.routing` — specialists from ``[tool.lmq.specialists]`` and ``route``
  by sentence-embedding similarity (all-MiniLM-L6-v2) or by a language model's constrained
  choice; ``decision``, ``embed``, ``similarity``.
* :mod:`lmq.stdlib.notes` — knowledge edits as notes retrieved by embedding and read with
  the cascade's fallback (EREN): ``note``, ``recall``, ``forget``, ``answer_with_notes``.
* :mod:`lmq.stdlib.posix` — the prompt sensitivity index ``posix`` (batched scoring of
  every response under every prompt variant) and variant generators.
* :mod:`lmq.stdlib.hierarchical` — the Hierarchical Prompting Taxonomy: ``hierarchical``
  escalates through five prompting strategies until a check passes; ``hp_score``.

Evaluations: ``bench/eval_labels.py``, ``bench/eval_knowledge.py`` (results in
``bench/RESULTS_EVAL.md``).
"""
