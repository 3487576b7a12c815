"""Per-vocabulary precomputation for token masks (ENGINE-NOTES 3.1).

A :class:`TokenIndex` knows the exact byte string of every token id of a model's
vocabulary (:class:`lmq.runtime.backends.base.Vocabulary`), which ids are special (never
produced by a content mask), the EOS ids, and the arrays the vectorised DFA walk of
:mod:`lmq.runtime.automata.guide` needs. It is built once per vocabulary; the derived
arrays are stored on disk under ``$LMQ_CACHE_DIR/token_index/<fingerprint>.npz`` (default
cache dir ``~/.cache/lmq``; ``LMQ_NO_CACHE=1`` disables the cache). The fingerprint hashes
the token bytes, the special ids and the logits width, so two backends of one model (its
transformers and llama.cpp builds) share an index and can be combined (``fuse``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lmq.errors import LmqModelError


class Vocabulary(Protocol):
    """What an index needs of a model's vocabulary (the backend contract's
    :class:`lmq.runtime.backends.base.Vocabulary` is one)."""

    size: int
    eos_ids: frozenset[int]

    def token_bytes(self) -> list[bytes | None]: ...

    def encode(self, text: str, parse_special: bool = True) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

FORMAT_VERSION = 2
# Round-trip probe: ASCII, accents, CJK, emoji (4-byte), whitespace runs, digits.
_PROBE = "Hello, world!  Ünïcödé naïve café — 中文字符 😀🚀 tabs\tand\nnew lines\n\n 12345 <b>x</b>"


_DERIVED = frozenset(("lengths", "char_lengths", "partial_utf8", "order", "sorted_lengths",
                      "column_data", "column_starts", "first_byte_positions",
                      "first_byte_starts"))


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
    """Token byte strings and walk arrays for one vocabulary and one logits width.

    Attributes (arrays are read-only):
      ``vocab_size``: logits width; ids the vocabulary has no token for are special.
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
      ``fingerprint``: hash of the token bytes, the special ids and ``vocab_size``.
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
                 vocabulary: Vocabulary | None = None,
                 derived: dict[str, np.ndarray] | None = None) -> None:
        self.vocab_size = vocab_size
        self.fingerprint = fingerprint
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        if any(not 0 <= i < vocab_size for i in self.eos_ids):
            raise ValueError(f"EOS ids {sorted(self.eos_ids)} outside the vocabulary")
        self.vocabulary = vocabulary
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
                         vocabulary: Vocabulary | None = None) -> TokenIndex:
        """An index from explicit byte strings; ``None``, ``b""`` and the ids in ``special``
        are special. Built afresh (no disk cache)."""
        flat, offsets, is_special, fingerprint = _packed(token_bytes, vocab_size, special)
        return cls(vocab_size, flat, offsets, is_special, eos_ids, fingerprint, vocabulary)

    @classmethod
    def from_vocabulary(cls, vocabulary: Vocabulary) -> TokenIndex:
        """The index of a backend's vocabulary, its derived arrays from the disk cache when
        present (a corrupt file is rebuilt).

        Raises :class:`LmqModelError` if the byte strings do not reproduce the
        vocabulary's own decoding of a probe text (a mask built on them would be wrong).
        """
        flat, offsets, special, fingerprint = _packed(vocabulary.token_bytes(),
                                                      vocabulary.size, ())
        derived = _load(fingerprint, vocabulary.size)
        index = cls(vocabulary.size, flat, offsets, special, vocabulary.eos_ids, fingerprint,
                    vocabulary, derived)
        if derived is None:
            index._check_round_trip()
            index._store()
        return index

    def _check_round_trip(self) -> None:
        assert self.vocabulary is not None
        ids = self.encode(_PROBE)
        ours = b"".join(self.token_bytes[i] for i in ids).decode("utf-8", "replace")
        theirs = self.vocabulary.decode(ids)
        # SentencePiece decoders strip the dummy-prefix space of the first piece.
        if ours != theirs and ours.removeprefix(" ") != theirs.removeprefix(" "):
            raise LmqModelError(f"token byte strings do not round-trip through the tokenizer "
                                f"({ours!r} != {theirs!r})")

    def _store(self) -> None:
        directory = _cache_dir()
        if directory is None:
            return
        meta = np.array([self.fingerprint, str(self.vocab_size), _checksum(self.derived)])
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    payload: dict[str, Any] = {"meta": meta, **self.derived}
                    np.savez(f, **payload)
                os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users
                os.replace(tmp, directory / f"{self.fingerprint}.npz")  # atomic on POSIX
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass  # the cache only saves time; a read-only home must not break a run

    # -- helpers ------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text: no BOS/EOS added, and a special token's
        spelling inside ``text`` (``"<|im_end|>"``) is tokenized as text (needs the
        vocabulary)."""
        if self.vocabulary is None:
            raise ValueError("this TokenIndex was built without a vocabulary")
        return self.vocabulary.encode(text, parse_special=False)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The concatenated byte strings of ``ids`` (special ids contribute nothing)."""
        return b"".join(self.token_bytes[i] for i in ids)

    def __repr__(self) -> str:
        return (f"TokenIndex(vocab_size={self.vocab_size}, content={len(self.order)}, "
                f"fingerprint={self.fingerprint!r})")


def _packed(token_bytes: list[bytes | None], vocab_size: int,
            special: Iterable[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``(flat, offsets, special, fingerprint)`` of byte strings: ``None``, ``b""`` and the
    ids in ``special`` are special (and get ``b""``), as are ids past ``token_bytes``."""
    if len(token_bytes) > vocab_size:
        raise ValueError(f"{len(token_bytes)} tokens exceed the logits width {vocab_size}")
    is_special = np.ones(vocab_size, dtype=bool)
    is_special[:len(token_bytes)] = [not b for b in token_bytes]  # None or b"": no content
    is_special[list(special)] = True
    pieces = [b"" if s or b is None else b for b, s in zip(token_bytes, is_special)]
    pieces += [b""] * (vocab_size - len(pieces))
    offsets = np.cumsum([0] + [len(b) for b in pieces], dtype=np.int64)
    flat = np.frombuffer(b"".join(pieces), dtype=np.uint8).copy()
    digest = hashlib.sha256(f"v{FORMAT_VERSION}:{vocab_size}:".encode())
    digest.update(offsets.tobytes())
    digest.update(flat.tobytes())
    digest.update(np.packbits(is_special).tobytes())
    return flat, offsets, is_special, digest.hexdigest()[:32]


def _load(fingerprint: str, vocab_size: int) -> dict[str, np.ndarray] | None:
    """The derived arrays of ``fingerprint`` from the disk cache, None when absent, not
    intact (truncated, corrupt or foreign: rebuilt and overwritten) or writable by others
    (its masks decide what a constraint allows). Only arrays are read, never a pickle."""
    directory = _cache_dir()
    path = directory / f"{fingerprint}.npz" if directory else None
    try:
        if path is None or not path.is_file() or path.stat().st_mode & 0o022:
            return None
    except OSError:
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if name != "meta"}
            meta = [str(x) for x in data["meta"]]
    except Exception:  # noqa: BLE001  # numpy raises many kinds on a damaged file
        return None
    if meta != [fingerprint, str(vocab_size), _checksum(arrays)] or set(arrays) != _DERIVED:
        return None
    return arrays
