"""The lmq runtime: checked programs in, results out. Its subpackages follow the flow:

* :mod:`lmq.runtime.automata` — regular languages as byte-level automata (NFA, DFA, lazy
  automata), the token index of a vocabulary and the guides that turn a state into a token
  mask (grammars through llguidance). No torch: the front end imports it for compile-time
  checks.
* :mod:`lmq.runtime.interpreter` — the sandboxed interpreter: one program instance as an
  explicit stack machine that pauses at every hole.
* :mod:`lmq.runtime.decoding` — the lockstep loop: program instances as batch rows, one
  forward pass per model and step, a mask per row; token choice, sampling, beams, token
  healing, and the plans through which features (fusion, routing, knowledge preference)
  shape a hole.
* :mod:`lmq.runtime.backends` — the backend contract (:mod:`~lmq.runtime.backends.base`),
  the registry of kinds of backend by spec prefix, and one module per backend.

Imports go one way: interpreter → decoding → backends, and decoding → automata. The
modules here tie them together: :mod:`~lmq.runtime.run` (a run of a checked program),
:mod:`~lmq.runtime.engine` (what runs share), :mod:`~lmq.runtime.specialists` (model names
to views) and :mod:`~lmq.runtime.scoring` (the scoring API of the standard library).

Where new things go: a constraint atom is an entry of :data:`lmq.atoms.ATOMS` (plus, for a
new kind of language, a node in :mod:`lmq.regular` and its builder in
:mod:`lmq.runtime.automata.fsm`); a backend is a module implementing
:class:`~lmq.runtime.backends.base.Backend` and an entry of
:data:`lmq.runtime.backends.registry.KINDS`; a decoder is a :mod:`lmq.decoders` entry and
its choice in :mod:`lmq.runtime.decoding` (``choosing`` for one token, ``beam`` for whole
branches).
"""
