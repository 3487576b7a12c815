"""Constraint languages over bytes and the token masks they give (numpy and llguidance, no
torch): :mod:`.fsm` compiles :mod:`lmq.regular` trees (through :mod:`.nfa`,
:mod:`.fsm_builders`, :mod:`.fsm_json`, :mod:`.fsm_concat` and the lazy fallback
:mod:`.fsm_lazy`), :mod:`.tokens` indexes a vocabulary, :mod:`.guide` walks both to a mask
per state; :mod:`.grammar` gives the masks of context-free grammars with llguidance, and
:mod:`.grammar_completion` their shortest completions (for token budgets)."""
