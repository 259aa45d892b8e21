"""`cliplab index`: a FAISS index over a collection's image embeddings, saved beside them.

Embeddings are L2-normalised, so inner product is cosine similarity. The kinds, smallest first:

- `ivfpq`: inverted lists over k-means cells, each vector compressed by product quantisation to `m`
  bytes; the `nprobe` cells nearest a query are searched.
- `ivfsq8`: the same cells, each value kept in 8 bits (half the bytes of float16).
- `ivfflat`: the same cells, the vectors kept as the collection stores them (float16).
- `hnsw`: a graph (HNSW, 32 links per node) over float32 vectors; fast and accurate, slow to build.
- `flat`: exact inner product over every vector, kept in float16 as the collection stores them (half
  the memory of float32 and about 3.7x faster on a CPU; the same scores).

The compressed kinds' scores are approximate, so `nearest` re-scores 10 x k of their candidates with the
stored vectors (read from the collection's float16 shards): what a search returns always carries
exact scores. Which kind and which `nprobe` / `efSearch`: `tune.py` measures (`cliplab index --recall`).

The index records how many rows and which embedding run it was built from, so a stale index (the
collection re-embedded since) is refused instead of returning wrong items.

A collection is indexed without loading it: its float16 shards are read a chunk at a time, the quantiser
is trained on a sample, and vectors are added a chunk at a time, so the build's memory is the index itself
plus a bounded chunk (`max_memory` says how much may be used, and an index that cannot fit is refused
before any work). A saved index can be searched memory-mapped, for collections larger than RAM.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, QueryError, SourceError
from ..extras import require
from .collection import Collection

KINDS = ("flat", "ivfpq", "ivfsq8", "ivfflat", "hnsw")
IVF_KINDS = ("ivfpq", "ivfsq8", "ivfflat")
RESCORED = ("ivfpq", "ivfsq8")  # approximate scores: candidates re-scored with the stored vectors
EXACT_UP_TO = 100_000  # up to this many rows an exact search takes a few milliseconds
RERANK_FACTOR = 10  # a compressed index proposes k x this many candidates, re-scored exactly
DUPLICATE_THRESHOLD = 0.95  # cosine similarity from which two results count as the same picture
INDEX_FILE, INFO_FILE = "index/image.faiss", "index/image.json"


def _faiss():
    return require("faiss", "search", "an index")


@dataclass
class Hit:
    id: int
    score: float
    duplicates: list[int] = field(default_factory=list)  # ids folded into this hit as near-duplicates


@dataclass
class IndexInfo:
    kind: str
    rows: int
    dim: int
    model: str  # fingerprint of the model that made the embeddings
    params: dict = field(default_factory=dict)  # nlist, m, nprobe / hnsw_m, ef_search
    build_seconds: float = 0.0
    # measured by `tune.py` on a sample of the collection's own vectors (None for indexes made before it)
    recall: float | None = None  # recall@10 against exact search, self excluded
    p50_ms: float | None = None  # single-query latency, re-scoring included
    p99_ms: float | None = None
    bytes_per_vector: float | None = None
    target: dict = field(default_factory=dict)  # the recall and latency asked for
    trials: list = field(default_factory=list)  # every kind and setting measured on the way


def default_params(kind: str, rows: int, dim: int) -> dict:
    if kind == "hnsw":
        return {"hnsw_m": 32, "ef_construction": 80, "ef_search": 128}
    if kind in IVF_KINDS:
        # ~sqrt(n) cells (1,024 for a million), k-means trained on 64 vectors per cell: a few seconds,
        # where FAISS's usual 4 sqrt(n) cells and 256 per cell take an hour on a laptop
        nlist = max(1, min(65_536, 2 ** round(math.log2(math.sqrt(rows)))))
        params = {"nlist": nlist, "nprobe": min(nlist, 16), "train_size": min(rows, max(64 * nlist, 10_000))}
        if kind == "ivfpq":  # bytes per vector, dividing the dimension (512: 64 bytes, 8 values a byte)
            params["m"] = next(m for m in (64, 48, 32, 16, 8, 4, 2, 1) if dim % m == 0)
        return params
    return {}


class ShardedVectors:
    """A collection's image embeddings as its float16 `.npy` shards: read a chunk at a time with plain reads
    to build an index (mapped pages would count against the build's memory as they are touched), and rows
    read one by one to re-score candidates (`vectors[ids]`)."""

    def __init__(self, collection: Collection):
        self.shards = []  # (path, offset of the data, rows, dtype)
        for path in collection._files("img_emb"):
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0
                if version != (1, 0):
                    read_header = np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(f)
                if fortran or dtype.hasobject or len(shape) != 2 or shape[1] != collection.dim:
                    raise SourceError(f"{path}: not a ({collection.dim}-wide) row-major embedding array")
                self.shards.append((path, f.tell(), shape[0], dtype))
        self.shape = (sum(rows for _, _, rows, _ in self.shards), collection.dim)
        if self.shape[0] != len(collection):
            raise SourceError(
                f"{collection.folder}: {self.shape[0]} img_emb rows but the manifest says {len(collection)}"
            )
        self.starts = np.cumsum([0] + [rows for _, _, rows, _ in self.shards])
        self._files = None  # descriptors of the shards, opened on the first row read

    def __len__(self) -> int:
        return self.shape[0]

    def chunks(self, rows: int) -> Iterator[np.ndarray]:
        dim = self.shape[1]
        for path, offset, count, dtype in self.shards:
            with open(path, "rb") as f:
                f.seek(offset)
                for start in range(0, count, rows):
                    part = np.fromfile(f, dtype=dtype, count=min(rows, count - start) * dim)
                    yield part.reshape(-1, dim).astype(np.float32)

    def float16_exact(self) -> bool:
        return all(dtype == np.float16 for _, _, _, dtype in self.shards)

    def take(self, indices: np.ndarray, rows: int = 65_536) -> np.ndarray:
        """float32 rows at sorted global `indices`, gathered in one pass over the shards."""
        out, start = [np.zeros((0, self.shape[1]), np.float32)], 0
        for part in self.chunks(rows):
            lo, hi = np.searchsorted(indices, [start, start + len(part)])
            out.append(part[indices[lo:hi] - start])
            start += len(part)
        return np.concatenate(out)

    def __getitem__(self, ids) -> np.ndarray:
        """float32 rows at `ids` (any order), each read with one positioned read: a search touches only the
        rows it re-scores, and what it reads stays in the page cache, not in the process's memory."""
        if self._files is None:
            self._files = [os.open(path, os.O_RDONLY) for path, _, _, _ in self.shards]
        one = np.ndim(ids) == 0
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"row ids must lie in 0..{len(self) - 1}")
        shard = np.searchsorted(self.starts, ids, side="right") - 1
        out = np.empty((len(ids), self.shape[1]), np.float32)
        for row, (i, s) in enumerate(zip(ids.tolist(), shard.tolist())):
            _, offset, _, dtype = self.shards[s]
            size = self.shape[1] * dtype.itemsize
            data = os.pread(self._files[s], size, offset + (i - int(self.starts[s])) * size)
            out[row] = np.frombuffer(data, dtype)
        return out[0] if one else out

    def __del__(self):
        for fd in self._files or ():
            os.close(fd)


class _InMemory:
    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.shape = self.vectors.shape

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, ids) -> np.ndarray:
        return self.vectors[ids]

    def chunks(self, rows: int) -> Iterator[np.ndarray]:
        yield self.vectors  # already in memory: one add

    def take(self, indices: np.ndarray, rows: int = 0) -> np.ndarray:
        return self.vectors[indices]

    def float16_exact(self) -> bool:
        """Whether float16 holds every value exactly (a collection's embeddings, read back as float32)."""
        return all(
            np.array_equal(part.astype(np.float16).astype(np.float32), part)
            for part in np.array_split(self.vectors, max(1, len(self.vectors) // 65_536))
        )


def as_vectors(vectors) -> ShardedVectors | _InMemory:
    return vectors if isinstance(vectors, (ShardedVectors, _InMemory)) else _InMemory(vectors)


def bytes_per_vector(kind: str, params: dict, dim: int, half: bool = True) -> float:
    """Memory the index keeps for each vector (the k-means cells' centroids are extra: nlist x dim x 4)."""
    if kind == "flat":
        return dim * (2 if half else 4)
    if kind == "hnsw":  # float32 vector, about 2 x M links at the bottom layer, a few above
        return dim * 4 + params["hnsw_m"] * 2 * 4 * 1.05
    code = {"ivfpq": params.get("m", 0), "ivfsq8": dim, "ivfflat": 2 * dim}[kind]
    return code + 8  # and its 8-byte id in the inverted list


def index_bytes(kind: str, params: dict, rows: int, dim: int, half: bool = True) -> int:
    """About how much memory building the index takes, besides the chunk being added (`half`: a flat
    index of float16 values)."""
    stored = int(rows * bytes_per_vector(kind, params, dim, half))
    if kind not in IVF_KINDS:
        return stored
    # the cells' centroids, and the training sample with k-means' copy and its residuals
    return stored + params["nlist"] * dim * 4 + 3 * min(rows, params["train_size"]) * dim * 4


def _ivf(faiss, kind: str, quantizer, dim: int, params: dict):
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "ivfpq":
        if dim % params["m"]:
            raise ConfigError(f"ivfpq: m = {params['m']} must divide the dimension {dim}")
        return faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["m"], 8, ip)
    qtype = faiss.ScalarQuantizer.QT_8bit if kind == "ivfsq8" else faiss.ScalarQuantizer.QT_fp16
    return faiss.IndexIVFScalarQuantizer(quantizer, dim, params["nlist"], qtype, ip)


def build_index(
    vectors,
    kind: str = "auto",
    params: dict | None = None,
    seed: int = 0,
    max_memory: int | None = None,
    shared: dict | None = None,
):
    """(a FAISS index over `vectors`, the kind, the parameters used). `vectors` is an (n, dim) array or a
    `ShardedVectors`; `max_memory` bounds the bytes the build may use (a `ConfigError` if it cannot fit).
    `shared` (a dict) keeps the k-means cells between builds of IVF kinds with the same cells."""
    faiss = _faiss()
    vectors = as_vectors(vectors)
    rows, dim = vectors.shape
    kind = ("flat" if rows <= EXACT_UP_TO else "ivfpq") if kind == "auto" else kind
    if kind not in KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)} or auto")
    params = default_params(kind, rows, dim) | dict(params or {})
    half = kind == "flat" and vectors.float16_exact()
    chunk = 65_536
    if max_memory is not None:
        needed = index_bytes(kind, params, rows, dim, half)
        chunk = (max_memory - needed) // (dim * 4 * 2)  # a float16 chunk read and its float32 copy
        if chunk < 1_024:
            raise ConfigError(
                f"a {kind} index of {rows:,} x {dim} vectors needs about {_mb(needed)} to build, more than "
                f"the {_mb(max_memory)} allowed" + ("; ivfpq compresses vectors" if kind != "ivfpq" else "")
            )
        chunk = min(chunk, 262_144)
    if half:
        # the embeddings are float16 on disk: kept so, the search is still exact over the stored values, in
        # half the memory and about 3.7x faster for one query (a million vectors: 38 ms, not 150)
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    elif kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
    else:
        if rows < params["nlist"]:
            raise ConfigError(f"an {kind} index needs at least nlist = {params['nlist']} rows; this has {rows}")
        if kind == "ivfpq" and min(rows, params["train_size"]) < 256:  # 256 codewords per byte to train
            raise ConfigError(f"an ivfpq index needs at least 256 rows to train its codes; this has {rows}")
        shared = {} if shared is None else shared
        picks = np.random.default_rng(seed).choice(rows, size=min(rows, params["train_size"]), replace=False)
        quantizer = faiss.IndexFlatIP(dim)
        cells = (params["nlist"], params["train_size"], seed)
        if shared.get("cells") == cells:
            quantizer.add(shared["centroids"])  # cells already trained: IVF's training leaves them as they are
        index = _ivf(faiss, kind, quantizer, dim, params)
        index.cp.seed = seed
        index.train(vectors.take(np.sort(picks), chunk))  # the sample is freed before the vectors are added
        shared.update(cells=cells, centroids=quantizer.reconstruct_n(0, quantizer.ntotal))
    for part in vectors.chunks(chunk):
        index.add(part)
    set_search_params(index, kind, params)
    return index, kind, params


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


def set_search_params(index, kind: str, params: dict) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = int(params["ef_search"])
    elif kind in IVF_KINDS:
        index.nprobe = int(params["nprobe"])


def query_vector(vector: np.ndarray, dim: int) -> np.ndarray:
    """A query embedding, checked (its length, finite, not zero) and normalised to float32."""
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)  # float64: JSON numbers past float32's range
    if vector.shape[0] != dim:
        raise QueryError(f"a query embedding needs {dim} numbers, not {vector.shape[0]}")
    if not np.isfinite(vector).all() or not vector.any():
        raise QueryError("a query embedding must be finite and not all zeros")
    vector = vector / np.abs(vector).max()  # scaled first, so the norm cannot overflow
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def nearest(
    index,
    kind: str | None,
    vectors,
    vector: np.ndarray,
    k: int,
    fold_duplicates: bool = False,
    threshold: float = DUPLICATE_THRESHOLD,
) -> list[Hit]:
    """The k items of `index` most similar to `vector` (normalised here), best first, as `Hit`s.

    `vectors` are the stored embeddings the index holds (an array or `ShardedVectors`): a compressed
    index's candidates are re-scored with them. With `fold_duplicates`, an item at least `threshold`
    similar to a better hit is listed under that hit's `duplicates` instead of taking a place of its own.
    """
    vector = query_vector(vector, vectors.shape[1])
    k = min(k, len(vectors))
    fetch = min(len(vectors), k * 4 + 16) if fold_duplicates else k
    if kind in RESCORED:  # its scores are approximate: re-score a wider net with the stored vectors
        fetch = min(len(vectors), max(fetch, k * RERANK_FACTOR))
    scores, ids = index.search(vector[None, :], fetch)
    found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
    if kind in RESCORED and found:
        exact = vectors[[i for i, _ in found]] @ vector
        found = sorted(zip([i for i, _ in found], exact.tolist()), key=lambda pair: -pair[1])
    if not fold_duplicates:
        return [Hit(i, s) for i, s in found[:k]]
    hits: list[Hit] = []
    for i, score in found:
        if hits:
            similar = vectors[[h.id for h in hits]] @ vectors[i]
            best = int(similar.argmax())
            if similar[best] >= threshold:
                hits[best].duplicates.append(i)
                continue
        if len(hits) < k:
            hits.append(Hit(i, score))
    return hits


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux: MemAvailable; elsewhere: free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62


def load_index(collection: Collection, memory_map: bool | None = None):
    """(the saved index, its IndexInfo), or (None, None) when the collection has no index yet.

    `memory_map`: search the index file through a memory map instead of reading it into memory (for
    collections larger than RAM; pages are read as searches touch them). None: when the file is larger
    than half the memory available."""
    path = collection.folder / INDEX_FILE
    if not path.is_file():
        return None, None
    faiss = _faiss()
    info = IndexInfo(**json.loads((collection.folder / INFO_FILE).read_text()))
    if info.rows != len(collection) or info.model != collection.model["fingerprint"]:
        raise SourceError(
            f"{path} was built for another embedding run ({info.rows} rows); run `cliplab index {collection.folder}` again"
        )
    if memory_map is None:
        memory_map = path.stat().st_size > available_memory() // 2
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if memory_map else 0)
    set_search_params(index, info.kind, info.params)
    return index, info
