"""Text towers from Hugging Face `transformers` encoders (BERT, MiniLM, RoBERTa, ...), with their own tokenizers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..extras import require

POOLINGS = ("mean", "cls")


def _transformers():
    return require("transformers", "towers", "a Hugging Face text tower")


class HFTokenize:
    """Texts -> (N, context_length) ids with a Hugging Face fast tokenizer, padded with `pad_id`.

    Holds the tokenizer as its JSON text (what `tokenizer.json` holds), so it travels inside
    checkpoints and pickles to data-loading workers; the tokenizer itself is built on first use.
    """

    def __init__(self, tokenizer_json: str, context_length: int, pad_id: int):
        self.tokenizer_json, self.context_length, self.pad_id = tokenizer_json, context_length, pad_id
        self._tokenizer = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tokenizer": None}

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(self.tokenizer_json)
            tokenizer.enable_truncation(max_length=self.context_length)
            tokenizer.no_padding()  # padded below, to the full context length
            self._tokenizer = tokenizer
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        for row, encoding in enumerate(self._tokenizer.encode_batch(texts)):
            ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids, dtype=torch.long)
        return ids


def read_hf_text_encoder(folder: str | Path) -> tuple[dict[str, Any], str, int, dict[str, torch.Tensor]]:
    """(config dict, tokenizer JSON, pad id, weights) of a local `transformers` encoder folder."""
    transformers = _transformers()
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder; a text tower is a local Hugging Face model folder")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{folder}: cliplab needs a fast tokenizer (tokenizer.json)")
    if tokenizer.pad_token_id is None:
        raise ConfigError(f"{folder}: the tokenizer has no padding token")
    encoder = transformers.AutoModel.from_pretrained(folder)
    return encoder.config.to_dict(), tokenizer.backend_tokenizer.to_str(), tokenizer.pad_token_id, encoder.state_dict()


class TextTower(nn.Module):
    """A `transformers` encoder pooled to one vector per text: ids (N, L) -> (N, width)."""

    def __init__(self, hf_config: dict[str, Any], pooling: str = "mean", pad_id: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
        transformers = _transformers()
        config = transformers.AutoConfig.for_model(**hf_config)
        self.encoder = transformers.AutoModel.from_config(config)
        self.pooling, self.pad_id = pooling, pad_id
        self.width = config.hidden_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id  # N L
        # Padding is masked out of attention, so columns past the longest text change nothing: drop them.
        longest = int(mask.sum(dim=1).max()) if ids.shape[0] else 0
        ids, mask = ids[:, : max(longest, 1)], mask[:, : max(longest, 1)]
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # N L D
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # mean over real tokens, as sentence-transformers does
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

    def set_grad_checkpointing(self, enabled: bool) -> None:
        # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*
        name = "enable" if enabled else "disable"
        switch = getattr(self.encoder, f"activation_checkpointing_{name}", None)
        (switch or getattr(self.encoder, f"gradient_checkpointing_{name}"))()

    def groups(self, prefix: str) -> list[list[str]]:
        """Parameter names of the embeddings, then of each layer, in forward order. What follows the
        last layer (a final norm, BERT's unused pooler) goes with it: "the last N layers" means layers."""
        lists = [(name, m) for name, m in self.encoder.named_modules() if isinstance(m, nn.ModuleList)]
        if not lists:
            raise ConfigError(f"{type(self.encoder).__name__}: no list of layers found")
        layers_name, layers = max(lists, key=lambda item: len(item[1]))  # the encoder's stack of layers
        layer_prefixes = [f"{layers_name}.{i}" for i in range(len(layers))]
        before, after, seen_layer = [], [], False
        for name, _ in self.encoder.named_parameters():
            in_layers = name.startswith(layers_name + ".")
            seen_layer |= in_layers
            if not in_layers:
                (after if seen_layer else before).append(f"{prefix}encoder.{name}")
        blocks = [[f"{prefix}encoder.{p}"] for p in layer_prefixes]
        blocks[-1] += after
        return [before, *blocks]
