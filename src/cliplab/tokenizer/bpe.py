"""OpenAI's byte-level BPE tokenizer for CLIP, id for id.

Text is cleaned (ftfy, HTML unescape twice, whitespace collapsed, lower-cased), split with
OpenAI's pattern, each piece mapped to bytes-as-unicode and merged by rank with the 48,894
merges of `bpe_simple_vocab_16e6.txt.gz`. Ids: 256 bytes, 256 bytes + "</w>", the merges,
then `<|startoftext|>` = 49406 and `<|endoftext|>` = 49407; padding is 0.

Speed comes from two exact shortcuts: a cache from each split-out word to its ids, and skipping
ftfy and HTML unescaping on printable ASCII with no "&", where both are the identity.
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import ftfy
import numpy as np
import regex
import torch

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
SOT_TEXT, EOT_TEXT = "<|startoftext|>", "<|endoftext|>"
NUM_MERGES = 49152 - 256 - 2
# The word cache is cleared when the words and ids in it would take more than about this much memory
# (as counted here: ~250,000 natural words, ~40 MB in fact); adversarial text cannot grow it past that.
WORD_CACHE_BYTES = 64 * 2**20
# BPE's cost grows with the square of a word's length. A run of letters longer than this (in no natural
# text) is encoded in pieces this long, so a megabyte-long "word" takes milliseconds, not hours.
MAX_WORD_CHARS = 1_000


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters (no whitespace/control)."""
    visible = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = visible[:]
    extra = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(visible, map(chr, codes)))


def clean_text(text: str) -> str:
    """ftfy + double HTML unescape + whitespace collapse + lower case, exactly as OpenAI/OpenCLIP."""
    if not (text.isascii() and text.isprintable() and "&" not in text):
        # Only non-ASCII, control characters or "&" can be changed by these two steps.
        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


class Tokenizer:
    """`Tokenizer()(["a photo of a cat."])` -> LongTensor (batch, 77) of ids, zero-padded."""

    def __init__(self, bpe_path: str | None = None):
        if bpe_path is None:
            packed = resources.files(__package__).joinpath(VOCAB_FILE).read_bytes()
        else:
            packed = Path(bpe_path).read_bytes()
        lines = gzip.decompress(packed).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
        byte_chars = list(bytes_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [SOT_TEXT, EOT_TEXT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.bpe_ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.sot_token_id = self.encoder[SOT_TEXT]
        self.eot_token_id = self.encoder[EOT_TEXT]
        self.vocab_size = len(vocab)
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._clear_word_cache()

    def _clear_word_cache(self) -> None:
        self._word_ids: dict[str, list[int]] = {SOT_TEXT: [self.sot_token_id], EOT_TEXT: [self.eot_token_id]}
        self._word_cache_bytes = 0

    def bpe(self, word: str) -> list[str]:
        """Merge the characters of one byte-encoded word by rank, lowest rank first."""
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            best = min(zip(parts, parts[1:]), key=lambda pair: self.bpe_ranks.get(pair, NUM_MERGES))
            if best not in self.bpe_ranks:
                break
            first, second = best
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the pair, left to right
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def _ids_of_word(self, word: str) -> list[int]:
        ids = self._word_ids.get(word)
        if ids is None:
            encoded = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids = [self.encoder[piece] for piece in self.bpe(encoded)]
            cost = 150 + 2 * len(word) + 40 * len(ids)  # the entry, the string, the list and its ints
            if self._word_cache_bytes + cost > WORD_CACHE_BYTES:
                self._clear_word_cache()
            self._word_ids[word] = ids
            self._word_cache_bytes += cost
        return ids

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """Ids of `text` without the start and end tokens; with `limit`, the words after the one that
        reaches `limit` ids are not encoded (their ids would be cut anyway)."""
        ids: list[int] = []
        for match in self.pattern.finditer(clean_text(text)):
            word = match.group()
            for start in range(0, len(word), MAX_WORD_CHARS):
                ids.extend(self._ids_of_word(word[start : start + MAX_WORD_CHARS]))
            if limit is not None and len(ids) >= limit:
                break
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of `ids`; padding, start and end tokens are dropped."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        skip = {0, self.sot_token_id, self.eot_token_id}
        text = "".join(self.decoder[i] for i in ids if i not in skip)
        raw = bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace")
        return raw.replace("</w>", " ").strip()

    def __call__(self, texts: str | Sequence[str], context_length: int = 77, truncate: bool = False) -> torch.Tensor:
        """Token ids of shape (len(texts), context_length): start, text, end, then zeros.

        A text longer than the context raises ValueError; with `truncate=True` it is cut to
        fit and its last id set to the end token, so the model still reads a feature there.
        """
        if isinstance(texts, str):
            texts = [texts]
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
        result = np.zeros((len(texts), context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text, limit=context_length), self.eot_token_id]
            if len(ids) > context_length:
                if not truncate:
                    preview = text if len(text) <= 60 else text[:57] + "..."
                    raise ValueError(
                        f"text {row} ({preview!r}) is more than the context length of {context_length} tokens "
                        "long; pass truncate=True to cut it"
                    )
                ids = ids[:context_length]
                ids[-1] = self.eot_token_id
            result[row, : len(ids)] = ids
        return torch.from_numpy(result)


@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = 77, truncate: bool = False) -> torch.Tensor:
    """OpenAI's `clip.tokenize`: ids of shape (len(texts), context_length) with the shared tokenizer."""
    return default_tokenizer()(texts, context_length=context_length, truncate=truncate)


@dataclass(frozen=True)
class BPETokenize:
    """A CLIP model's text -> ids: `tokenize` at the model's context length, long texts truncated.

    Every cliplab model has a `tokenizer` of this shape (texts -> (N, context_length) ids, padding 0),
    small and picklable so that data-loading workers can carry it.
    """

    context_length: int = 77
    pad_id: int = 0

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        return tokenize(texts, self.context_length, truncate=True)
