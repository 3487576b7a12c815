"""Grammar guides: token masks of context-free constraints, computed by llguidance.

``GRAMMAR(X, grammar)`` (and a ``JSON`` schema past the automaton budget) reaches the
decoding loop as a :class:`GrammarGuide`, which speaks the :class:`~lmq.runtime.automata.
guide.Guide` protocol. llguidance (the Rust engine behind Guidance and the guidance
backends of vLLM and SGLang) reads the grammar in Lark syntax (:func:`lmq.grammars.
lark_text`) and computes masks over a tokenizer built from lmq's own
:class:`~lmq.runtime.automata.tokens.TokenIndex`, so both agree on every token's bytes,
partial UTF-8 tokens included (:func:`tokenizer`).

A parser state is not a small value, so a guide's states are the nodes of a tree of token
sequences: state 0 is the empty prefix, ``advance`` makes (or finds) the child for a token,
and a node's llguidance matcher, mask and chart are computed on first use and kept in
bounded memos (a matcher that was dropped is rebuilt from an ancestor by replaying tokens,
about 3 µs each). Rows in the same state share its mask, as with regular guides.

Token budgets (``len(TOKENS(X)) < n``, ``max_tokens``) cannot be folded into a
context-free mask, so a grammar guide checks each choice instead (``checks_choices``): a
token is admitted when the text after it has a completion that fits in the tokens left --
a shortest completion found by :class:`~lmq.runtime.automata.grammar_completion.
EarleyCompletions`, spelled by the tokenizer and confirmed by llguidance, so the budget
holds whatever the model does next. The decoder asks again when a token is refused; after a few
refusals in one step the hole may only follow its confirmed completion
(:meth:`GrammarGuide.closing`), which always fits (:meth:`lmq.runtime.decoding.holes.
HoleRun.admits`). Without an Earley recognizer (JSON) the
completion is searched with llguidance's masks alone (:meth:`GrammarGuide._search`).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmq import grammars
from lmq import regular as rg
from lmq.errors import LmqLimitError, LmqModelError
from lmq.runtime.automata.grammar_completion import EarleyCompletions
from lmq.runtime.automata.tokens import TokenIndex

_SEARCH_BYTES = 512  # longest completion the mask-guided search looks for
# bytes the search tries first: ones that close structures, then short values
_CLOSERS = b'"}])0,:'


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError:
        raise LmqModelError("grammar constraints need llguidance: pip install "
                            "'lmq[runtime]'") from None
    return llguidance


class _TokenizerWrapper:
    """What ``llguidance.LLTokenizer`` reads from a tokenizer: every token's exact bytes
    from the index (special ids, which have none there, spelled ``<|id|>`` and marked
    special), EOS, and text encoding for the tokens llguidance forces itself."""

    is_tokenizer_wrapper = True

    def __init__(self, index: TokenIndex) -> None:
        self.eos_token_id = min(index.eos_ids) if index.eos_ids else None
        self.bos_token_id = None
        self.special_token_ids = np.flatnonzero(index.special).tolist()
        self.tokens = [b"<|%d|>" % i if index.special[i] else data
                       for i, data in enumerate(index.token_bytes)]
        self._index = index

    def __call__(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return self._index.encode(text)


_TOKENIZERS: OrderedDict[str, Any] = OrderedDict()
_TOKENIZERS_LOCK = threading.Lock()


def tokenizer(index: TokenIndex) -> Any:
    """The llguidance tokenizer of ``index`` (about 0.15 s for 49k tokens; memoised by the
    index's fingerprint)."""
    with _TOKENIZERS_LOCK:
        found = _TOKENIZERS.get(index.fingerprint)
        if found is None:
            llg = _llguidance()
            found = llg.LLTokenizer(_TokenizerWrapper(index), n_vocab=index.vocab_size)
            _TOKENIZERS[index.fingerprint] = found
            if len(_TOKENIZERS) > 8:
                _TOKENIZERS.popitem(last=False)
        return found


class _Memo(OrderedDict):
    """A small LRU dict bounded by entry count."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)

    def fetch(self, key):
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value


@dataclass
class _Node:
    parent: int
    token: int
    dead: bool = False  # the token was not valid there (a byte walk that left the grammar)
    witness: tuple[bytes, list[int]] | None = None  # a confirmed completion, its tokens
    searched: bool = False  # witness looked for (None then means: none found)


class GrammarGuide:
    """A :class:`~lmq.runtime.automata.guide.Guide` over an llguidance grammar (see the
    module docstring; thread-safe). ``completions`` finds shortest completions (None: the
    mask-guided search)."""

    checks_choices = True  # token budgets are checked per choice (fits/closing)
    stops = False
    max_completion = None
    initial_state = 0

    def __init__(self, grammar: str, index: TokenIndex,
                 completions: EarleyCompletions | None = None,
                 memo_bytes: int = 32 << 20) -> None:
        llg = _llguidance()
        self.index, self.completions = index, completions
        self._tokenizer = tokenizer(index)
        root = llg.LLMatcher(self._tokenizer, grammar, log_level=0)
        if root.is_error():
            raise LmqLimitError(f"the grammar engine rejected the constraint: "
                                f"{root.get_error().strip().splitlines()[0]}")
        self._nodes = [_Node(-1, -1)]
        self._children: dict[tuple[int, int], int] = {}
        self._matchers = _Memo(4096)
        self._matchers.put(0, root)
        self._masks = _Memo(max(16, memo_bytes // max(index.vocab_size, 1)))
        self._charts = _Memo(4096)
        if completions is not None:
            self._charts.put(0, completions.start())
        self._content = np.packbits(~index.special, bitorder="little")  # as the bitmask
        single = {data: i for i, data in enumerate(index.token_bytes)
                  if len(data) == 1 and not index.special[i]}
        self._byte_token = [single.get(bytes([b]), -1) for b in range(256)]
        self._lock = threading.RLock()
        self.stats = {"masks": 0, "mask_seconds": 0.0, "witnesses": 0, "witness_seconds": 0.0}

    @classmethod
    def from_tree(cls, tree: rg.Regular, index: TokenIndex) -> GrammarGuide:
        """The guide of a grammar hole's generation language (:func:`lmq.grammars.
        grammar_parts`)."""
        parts = grammars.grammar_parts(tree)
        if parts is None:
            raise TypeError(f"not a grammar constraint: {tree!r}")
        prefix, core, stops = parts
        completions = None
        if isinstance(core, rg.Grammar):
            completions = EarleyCompletions(grammars.load(core.text), prefix.encode(),
                                            tuple(s.encode() for s in stops))
        llg = _llguidance()
        return cls(llg.grammar_from("lark", grammars.lark_text(tree)), index, completions)

    # -- the protocol -------------------------------------------------------------------

    def mask(self, state: int) -> np.ndarray:
        entry = self._entry(state)
        if entry[1] is None:
            row = np.unpackbits(entry[0], count=self.index.vocab_size,
                                bitorder="little").view(bool)
            row.flags.writeable = False
            entry[1] = row
        return entry[1]

    def allowed(self, state: int) -> np.ndarray:
        entry = self._entry(state)
        if entry[2] is None:
            ids = np.flatnonzero(self.mask(state)).astype(np.int32)
            ids.flags.writeable = False
            entry[2] = ids
        return entry[2]

    def _entry(self, state: int) -> list:
        """``[packed mask, bool mask or None, allowed ids or None]`` of a state, the packed
        mask (llguidance's bitmask less the special ids) computed on first use."""
        with self._lock:
            entry = self._masks.fetch(state)
            if entry is None:
                start = time.perf_counter()
                matcher = self._matcher(state)
                bits = np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
                self._check(matcher)
                # EOS and other special ids: never content (the bitmask may be padded)
                entry = [bits[:len(self._content)] & self._content, None, None]
                self._masks.put(state, entry)
                self.stats["masks"] += 1
                self.stats["mask_seconds"] += time.perf_counter() - start
            return entry

    def advance(self, state: int, token_id: int) -> int:
        if not 0 <= token_id < self.index.vocab_size or not self.mask(state)[token_id]:
            raise ValueError(f"token {token_id} is not allowed in state {state!r}")
        return self._child(state, token_id)

    def is_accepting(self, state: int) -> bool:
        with self._lock:
            return bool(self._matcher(state).is_accepting())

    accepts_value = is_accepting

    def resume(self, state: int) -> int:
        return state

    def walk_bytes(self, state: int, data: bytes) -> int | None:
        """The state after ``data``, spelled by tokens (:meth:`_spell`; a grammar reads
        bytes, so any spelling reaches the same language state), None if it dies."""
        tokens = self._spell(data)
        if tokens is None:
            return None
        for token in tokens:
            state = self._child(state, token)
            with self._lock:
                self._matcher(state)
                if self._nodes[state].dead:
                    return None
        return state

    def _spell(self, data: bytes, fewest: bool = False) -> list[int] | None:
        """Content tokens whose bytes are exactly ``data``, None if there are none: one
        token per byte where the vocabulary has them all (no tokenizer call), else -- or
        with ``fewest`` -- the tokenizer's own encoding (greedy for a partial character at
        the end)."""
        if not data:
            return []
        if not fewest:
            tokens = [self._byte_token[b] for b in data]
            if min(tokens) >= 0:
                return tokens
        tokens = self._tokenizer.tokenize_bytes(data)
        if self._tokenizer.decode_bytes(tokens) != data or \
                self.index.special[np.asarray(tokens, dtype=np.int64)].any():
            return None
        return tokens

    def live_bytes(self, state: int) -> np.ndarray:
        """The first bytes of the allowed tokens: exactly the bytes that may follow."""
        ids = self.allowed(state)
        return np.unique(self.index.flat[self.index.offsets[ids]]).astype(np.int32)

    def forced_bytes(self, state: int, limit: int = 64) -> tuple[bytes, bool]:
        """The bytes every continuation starts with (none where the text may end), and
        whether nothing can follow them."""
        with self._lock:
            data = bytes(self._matcher(state).compute_ff_bytes())[:limit]
        if not data:
            return b"", False
        after = self.walk_bytes(state, data)
        return data, after is not None and not len(self.allowed(after))

    def next_distances(self, state: int) -> np.ndarray:
        raise TypeError("a grammar guide checks each choice (fits) instead of distances")

    def stop_outlook(self, state: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise TypeError("a grammar guide has no stop outlook")

    # -- budgets ------------------------------------------------------------------------

    def completion(self, state: int) -> bytes | None:
        """A confirmed completion of the text at ``state`` (llguidance accepts the text
        followed by it), as short as the search finds; None if none was found."""
        found = self._witness(state)
        return None if found is None else found[0]

    def within(self, state: int, left: int) -> bool:
        """Whether the text at ``state`` has a confirmed completion of at most ``left``
        tokens (spelled a byte a token while that fits, else in as few as the tokenizer
        makes)."""
        found = self._witness(state)
        if found is None:
            return False
        if len(found[1]) > left and len(found[0]) > 1:  # tight: try the fewest tokens
            fewest = self._spell(found[0], fewest=True)
            if fewest is not None and len(fewest) < len(found[1]):
                # the same bytes: confirmed already (a grammar reads bytes, not tokens)
                found = self._nodes[state].witness = (found[0], fewest)
        return len(found[1]) <= left

    def fits(self, state: int, token: int, left: int) -> bool:
        """Whether the text after ``token`` has a confirmed completion of at most ``left``
        tokens."""
        return self.within(self.advance(state, token), left)

    def closing(self, state: int, left: int) -> np.ndarray:
        """The allowed tokens that spell a prefix of the state's completion and leave the
        rest within ``left`` tokens (ascending ids): following them always fits."""
        found = self._witness(state)
        if found is None:
            return np.zeros(0, np.int32)
        completion, spelled = found
        allowed = self.allowed(state)
        lengths, starts = self.index.lengths[allowed], self.index.offsets[allowed]
        keep = lengths <= len(completion)
        kept = []
        for token, length, at in zip(allowed[keep].tolist(), lengths[keep].tolist(),
                                     starts[keep].tolist()):
            if self.index.flat[at:at + length].tobytes() != completion[:length]:
                continue
            # the completion's own spelling after its first token, else a fresh one
            rest = spelled[1:] if token == spelled[0] else self._spell(completion[length:])
            if rest is not None and len(rest) <= left:
                kept.append(token)
                with self._lock:  # the rest completes the text after the token too
                    child = self._nodes[self._child(state, token)]
                    if child.witness is None:
                        child.witness, child.searched = (completion[length:], rest), True
        return np.array(kept, dtype=np.int32)

    def _witness(self, state: int) -> tuple[bytes, list[int]] | None:
        """``(completion, tokens spelling it)``, confirmed, memoised on the node."""
        with self._lock:
            node = self._nodes[state]
            if node.searched:
                return node.witness
            start = time.perf_counter()
            if self.is_accepting(state):
                node.witness = (b"", [])
            else:
                found = self._proposal(state)
                tokens = None if found is None else self._spell(found)
                if found is not None and tokens is not None and self._confirms(state, tokens):
                    node.witness = (found, tokens)
            node.searched = True
            self.stats["witnesses"] += 1
            self.stats["witness_seconds"] += time.perf_counter() - start
            return node.witness

    def _proposal(self, state: int) -> bytes | None:
        if self.completions is None:
            return self._search(state)
        chart = self._chart(state)
        return None if chart is None else self.completions.witness(chart)

    def _confirms(self, state: int, tokens: list[int]) -> bool:
        matcher = self._matcher(state).deep_copy()
        return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()

    def _search(self, state: int) -> bytes | None:
        """A completion by llguidance's masks alone: forced bytes, else the first live byte
        among :data:`_CLOSERS` (then any), depth first, at most :data:`_SEARCH_BYTES`."""
        out = bytearray()
        while len(out) < _SEARCH_BYTES:
            if self.is_accepting(state):
                return bytes(out)
            forced, _ = self.forced_bytes(state)
            if forced:
                step = forced
            else:
                live = self.live_bytes(state).tolist()
                if not live:
                    return None
                step = bytes([next((b for b in _CLOSERS if b in live), live[0])])
            walked = self.walk_bytes(state, step)
            if walked is None:
                return None
            state = walked
            out += step
        return None

    # -- nodes --------------------------------------------------------------------------

    def _child(self, state: int, token: int) -> int:
        with self._lock:
            key = (state, token)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = len(self._nodes)
                self._nodes.append(_Node(state, token))
            return child

    def _matcher(self, state: int) -> Any:
        """The node's matcher, replayed from the nearest ancestor that has one."""
        matcher = self._matchers.fetch(state)
        if matcher is not None:
            return matcher
        path = []
        node = state
        while (matcher := self._matchers.fetch(node)) is None:
            path.append(node)
            node = self._nodes[node].parent
        matcher = matcher.deep_copy()
        for step in reversed(path):
            if not self._nodes[step].dead and not matcher.consume_token(self._nodes[step].token):
                self._nodes[step].dead = True
            if self._nodes[step].dead:  # a dead node's descendants are never used
                break
            self._matchers.put(step, matcher.deep_copy() if step != state else matcher)
        return matcher

    def _chart(self, state: int) -> Any:
        assert self.completions is not None
        chart = self._charts.fetch(state)
        if chart is not None:
            return chart
        path, node = [], state
        while (chart := self._charts.fetch(node)) is None:
            path.append(self._nodes[node].token)
            node = self._nodes[node].parent
        data = self.index.decode_bytes(reversed(path))
        chart = self.completions.extend(chart, data)
        if chart is not None:
            self._charts.put(state, chart)
        return chart

    def _check(self, matcher: Any) -> None:
        if matcher.is_error():
            raise LmqLimitError(f"the grammar engine stopped: "
                                f"{matcher.get_error().strip().splitlines()[0]}")
