"""TokenIndex on the real SmolLM2 tokenizer (through its HfVocabulary): exact bytes, special
ids, walk arrays, cache."""

import os
import random

import numpy as np
import pytest

from lmq.errors import LmqModelError
from lmq.runtime.automata.tokens import TokenIndex
from lmq.runtime.backends import hf_vocabulary as hv
from lmq.runtime.backends.hf_vocabulary import HfVocabulary

os.environ.setdefault("HF_HUB_OFFLINE", "1")
VOCAB = 49_152
TEXTS = ["Hello, world!", "  two  spaces\tand\ttabs\n\nnew lines\r\n", "Ünïcödé naïve café",
         "中文字符和日本語のテキスト", "emoji 😀🚀👩‍👩‍👧 mixed", "def f(x):\n    return x**2  # ok",
         "12345.678e-9 -42", "<|im_end|> is text here", "\u00a0\u200b\ufeff zero-width", "ɐ ʎ ʞ ɹ"]


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer):
    return smollm2_tokenizer


@pytest.fixture(scope="module")
def index(tokenizer, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMQ_CACHE_DIR", str(tmp_path_factory.mktemp("lmq-cache")))
        return TokenIndex.from_vocabulary(HfVocabulary(tokenizer, VOCAB, [2]))


def test_round_trip_of_encoded_text(index, tokenizer):
    rng = random.Random(0)
    texts = TEXTS + ["".join(chr(rng.choice([rng.randrange(32, 0x2FF), rng.randrange(0x4E00, 0x4F00),
                                             rng.randrange(0x1F600, 0x1F650)]))
                             for _ in range(40)) for _ in range(20)]
    for text in texts:
        ids = index.encode(text)
        assert not any(index.special[i] for i in ids), text
        assert index.decode_bytes(ids) == text.encode(), text
        assert index.decode_bytes(ids).decode() == tokenizer.decode(ids)


def test_round_trip_of_random_ids(index, tokenizer):
    rng = random.Random(1)
    content = np.nonzero(~index.special)[0].tolist()
    for _ in range(200):
        ids = rng.sample(content, rng.randrange(1, 8))
        assert index.decode_bytes(ids).decode("utf-8", "replace") == tokenizer.decode(ids)


def test_special_tokens(index, tokenizer):
    added = sorted(tokenizer.added_tokens_decoder)
    assert added == list(range(17))
    assert index.special[:17].all() and not index.special[17:].any()
    assert all(index.token_bytes[i] == b"" for i in added)
    assert index.eos_ids == frozenset({2}) and len(index.token_bytes) == VOCAB
    assert index.token_bytes[216] == b" " and index.token_bytes[198] == b"\n"  # Ġ and Ċ
    # Single-byte tokens exist for all but 21 bytes (some controls, C0/C1, F1/F2, F5..FF).
    single = {b[0] for b in index.token_bytes if len(b) == 1}
    assert len(single) == 235 and {0xC0, 0xC1, 0xFF}.isdisjoint(single)


def test_partial_utf8_tokens(index):
    # 313 tokens are not UTF-8 on their own; one more (U+FFFD itself) decodes to "�",
    # which makes the 314 that counting "�" in tokenizer.decode([id]) finds.
    assert int(index.partial_utf8.sum()) == 313
    assert sum(1 for b in index.token_bytes if "\ufffd" in b.decode("utf-8", "replace")) == 314
    for i in np.nonzero(index.partial_utf8)[0][:50]:
        with pytest.raises(UnicodeDecodeError):
            index.token_bytes[i].decode()


def test_logits_wider_than_vocabulary(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("LMQ_NO_CACHE", "1")
    wide = TokenIndex.from_vocabulary(HfVocabulary(tokenizer, VOCAB + 64, [2]))
    assert len(wide.token_bytes) == VOCAB + 64 and wide.special[VOCAB:].all()
    assert all(b == b"" for b in wide.token_bytes[VOCAB:])
    assert len(wide.order) == VOCAB - 17
    with pytest.raises(ValueError):
        TokenIndex.from_vocabulary(HfVocabulary(tokenizer, VOCAB, [VOCAB + 1]))


def test_walk_arrays(index):
    order, lengths = index.order, index.sorted_lengths
    assert len(order) == VOCAB - 17 and not index.special[order].any()
    assert (np.diff(lengths) <= 0).all() and (lengths == index.lengths[order]).all()
    assert len(index.columns) == lengths[0]
    for p, column in enumerate(index.columns):
        assert len(column) == int((lengths > p).sum())
        for j in random.Random(p).sample(range(len(column)), min(200, len(column))):
            assert column[j] == index.token_bytes[order[j]][p]
    for b in (0x20, ord("a"), 0xE4, 0xFF):
        start, end = index.first_byte_starts[b], index.first_byte_starts[b + 1]
        positions = index.first_byte_positions[start:end]
        assert (np.diff(positions) > 0).all()
        assert {index.token_bytes[i] for i in order[positions]} == {
            t for i, t in enumerate(index.token_bytes) if t[:1] == bytes([b]) and not index.special[i]}
    for i in range(0, VOCAB, 97):
        text = index.token_bytes[i]
        if not index.partial_utf8[i]:
            assert index.char_lengths[i] == len(text.decode())


def test_disk_cache(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("LMQ_CACHE_DIR", str(tmp_path))
    built = TokenIndex.from_vocabulary(HfVocabulary(tokenizer, VOCAB, [2]))
    path = tmp_path / "token_index" / f"{built.fingerprint}.npz"
    assert path.exists() and not list(path.parent.glob("*.tmp"))

    def no_rebuild(*args):
        raise AssertionError("rebuilt although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(TokenIndex, "_derive", no_rebuild)
        loaded = TokenIndex.from_vocabulary(HfVocabulary(tokenizer, VOCAB, [1, 2]))
    assert loaded.token_bytes == built.token_bytes and loaded.eos_ids == {1, 2}
    for name in built.derived:
        assert np.array_equal(getattr(loaded, name), getattr(built, name)), name
    assert all(np.array_equal(a, b) for a, b in zip(loaded.columns, built.columns))

    data = path.read_bytes()
    for damaged in (data[: len(data) // 2], data[:-2000] + bytes(2000), b"not a zip file"):
        path.write_bytes(damaged)
        rebuilt = TokenIndex.from_vocabulary(HfVocabulary(tokenizer, VOCAB, [2]))
        assert rebuilt.token_bytes == built.token_bytes
        assert path.read_bytes() != damaged  # rewritten

    assert TokenIndex.from_vocabulary(HfVocabulary(tokenizer, VOCAB + 1, [2])).fingerprint != built.fingerprint
    monkeypatch.setenv("LMQ_NO_CACHE", "1")
    path.unlink()
    TokenIndex.from_vocabulary(HfVocabulary(tokenizer, VOCAB, [2]))
    assert not path.exists()


def test_round_trip_failure_is_an_error(tokenizer, monkeypatch):
    monkeypatch.setenv("LMQ_NO_CACHE", "1")
    monkeypatch.setattr(hv, "is_byte_level", lambda *args: False)  # wrong decoding mode
    with pytest.raises(LmqModelError, match="round-trip"):
        TokenIndex.from_vocabulary(HfVocabulary(tokenizer, VOCAB, [2]))


def test_sentencepiece_pieces():
    pieces = ["\u2581Hello", "<0x0A>", "<0xE4>", "abc", None, "\u2581\u2581"]
    assert hv.token_strings_to_bytes(pieces, byte_level=False) == [
        b" Hello", b"\n", b"\xe4", b"abc", None, b"  "]
    assert hv.token_strings_to_bytes(["Ġhi", "Ċ", "Ã©", "中"], byte_level=True) == [
        b" hi", b"\n", "é".encode(), None]  # '中' is not in the byte map
    assert len(set(hv.bytes_to_unicode().values())) == 256


def test_from_token_bytes():
    index = TokenIndex.from_token_bytes([b"a", None, b"", b"\xe4\xb8", b"bc"], 8, [1],
                                        special=[4])
    assert index.special.tolist() == [False, True, True, False, True, True, True, True]
    assert index.order.tolist() == [3, 0] and index.partial_utf8[3]
    with pytest.raises(ValueError):
        index.encode("a")
