"""A llama.cpp model's vocabulary as a :class:`~lmq.runtime.backends.base.Vocabulary`.

Everything comes from the GGUF through llama.cpp: the exact bytes of each token
(``llama_token_to_piece`` without special rendering, so byte-level BPE pieces come back as
their bytes, partial UTF-8 included), which tokens are special (control, user-defined,
unknown and unused tokens), BOS/EOS, and the chat template from the metadata, rendered
with Jinja the way transformers renders it (a sandboxed environment, ``trim_blocks`` and
``lstrip_blocks``), so the transformers and llama.cpp builds of one model see the same text.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any

from lmq.runtime.backends.base import Vocabulary, end_of_turn_ids

_SPECIAL_ATTRS = ("LLAMA_TOKEN_ATTR_CONTROL", "LLAMA_TOKEN_ATTR_USER_DEFINED",
                  "LLAMA_TOKEN_ATTR_UNKNOWN", "LLAMA_TOKEN_ATTR_UNUSED")


class LlamaVocabulary(Vocabulary):
    """The vocabulary of a loaded ``llama_model`` (``api`` is the ``llama_cpp`` module)."""

    def __init__(self, api: Any, model: Any) -> None:
        self._api = api
        self._vocab = api.llama_model_get_vocab(model)
        self.size = int(api.llama_vocab_n_tokens(self._vocab))
        self._buffer = ctypes.create_string_buffer(256)
        special = 0
        for name in _SPECIAL_ATTRS:
            special |= getattr(api, name)
        self._special_mask = special
        template = api.llama_model_chat_template(model, None)
        self.template = template.decode("utf-8") if template else None
        bos, eos = int(api.llama_vocab_bos(self._vocab)), int(api.llama_vocab_eos(self._vocab))
        self.bos_id = bos if bos >= 0 else None
        self._eos = eos if eos >= 0 else None
        markers = end_of_turn_ids(self.template or "", self._single)
        self.eos_ids = frozenset(markers | ({eos} if eos >= 0 else set()))

    def _single(self, text: str) -> int | None:
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

    def _piece(self, token_id: int, special: bool) -> bytes:
        buffer = self._buffer
        n = self._api.llama_token_to_piece(self._vocab, token_id, buffer, len(buffer), 0, special)
        if n < 0:  # longer than the buffer: -n is the length it needs
            buffer = ctypes.create_string_buffer(-n)
            n = self._api.llama_token_to_piece(self._vocab, token_id, buffer, len(buffer), 0,
                                               special)
        return buffer.raw[:n]

    def token_bytes(self) -> list[bytes | None]:
        get_attr = self._api.llama_vocab_get_attr
        return [None if get_attr(self._vocab, i) & self._special_mask else self._piece(i, False)
                for i in range(self.size)]

    def special_text(self, token_id: int) -> str:
        return self._piece(token_id, True).decode("utf-8", "replace")

    def encode(self, text: str, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        room = len(data) + 8
        ids = (self._api.llama_token * room)()
        n = self._api.llama_tokenize(self._vocab, data, len(data), ids, room, False,
                                     parse_special)
        if n < 0:  # cannot happen for room > bytes, but llama.cpp says how many it needs
            room = -n
            ids = (self._api.llama_token * room)()
            n = self._api.llama_tokenize(self._vocab, data, len(data), ids, room, False,
                                         parse_special)
        return list(ids[:n])

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self._piece(int(i), True) for i in ids).decode("utf-8", "replace")

    def render_chat(self, messages: Sequence[Mapping[str, str]],
                    add_generation_prompt: bool) -> str | None:
        if not self.template:
            return None
        return render_template(self.template, messages, add_generation_prompt,
                               self._text(self.bos_id), self._text(self._eos))

    def _text(self, token_id: int | None) -> str:
        return "" if token_id is None else self.special_text(token_id)


def render_template(template: str, messages: Sequence[Mapping[str, str]],
                    add_generation_prompt: bool, bos_token: str, eos_token: str) -> str:
    """A Jinja chat template rendered as transformers' ``apply_chat_template`` renders it."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(template).render(
        messages=list(messages), add_generation_prompt=add_generation_prompt,
        bos_token=bos_token, eos_token=eos_token)
