"""The backend contract (:mod:`.base`), the registry of kinds of backend (:mod:`.registry`)
and the backends: transformers (:mod:`.hf`, loading in :mod:`.hf_models`)."""
