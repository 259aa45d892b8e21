"""A least-recently-used cache bounded in bytes: what every long-lived cache in cliplab is, so that no
stream of requests (a server's queries, zero-shot labels, thumbnails) can grow memory without end."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

ENTRY_OVERHEAD = 100  # bytes of bookkeeping counted for each entry, beyond its key and value
TENSOR_OVERHEAD = 600  # a small torch tensor's object, implementation and storage, measured beyond its data


def size_of(value: Any) -> int:
    """Bytes an entry's key or value holds in memory: arrays and tensors by their data and objects, text
    and bytes by their objects."""
    if hasattr(value, "element_size"):  # torch tensors
        return int(value.numel() * value.element_size()) + TENSOR_OVERHEAD
    if hasattr(value, "nbytes"):  # numpy arrays
        return int(value.nbytes) + 112
    if isinstance(value, (str, bytes, bytearray)):
        return sys.getsizeof(value)
    if isinstance(value, tuple):
        return sum(size_of(part) for part in value)
    return 64


class LRUCache:
    """Up to `max_bytes` of entries (keys and values counted), the least recently used evicted first.

    An entry larger than the whole budget is not kept. Thread-safe.
    """

    def __init__(self, max_bytes: int, size: Callable[[Any], int] = size_of):
        self.max_bytes, self._size = max_bytes, size
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.nbytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key not in self._entries:
                return default
            self._entries.move_to_end(key)
            return self._entries[key][0]

    def put(self, key: Hashable, value: Any) -> None:
        cost = self._size(key) + self._size(value) + ENTRY_OVERHEAD
        with self._lock:
            if key in self._entries:
                self.nbytes -= self._entries.pop(key)[1]
            if cost > self.max_bytes:
                return
            self._entries[key] = (value, cost)
            self.nbytes += cost
            while self.nbytes > self.max_bytes:
                self.nbytes -= self._entries.popitem(last=False)[1][1]

    def memoize(self, function: Callable[[Hashable], Any]) -> Callable[[Hashable], Any]:
        """`function` of one hashable argument, its results kept here."""
        missing = object()

        def cached(key: Hashable) -> Any:
            value = self.get(key, missing)
            if value is missing:
                value = function(key)
                self.put(key, value)
            return value

        return cached


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to call
        return None


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's `malloc_trim`; nothing elsewhere).

    A text tower run on hundreds of prompts frees its activations into a heap that small, long-lived
    objects (cache entries) pin, and glibc keeps those pages: 1,000 zero-shot requests with new prompts
    grew a server by 1.4 GB of memory it no longer used. Trimming after such a request keeps it at what
    is live, for a few milliseconds (benchmarks/bench_hostile_serve.py)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
