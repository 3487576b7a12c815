"""PEFT adapters: a local adapter folder checked up front, then merged into a loaded model.

:func:`adapter_merger` validates the folder before any model loads (so a broken adapter fails
fast and cheaply) and returns the function that merges it, leaving the backend a plain model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmq.errors import LmqModelError, one_line

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def adapter_merger(adapter: str) -> Callable[[Any], Any]:
    """Checks the PEFT adapter folder ``adapter`` (before any model loads) and returns the
    function merging it into a model's weights, so the backend sees a plain model.

    The folder must hold ``adapter_config.json`` (a JSON object naming its ``peft_type``)
    and the weights (``adapter_model.safetensors`` or ``.bin``); it is always read locally,
    never looked up on the Hub. Anything wrong with it is an :class:`LmqModelError`."""
    folder = Path(adapter).expanduser()
    if not folder.is_dir():
        raise LmqModelError(f"adapter folder '{folder}' not found"
                            if not folder.exists() else
                            f"the adapter '{folder}' is not a folder",
                            hint="an adapter is a PEFT adapter folder (save_pretrained); "
                            "a relative path in lmq.toml is relative to that file")
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise LmqModelError(f"'{folder}' is not a PEFT adapter folder "
                            "(no adapter_config.json)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise LmqModelError(f"cannot read {config_file}: {one_line(error)}") from None
    if not isinstance(config, dict) or "peft_type" not in config:
        raise LmqModelError(f"{config_file} is not a PEFT adapter configuration "
                            "(no peft_type)")
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise LmqModelError(f"the adapter folder '{folder}' has no weights "
                            f"({' or '.join(ADAPTER_WEIGHTS)})")
    try:
        from peft import PeftModel
    except ImportError:
        raise LmqModelError(f"the adapter {folder} needs the peft package",
                            hint="install it with: pip install peft") from None

    def merge(model: Any) -> Any:
        import warnings

        from safetensors import SafetensorError

        try:
            with warnings.catch_warnings():  # transformers' deprecation noise, seen via peft
                warnings.filterwarnings("ignore", category=FutureWarning,
                                        message=".*gradient_checkpointing")
                # a str: peft takes only a str as a local folder (a Path is a repo id error)
                peft_model = PeftModel.from_pretrained(model, str(folder))
                return peft_model.merge_and_unload().eval()
        except (OSError, ValueError, KeyError, TypeError, RuntimeError,
                SafetensorError) as error:  # a config or weights not matching the model
            raise LmqModelError(f"cannot apply the adapter {folder}: "
                                f"{one_line(error)}") from None

    return merge
