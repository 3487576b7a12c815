"""The decoding loop and what it decodes with: :mod:`.loop` advances rows in lockstep,
:mod:`.context` keeps each row's KV-cached context on a model, :mod:`.holes` and
:mod:`.hole_constraint` enforce a hole's constraint, :mod:`.choosing` picks tokens under
masks, :mod:`.beam` forks branches, :mod:`.healing` heals a trailing space; features reach
the loop through :mod:`.features` (:mod:`.plans`, :mod:`.prefer`, :mod:`.knowledge`)."""
