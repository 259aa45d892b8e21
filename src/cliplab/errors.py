"""Errors cliplab raises on purpose, so callers can tell a user's mistake from a bug.

Every error a user can cause (a bad file, a wrong option, a missing extra) is a `CliplabError`: the
command line prints it as one line and exits with status 2; anything else is a bug and keeps its
traceback. Each kind also derives from the built-in exception it used to be, so existing
`except ValueError` / `except ImportError` code keeps working.
"""

from __future__ import annotations


class CliplabError(Exception):
    """A user-facing error: its message says what is wrong and what to do about it."""


class CheckpointError(CliplabError, ValueError):
    """A file that is not a usable checkpoint: unreadable, truncated, or not this model's weights."""


class SourceError(CliplabError, ValueError):
    """A data source (folder, table, shards, ...) that cannot be opened or lacks what a task needs."""


class ConfigError(CliplabError, ValueError):
    """An option, argument or setting with an invalid value."""


class ModelMismatch(CliplabError, ValueError):
    """Embeddings and queries from two different models: their vectors cannot be compared."""


class QueryError(CliplabError, ValueError):
    """A search or classification request that cannot be answered as asked."""


class DownloadError(CliplabError, OSError):
    """Released weights that could not be fetched: no network, an HTTP error, a file whose SHA-256 is not
    the published one, or offline mode with the file not yet in the cache."""


class TrainingDiverged(CliplabError, RuntimeError):
    """Training stopped after `max_bad_steps` consecutive steps with a non-finite loss or gradient."""


class MissingExtra(CliplabError, ImportError):
    """An optional dependency that a feature needs is not installed."""


class BadSample(CliplabError):
    """One image or caption that cannot be used; `reason` is a short, countable label.

    Readers of many samples catch it, skip the sample and list it; where a single file the user
    named is unusable, it reaches the user as a one-line error.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
