"""A byte-level BPE tokeniser trained from scratch (GPT-2 style).

Byte-pair encoding (Sennrich et al., 2016; byte-level as in GPT-2, Radford et al., 2019) starts from the
256 possible bytes, so **every** byte string can be encoded: there is no unknown token.  Training then
repeats one step until the vocabulary is full::

    count every adjacent pair (a, b) of tokens in the corpus
    (a, b) <- the most frequent pair          (ties: the smallest (a, b), so training is deterministic)
    add a new token  t = a + b  and replace every occurrence of (a, b) by t

The ``k``-th merge creates token ``256 + k``.  Encoding applies the learnt merges to new text in the order
they were learnt (lowest rank first); decoding concatenates the bytes of the tokens.

Like GPT-2, the text is first split into chunks (words with their leading space, runs of digits, runs of
punctuation, whitespace) and merges never cross a chunk boundary, so " the" and "the." do not compete for
merges.  GPT-2's pattern needs the third-party ``regex`` module (``\\p{L}``, ``\\p{N}``); ``SPLIT_PATTERN``
below says the same with the standard ``re`` module (letters = ``[^\\W\\d_]``, numbers = ``\\d``).  The two
split identically except for rare characters Unicode counts as letters/numbers one way and not the other
(e.g. combining marks, "½").

Training is incremental: after a merge only the chunks that contained the pair are updated, and the pair
counts live in a heap with lazy deletion, so a 1024-token vocabulary on megabytes of text takes seconds.
"""
from __future__ import annotations

import heapq
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from .checkpoint import atomic_write

__all__ = ["BPETokenizer", "SPLIT_PATTERN", "GPT2_SPLIT_PATTERN", "ENDOFTEXT", "split_text",
           "bytes_to_unicode"]

# GPT-2's pre-tokenisation pattern (needs the `regex` module) and its standard-library equivalent.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"
_FORMAT_VERSION = 1

_split_regex = re.compile(SPLIT_PATTERN)


def split_text(text: str) -> list[str]:
    """Pre-tokenise ``text`` into chunks; the chunks concatenate back to ``text`` exactly."""
    return _split_regex.findall(text)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 bytes to printable characters (used to show tokens and for interop).

    Printable Latin-1 bytes map to themselves; the others (control bytes, space, ...) to code points 256+.
    """
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _check_special_tokens(special_tokens: Iterable[str]) -> list[str]:
    """Special tokens must be distinct non-empty strings; returns them as a list."""
    tokens = list(special_tokens)
    for token in tokens:
        if not isinstance(token, str) or not token:
            raise TypeError(f"special tokens must be non-empty strings, got {token!r}")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"special tokens must be distinct, got {tokens}")
    return tokens


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` in ``ids`` (left to right) by ``new_id``."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """Byte-level BPE: ``train(text, vocab_size)``, ``encode``, ``decode``, special tokens, JSON save/load.

    Token ids: 0..255 are the bytes, 256..256+len(merges)-1 the merges in the order they were learnt, then
    the special tokens (``<|endoftext|>`` by default), as in GPT-2 (50,257 = 256 + 50,000 + 1).
    """

    def __init__(self, merges: Iterable[tuple[int, int]] = (), special_tokens: Iterable[str] = (ENDOFTEXT,)):
        self.merges: dict[tuple[int, int], int] = {}   # (a, b) -> new id; dict order = rank
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}  # id -> the bytes it stands for
        for rank, pair in enumerate(merges):
            a, b = (int(x) for x in pair)
            new_id = 256 + rank
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merge {rank} = ({a}, {b}) refers to an id that does not exist yet "
                                 f"(expected ids < {new_id})")
            self.merges[(a, b)] = new_id
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        self.special_tokens: dict[str, int] = {}
        self._set_special_tokens(special_tokens)
        self._cache: dict[bytes, list[int]] = {}

    # -- vocabulary ----------------------------------------------------------------------------------

    def _set_special_tokens(self, special_tokens: Iterable[str]) -> None:
        tokens = _check_special_tokens(special_tokens)
        first = 256 + len(self.merges)
        self.special_tokens = {token: first + i for i, token in enumerate(tokens)}
        self._special_ids = {i: t for t, i in self.special_tokens.items()}
        self._special_regex = (re.compile("(" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
                                          + ")") if tokens else None)

    @property
    def vocab_size(self) -> int:
        """Bytes + merges + special tokens."""
        return 256 + len(self.merges) + len(self.special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for (a special token: its text in UTF-8)."""
        self._check_ids([token_id])
        if token_id in self._special_ids:
            return self._special_ids[token_id].encode("utf-8")
        return self.vocab[token_id]

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")

    # -- training --------------------------------------------------------------------------------------

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = (ENDOFTEXT,),
              verbose: bool = False) -> "BPETokenizer":
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        The text is cut at the special tokens first (e.g. ``<|endoftext|>`` between documents): they become
        single ids of their own, and no merge ever spans one.  Stops early (with fewer merges) if no pair
        occurs twice any more.  Ties between equally frequent pairs go to the smallest pair of ids, so the
        same text always gives the same tokeniser.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        special_tokens = _check_special_tokens(special_tokens)
        minimum = 256 + len(special_tokens)
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < minimum:
            raise ValueError(f"vocab_size must be an int >= {minimum} (256 bytes + {len(special_tokens)} special "
                             f"tokens), got {vocab_size!r}")
        num_merges = vocab_size - minimum
        # Special tokens are never merged with text: cut the corpus at them and pre-tokenise each piece on
        # its own, so that no chunk (and hence no merge) spans a document boundary.  Joining the pieces
        # back would glue the end of one document to the start of the next.
        pieces = [text]
        if special_tokens:
            longest_first = sorted(special_tokens, key=len, reverse=True)
            pieces = re.split("|".join(re.escape(token) for token in longest_first), text)

        # Each distinct chunk once, with its frequency: merges are applied per distinct chunk.
        chunk_counts = Counter(chunk for piece in pieces for chunk in split_text(piece))
        words: list[list[int]] = [list(chunk.encode("utf-8", errors="surrogateescape")) for chunk in chunk_counts]
        freqs: list[int] = list(chunk_counts.values())

        pair_counts: Counter = Counter()                 # (a, b) -> occurrences in the corpus
        where: dict[tuple[int, int], set[int]] = {}      # (a, b) -> indices of the words that contain it
        for index, (word, freq) in enumerate(zip(words, freqs)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += freq
                where.setdefault(pair, set()).add(index)
        # Max-heap of (-count, pair); entries whose count is stale are skipped when popped.
        heap = [(-count, pair) for pair, count in pair_counts.items()]
        heapq.heapify(heap)

        merges: list[tuple[int, int]] = []
        while len(merges) < num_merges and heap:
            negative_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -negative_count:
                continue                                 # stale entry
            if -negative_count < 2:
                break                                    # nothing repeats: merging more compresses nothing
            new_id = 256 + len(merges)
            merges.append(pair)
            changed: set[tuple[int, int]] = set()
            for index in where.pop(pair, ()):
                word, freq = words[index], freqs[index]
                for old in zip(word, word[1:]):          # remove this word's old pairs ...
                    pair_counts[old] -= freq
                    changed.add(old)
                word = words[index] = _merge(word, pair, new_id)
                for new in zip(word, word[1:]):          # ... and add its new ones
                    pair_counts[new] += freq
                    where.setdefault(new, set()).add(index)
                    changed.add(new)
            pair_counts.pop(pair, None)
            for changed_pair in changed:
                count = pair_counts.get(changed_pair, 0)
                if count > 0:
                    heapq.heappush(heap, (-count, changed_pair))
                else:
                    pair_counts.pop(changed_pair, None)
            if verbose and len(merges) % 100 == 0:
                print(f"merge {len(merges)}/{num_merges}: {pair} -> {new_id} ({-negative_count} occurrences)")
        return cls(merges, special_tokens)

    # -- encoding ----------------------------------------------------------------------------------------

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """Apply the merges to one chunk, lowest rank (earliest learnt) first."""
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = list(chunk)
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break
            ids = _merge(ids, pair, self.merges[pair])
        if len(self._cache) < 200_000:
            self._cache[chunk] = ids
        return ids

    def _encode_ordinary(self, text: str) -> list[int]:
        ids: list[int] = []
        for chunk in split_text(text):
            ids.extend(self._encode_chunk(chunk.encode("utf-8", errors="surrogateescape")))
        return ids

    def encode(self, text: str, allowed_special: bool = True) -> list[int]:
        """Token ids of ``text``.

        ``allowed_special=True``: occurrences of a special token's text (e.g. ``<|endoftext|>``) become that
        token; ``False``: they are encoded as ordinary text.  Lone surrogates from
        ``bytes.decode("utf-8", errors="surrogateescape")`` encode to the raw bytes they stand for.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode wants a str (use encode_bytes for bytes), got {type(text).__name__}")
        if not allowed_special or self._special_regex is None:
            return self._encode_ordinary(text)
        ids: list[int] = []
        for i, part in enumerate(self._special_regex.split(text)):
            if i % 2:                                    # odd parts are the separators = special tokens
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self._encode_ordinary(part))
        return ids

    def encode_bytes(self, data: bytes) -> list[int]:
        """Token ids of arbitrary bytes (not necessarily UTF-8); special tokens are not recognised."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"encode_bytes wants bytes, got {type(data).__name__}")
        return self._encode_ordinary(bytes(data).decode("utf-8", errors="surrogateescape"))

    # -- decoding ----------------------------------------------------------------------------------------

    def _check_ids(self, ids: Sequence[int]) -> None:
        size = self.vocab_size
        for token_id in ids:
            if isinstance(token_id, bool) or not isinstance(token_id, int):
                raise TypeError(f"token ids must be ints, got {type(token_id).__name__} ({token_id!r})")
            if not 0 <= token_id < size:
                raise ValueError(f"token id {token_id} is out of range: expected 0 <= id < vocab_size={size}")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of the tokens, concatenated (inverse of ``encode_bytes``)."""
        ids = [int(i) if hasattr(i, "__index__") and not isinstance(i, bool) else i for i in ids]
        self._check_ids(ids)
        return b"".join(self._special_ids[i].encode("utf-8") if i in self._special_ids else self.vocab[i]
                        for i in ids)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of the tokens.  A token sequence may end inside a multi-byte character: ``errors="replace"``
        shows it as U+FFFD (like GPT-2); ``"surrogateescape"`` makes ``decode(encode(s)) == s`` for every
        string obtained from bytes with ``surrogateescape``."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- persistence ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": "mmtutorial-bpe", "version": _FORMAT_VERSION, "pattern": SPLIT_PATTERN,
                "merges": [list(pair) for pair in self.merges], "special_tokens": list(self.special_tokens)}

    @classmethod
    def from_dict(cls, state: dict) -> "BPETokenizer":
        """The tokeniser of ``to_dict()``; ``ValueError`` naming what is missing or wrong."""
        if not isinstance(state, dict) or state.get("format") != "mmtutorial-bpe":
            got = f"format={state.get('format')!r}" if isinstance(state, dict) else type(state).__name__
            raise ValueError("not an mmtutorial BPE tokeniser: expected a dict with format='mmtutorial-bpe', "
                             f"got {got}")
        missing = [key for key in ("version", "pattern", "merges", "special_tokens") if key not in state]
        if missing:
            raise ValueError(f"the tokeniser has no {', '.join(repr(key) for key in missing)}: expected the keys "
                             "format, version, pattern, merges and special_tokens that save() writes")
        if state["version"] != _FORMAT_VERSION:
            raise ValueError(f"unsupported tokeniser version: expected {_FORMAT_VERSION}, got {state['version']!r}")
        if state["pattern"] != SPLIT_PATTERN:
            raise ValueError("the tokeniser was saved with a different pre-tokenisation pattern")
        merges = state["merges"]
        if not isinstance(merges, list) or not all(isinstance(pair, list) and len(pair) == 2
                                                   and all(type(i) is int for i in pair) for pair in merges):
            raise ValueError("'merges' must be a list of [id, id] pairs of ints")
        return cls([tuple(pair) for pair in merges], state["special_tokens"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokeniser as JSON, atomically (temp file in the same folder, then rename)."""
        return atomic_write(path, lambda file: json.dump(self.to_dict(), file), binary=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """The tokeniser that ``save(path)`` wrote.

        A file that is not JSON (e.g. truncated) or not a saved tokeniser (e.g. no ``merges``) raises a
        ``ValueError`` that names the file and what is wrong; a missing file ``FileNotFoundError``.
        """
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as handle:
                state = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot load a BPE tokeniser from {path}: it is not a JSON file ({error}); "
                             "expected what BPETokenizer.save() writes. Delete it and train again.") from error
        try:
            return cls.from_dict(state)
        except (ValueError, TypeError) as error:
            raise type(error)(f"cannot load a BPE tokeniser from {path}: {error}") from error

    # -- interop -------------------------------------------------------------------------------------------

    def to_huggingface(self):
        """The same tokeniser as a Hugging Face ``tokenizers.Tokenizer`` (GPT-2's byte-level BPE with
        our merges), used to check ``encode`` against an independent implementation."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        byte_chars = bytes_to_unicode()
        as_text = {i: "".join(byte_chars[b] for b in raw) for i, raw in self.vocab.items()}
        vocab = {text: i for i, text in as_text.items()}
        merges = [(as_text[a], as_text[b]) for a, b in self.merges]
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        return tokenizer
