"""A Hugging Face tokenizer as a :class:`~lmq.runtime.backends.base.Vocabulary`.

Byte strings: byte-level BPE tokens go through the GPT-2 byte-to-unicode map (``Ġ`` is a
space, ``Ċ`` a newline); SentencePiece pieces map ``▁`` to a space and ``<0xNN>`` byte
fallback pieces to that byte; added and special tokens, and ids the tokenizer lacks (the
logits may be wider than the vocabulary), are special (None).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lmq.runtime.backends.base import Vocabulary, end_of_turn_ids

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (``0x20`` -> ``Ġ``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


_BYTE_DECODER = str.maketrans({c: chr(b) for b, c in bytes_to_unicode().items()})
_BYTE_LEVEL_CHARS = frozenset(bytes_to_unicode().values())


def token_strings_to_bytes(pieces: list[str | None], byte_level: bool) -> list[bytes | None]:
    """Byte strings of vocabulary pieces (``None`` stays ``None``; a byte-level piece with a
    character outside the byte map, which no byte-level BPE produces, becomes ``None``)."""
    out: list[bytes | None] = []
    for piece in pieces:
        if piece is None:
            out.append(None)
        elif byte_level:
            out.append(piece.translate(_BYTE_DECODER).encode("latin-1")
                       if _BYTE_LEVEL_CHARS.issuperset(piece) else None)
        elif match := _BYTE_FALLBACK.fullmatch(piece):
            out.append(bytes([int(match.group(1), 16)]))
        else:
            out.append(piece.replace("\u2581", " ").encode("utf-8"))
    return out


def is_byte_level(tokenizer: Any, pieces: list[str | None]) -> bool:
    """Byte-level BPE if the fast tokenizer's decoder says so; otherwise guess from the
    vocabulary (byte-level vocabularies spell a leading space ``Ġ``, SentencePiece ``▁``)."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is not None:
        return '"ByteLevel"' in decoder.__getstate__().decode()
    spaced = sum(1 for p in pieces if p and p[0] == "Ġ")
    return spaced > sum(1 for p in pieces if p and p[0] == "\u2581")


class HfVocabulary(Vocabulary):
    """The vocabulary of a transformers tokenizer for a model whose logits have ``size``
    columns and whose end-of-sequence ids are ``eos_ids``."""

    def __init__(self, tokenizer: Any, size: int, eos_ids: Iterable[int]) -> None:
        self.tokenizer = tokenizer
        self.size = size
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        bos = tokenizer.bos_token_id
        self.bos_id = int(bos) if bos is not None else None

    def token_bytes(self) -> list[bytes | None]:
        vocab = self.tokenizer.get_vocab()
        pieces: list[str | None] = [None] * max(self.size, max(vocab.values(), default=-1) + 1)
        for piece, i in vocab.items():
            pieces[i] = piece
        pieces = pieces[:self.size]
        out = token_strings_to_bytes(pieces, is_byte_level(self.tokenizer, pieces))
        for i in getattr(self.tokenizer, "added_tokens_decoder", {}) or {}:
            if i < len(out):
                out[i] = None
        return out

    def special_text(self, token_id: int) -> str:
        if token_id >= len(self.tokenizer):
            return ""
        return self.tokenizer.convert_ids_to_tokens(int(token_id)) or ""

    def encode(self, text: str, parse_special: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False,
                                          split_special_tokens=not parse_special))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)

    def render_chat(self, messages: Sequence[Mapping[str, str]],
                    add_generation_prompt: bool) -> str | None:
        if not getattr(self.tokenizer, "chat_template", None):
            return None
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)


def eos_ids(tokenizer: Any, generation_config: Any = None) -> frozenset[int]:
    """Tokenizer EOS ∪ generation-config EOS (int or list) ∪ chat end-of-turn tokens."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos is not None:
        ids.update(int(e) for e in eos)
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    vocab = tokenizer.get_vocab()
    ids |= end_of_turn_ids(template, lambda marker: vocab.get(marker))
    return frozenset(ids)
