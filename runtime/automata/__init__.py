"""Regular languages over bytes and the token masks they give (pure numpy, no torch):
:mod:`.fsm` compiles :mod:`lmq.regular` trees (through :mod:`.nfa`, :mod:`.fsm_builders`,
:mod:`.fsm_json`, :mod:`.fsm_concat` and the lazy fallback :mod:`.fsm_lazy`),
:mod:`.tokens` indexes a vocabulary, :mod:`.guide` walks both to a mask per state."""
