"""CLIP's byte-level BPE tokenizer (OpenAI's vocabulary and rules)."""

from .bpe import Tokenizer, clean_text, default_tokenizer, tokenize

__all__ = ["Tokenizer", "clean_text", "default_tokenizer", "tokenize"]
