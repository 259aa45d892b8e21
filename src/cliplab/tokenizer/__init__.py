"""CLIP's byte-level BPE tokenizer (OpenAI's vocabulary and rules)."""

from .bpe import BPETokenize, Tokenizer, clean_text, default_tokenizer, tokenize

__all__ = ["BPETokenize", "Tokenizer", "clean_text", "default_tokenizer", "tokenize"]
