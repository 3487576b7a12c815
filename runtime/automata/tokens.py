"""Per-tokenizer precomputation for token masks (ENGINE-NOTES 3.1).

A :class:`TokenIndex` knows the exact byte string of every token id of a tokenizer, which
ids are special (never produced by a content mask), the EOS ids, and the arrays the
vectorised DFA walk of :mod:`lmq.runtime.automata.guide` needs. It is built once per tokenizer and
stored on disk under ``$LMQ_CACHE_DIR/token_index/<fingerprint>.npz`` (default cache dir
``~/.cache/lmq``; ``LMQ_NO_CACHE=1`` disables the cache).

Byte strings: byte-level BPE tokens go through the GPT-2 byte-to-unicode map (``Ġ`` is a
space, ``Ċ`` a newline); SentencePiece pieces map ``▁`` to a space and ``<0xNN>`` byte
fallback pieces to that byte; added and special tokens, and ids the tokenizer lacks (the
logits may be wider than the vocabulary), get ``b""`` and are marked special.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lmq.errors import LmqModelError

FORMAT_VERSION = 1
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")
# Round-trip probe: ASCII, accents, CJK, emoji (4-byte), whitespace runs, digits.
_PROBE = "Hello, world!  Ünïcödé naïve café — 中文字符 😀🚀 tabs\tand\nnew lines\n\n 12345 <b>x</b>"


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


def _is_byte_level(tokenizer, pieces: list[str | None]) -> bool:
    """Byte-level BPE if the fast tokenizer's decoder says so; otherwise guess from the
    vocabulary (byte-level vocabularies spell a leading space ``Ġ``, SentencePiece ``▁``)."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is not None:
        return '"ByteLevel"' in decoder.__getstate__().decode()
    spaced = sum(1 for p in pieces if p and p[0] == "Ġ")
    return spaced > sum(1 for p in pieces if p and p[0] == "\u2581")


def _cache_dir() -> Path | None:
    if os.environ.get("LMQ_NO_CACHE", "") not in ("", "0"):
        return None
    root = os.environ.get("LMQ_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lmq")
    return Path(root) / "token_index"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


class TokenIndex:
    """Token byte strings and walk arrays for one tokenizer and one logits width.

    Attributes (arrays are read-only):
      ``vocab_size``: logits width; ids ``>= len(tokenizer)`` exist and are special.
      ``token_bytes``: ``list[bytes]`` per id (``b""`` for special ids).
      ``special``: bool ``[vocab_size]``; ``eos_ids``: frozenset of ids.
      ``lengths``, ``char_lengths``: int32 ``[vocab_size]`` bytes / UTF-8 lead bytes per id.
      ``partial_utf8``: bool ``[vocab_size]``, content tokens that are not UTF-8 on their own.
      ``order``: int32 ids of the content tokens (non-special, non-empty) sorted by byte
      length, longest first; ``sorted_lengths``: their lengths.
      ``columns[p]``: int32 array of byte ``p`` of ``order[:len(columns[p])]`` -- the tokens
      longer than ``p`` are a prefix of ``order``, so each column is contiguous.
      ``first_byte_positions`` / ``first_byte_starts``: positions into ``order`` grouped by
      first byte (``positions[starts[b]:starts[b + 1]]``, ascending), for sparse walks.
      ``fingerprint``: hash of the vocabulary, decoding mode and ``vocab_size``.
    """

    # Derived arrays (see _derive), set from a dict so the disk cache can store them as is.
    lengths: np.ndarray
    char_lengths: np.ndarray
    partial_utf8: np.ndarray
    order: np.ndarray
    sorted_lengths: np.ndarray
    column_data: np.ndarray
    column_starts: np.ndarray
    first_byte_positions: np.ndarray
    first_byte_starts: np.ndarray

    def __init__(self, vocab_size: int, flat: np.ndarray, offsets: np.ndarray,
                 special: np.ndarray, eos_ids: Iterable[int], fingerprint: str,
                 tokenizer=None, derived: dict[str, np.ndarray] | None = None) -> None:
        self.vocab_size = vocab_size
        self.fingerprint = fingerprint
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        if any(not 0 <= i < vocab_size for i in self.eos_ids):
            raise ValueError(f"EOS ids {sorted(self.eos_ids)} outside the vocabulary")
        self.tokenizer = tokenizer
        self.flat, self.offsets, self.special = flat, offsets, special
        data = flat.tobytes()
        self.token_bytes = [data[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        self.derived = derived if derived is not None else self._derive()
        for name, array in self.derived.items():
            setattr(self, name, array)
        self.columns = np.split(self.column_data, self.column_starts[1:-1])
        for array in (flat, offsets, special, *self.derived.values()):
            array.flags.writeable = False

    def _derive(self) -> dict[str, np.ndarray]:
        lengths = np.diff(self.offsets).astype(np.int32)
        continuation = (self.flat & 0xC0) == 0x80
        leads = np.concatenate([[0], np.cumsum(~continuation, dtype=np.int64)])
        char_lengths = (leads[self.offsets[1:]] - leads[self.offsets[:-1]]).astype(np.int32)
        partial = np.zeros(self.vocab_size, dtype=bool)
        for i in np.nonzero(lengths > 0)[0].tolist():
            try:
                self.token_bytes[i].decode("utf-8")
            except UnicodeDecodeError:
                partial[i] = True
        content = np.nonzero((lengths > 0) & ~self.special)[0]
        order = content[np.argsort(-lengths[content], kind="stable")].astype(np.int32)
        sorted_lengths = lengths[order]
        columns = []
        for p in range(int(sorted_lengths[0]) if len(order) else 0):
            count = int(np.searchsorted(-sorted_lengths, -p, side="left"))  # lengths > p
            columns.append(self.flat[self.offsets[order[:count]] + p].astype(np.int32))
        column_starts = np.cumsum([0] + [len(c) for c in columns], dtype=np.int64)
        first = columns[0] if columns else np.zeros(0, np.int32)
        positions = np.argsort(first, kind="stable").astype(np.int32)
        return {
            "lengths": lengths, "char_lengths": char_lengths, "partial_utf8": partial,
            "order": order, "sorted_lengths": sorted_lengths,
            "column_data": np.concatenate(columns) if columns else np.zeros(0, np.int32),
            "column_starts": column_starts, "first_byte_positions": positions,
            "first_byte_starts": np.searchsorted(first[positions], np.arange(257)),
        }

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_token_bytes(cls, token_bytes: list[bytes | None], vocab_size: int,
                         eos_ids: Iterable[int], special: Iterable[int] = (),
                         tokenizer=None, fingerprint: str | None = None) -> TokenIndex:
        """An index from explicit byte strings; ``None``, ``b""`` and the ids in ``special``
        are special."""
        if len(token_bytes) > vocab_size:
            raise ValueError(f"{len(token_bytes)} tokens exceed the logits width {vocab_size}")
        is_special = np.ones(vocab_size, dtype=bool)
        is_special[:len(token_bytes)] = [not b for b in token_bytes]  # None or b"": no content
        is_special[list(special)] = True
        pieces = [b"" if s or b is None else b for b, s in zip(token_bytes, is_special)]
        pieces += [b""] * (vocab_size - len(pieces))
        offsets = np.cumsum([0] + [len(b) for b in pieces], dtype=np.int64)
        flat = np.frombuffer(b"".join(pieces), dtype=np.uint8).copy()
        if fingerprint is None:
            digest = hashlib.sha256(f"v{FORMAT_VERSION}:{vocab_size}:".encode())
            digest.update(offsets.tobytes())
            digest.update(flat.tobytes())
            digest.update(np.packbits(is_special).tobytes())
            fingerprint = digest.hexdigest()[:32]
        return cls(vocab_size, flat, offsets, is_special, eos_ids, fingerprint, tokenizer)

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int, eos_ids: Iterable[int]) -> TokenIndex:
        """The index of a Hugging Face tokenizer for a model whose logits have ``vocab_size``
        columns, loaded from the disk cache when present (a corrupt file is rebuilt).

        Raises :class:`LmqModelError` if the derived byte strings do not reproduce the
        tokenizer's own decoding of a probe text (a mask built on them would be wrong).
        """
        vocab = tokenizer.get_vocab()
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        pieces: list[str | None] = [None] * max(vocab_size, max(vocab.values(), default=-1) + 1)
        for piece, i in vocab.items():
            pieces[i] = piece
        pieces = pieces[:vocab_size]
        byte_level = _is_byte_level(tokenizer, pieces)
        digest = hashlib.sha256(f"v{FORMAT_VERSION}:{vocab_size}:{byte_level}:".encode())
        digest.update("\x00".join(p if p is not None else "\x01" for p in pieces).encode())
        digest.update(",".join(map(str, sorted(added))).encode())
        fingerprint = digest.hexdigest()[:32]
        cached = cls._load(fingerprint, vocab_size, eos_ids, tokenizer)
        if cached is not None:
            return cached
        token_bytes = token_strings_to_bytes(pieces, byte_level)
        index = cls.from_token_bytes(token_bytes, vocab_size, eos_ids,
                                     special=[i for i in added if i < vocab_size],
                                     tokenizer=tokenizer, fingerprint=fingerprint)
        index._check_round_trip()
        index._store()
        return index

    def _check_round_trip(self) -> None:
        ids = self.encode(_PROBE)
        ours = b"".join(self.token_bytes[i] for i in ids).decode("utf-8", "replace")
        theirs = self.tokenizer.decode(ids, skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        # SentencePiece decoders strip the dummy-prefix space of the first piece.
        if ours != theirs and ours.removeprefix(" ") != theirs.removeprefix(" "):
            raise LmqModelError(f"token byte strings do not round-trip through the tokenizer "
                                f"({ours!r} != {theirs!r})")

    # -- disk cache ---------------------------------------------------------------------

    def _store(self) -> None:
        directory = _cache_dir()
        if directory is None:
            return
        arrays = {"flat": self.flat, "offsets": self.offsets, "special": self.special,
                  **self.derived}
        meta = np.array([self.fingerprint, str(self.vocab_size), _checksum(arrays)])
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    payload: dict[str, Any] = {"meta": meta, **arrays}
                    np.savez(f, **payload)
                os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users
                os.replace(tmp, directory / f"{self.fingerprint}.npz")  # atomic on POSIX
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass  # the cache only saves time; a read-only home must not break a run

    @classmethod
    def _load(cls, fingerprint: str, vocab_size: int, eos_ids, tokenizer) -> TokenIndex | None:
        directory = _cache_dir()
        path = directory / f"{fingerprint}.npz" if directory else None
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files if name != "meta"}
                meta = [str(x) for x in data["meta"]]
            if meta != [fingerprint, str(vocab_size), _checksum(arrays)]:
                raise ValueError("token index cache does not match its checksum")
            core = {name: arrays.pop(name) for name in ("flat", "offsets", "special")}
            return cls(vocab_size, core["flat"], core["offsets"], core["special"], eos_ids,
                       fingerprint, tokenizer, derived=arrays)
        except Exception:  # noqa: BLE001  # truncated, corrupt or foreign: rebuild, overwrite
            return None

    # -- helpers ------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text: no BOS/EOS added, and a special token's
        spelling inside ``text`` (``"<|im_end|>"``) is tokenized as text (needs the
        tokenizer)."""
        if self.tokenizer is None:
            raise ValueError("this TokenIndex was built without a tokenizer")
        encoded = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)
        return list(encoded["input_ids"])

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The concatenated byte strings of ``ids`` (special ids contribute nothing)."""
        return b"".join(self.token_bytes[i] for i in ids)

    def __repr__(self) -> str:
        return (f"TokenIndex(vocab_size={self.vocab_size}, content={len(self.order)}, "
                f"fingerprint={self.fingerprint!r})")
