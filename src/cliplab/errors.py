"""Errors cliplab raises on purpose, so callers can tell a bad file from a bug."""


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint: unreadable, truncated, or not this model's weights."""


class ModelMismatch(ValueError):
    """Embeddings and queries from two different models: their vectors cannot be compared."""
