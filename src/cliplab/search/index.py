"""`cliplab index`: a FAISS index over a collection's image embeddings, saved beside them.

Embeddings are L2-normalised, so inner product is cosine similarity. Three kinds:

- `flat`: exact inner product over every vector, kept in float16 as the collection stores them (half
  the memory of float32 and about 3.7x faster on a CPU; the same scores). The default up to
  `EXACT_UP_TO` items, where an exact search is still a few milliseconds.
- `hnsw`: a graph (HNSW, 32 links per node); full vectors, fast and accurate, slower to build.
- `ivfpq`: inverted lists over k-means cells, vectors compressed by product quantisation (`m` bytes
  each), the `nprobe` nearest cells searched; the smallest in memory, the default for large ones.
  Its scores are approximate, so `Searcher` re-scores 10 x k of its candidates with the stored vectors.

The index records how many rows and which embedding run it was built from, so a stale index (the
collection re-embedded since) is refused instead of returning wrong items.

A collection is indexed without loading it: its float16 shards are memory-mapped, the quantiser is
trained on a sample, and vectors are added a chunk at a time, so the build's memory is the index itself
plus a bounded chunk (`max_memory` says how much may be used, and an index that cannot fit is refused
before any work).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ConfigError, SourceError
from ..extras import require
from ..files import atomic_write, write_json
from .collection import Collection

KINDS = ("flat", "hnsw", "ivfpq")
EXACT_UP_TO = 100_000
INDEX_FILE, INFO_FILE = "index/image.faiss", "index/image.json"


def _faiss():
    return require("faiss", "search", "an index")


@dataclass
class IndexInfo:
    kind: str
    rows: int
    dim: int
    model: str  # fingerprint of the model that made the embeddings
    params: dict = field(default_factory=dict)  # nlist, m, nprobe / hnsw_m, ef_search
    build_seconds: float = 0.0


def choose_kind(rows: int) -> str:
    return "flat" if rows <= EXACT_UP_TO else "ivfpq"


def default_params(kind: str, rows: int, dim: int) -> dict:
    if kind == "hnsw":
        return {"hnsw_m": 32, "ef_construction": 80, "ef_search": 128}
    if kind == "ivfpq":
        # ~sqrt(n) cells (1,024 for a million), k-means trained on 64 vectors per cell: a few minutes
        # on a laptop, where FAISS's usual 4 sqrt(n) cells and 256 per cell take an hour.
        nlist = max(1, min(65_536, 2 ** round(math.log2(math.sqrt(rows)))))
        m = next(m for m in (64, 48, 32, 16, 8, 4, 2, 1) if dim % m == 0)  # bytes per vector, dividing dim
        # (and at least the 39 x 256 vectors its product quantiser needs)
        return {"nlist": nlist, "m": m, "nprobe": min(nlist, 64), "train_size": min(rows, max(64 * nlist, 10_000))}
    return {}


class ShardedVectors:
    """A collection's image embeddings as its float16 `.npy` shards, read a chunk at a time with plain reads
    (not memory-mapped: mapped pages would count against the build's memory as they are touched)."""

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
        out, start = [], 0
        for part in self.chunks(rows):
            lo, hi = np.searchsorted(indices, [start, start + len(part)])
            out.append(part[indices[lo:hi] - start])
            start += len(part)
        return np.concatenate(out)


class _InMemory:
    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.shape = self.vectors.shape

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


def index_bytes(kind: str, params: dict, rows: int, dim: int, half: bool = True) -> int:
    """About how much memory building the index takes, besides the chunk being added (`half`: a flat
    index of float16 values)."""
    if kind == "flat":
        return rows * dim * (2 if half else 4)
    if kind == "hnsw":
        return rows * (dim * 4 + params["hnsw_m"] * 2 * 4 + 16)
    # codes and ids, the cells' centroids, and the training sample with k-means' copy and its residuals
    return rows * (params["m"] + 8) + params["nlist"] * dim * 4 + 3 * min(rows, params["train_size"]) * dim * 4


def build_index(vectors, kind: str = "auto", params: dict | None = None, seed: int = 0, max_memory: int | None = None):
    """(a FAISS index over `vectors`, the kind, the parameters used). `vectors` is an (n, dim) array or a
    `ShardedVectors`; `max_memory` bounds the bytes the build may use (a `ConfigError` if it cannot fit)."""
    faiss = _faiss()
    vectors = vectors if isinstance(vectors, ShardedVectors) else _InMemory(vectors)
    rows, dim = vectors.shape
    kind = choose_kind(rows) if kind == "auto" else kind
    if kind not in KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)} or auto")
    params = default_params(kind, rows, dim) | dict(params or {})
    half = kind == "flat" and vectors.float16_exact()
    chunk = 65_536
    if max_memory is not None:
        needed = index_bytes(kind, params, rows, dim, half)
        free = max_memory - needed
        chunk = free // (dim * 4 * 2)  # a float16 chunk read and its float32 copy
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
            raise ConfigError(f"an ivfpq index needs at least nlist = {params['nlist']} rows; this has {rows}")
        if dim % params["m"]:
            raise ConfigError(f"ivfpq: m = {params['m']} must divide the dimension {dim}")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["m"], 8, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(rows, size=min(rows, params["train_size"]), replace=False)
        index.cp.seed = seed
        index.train(vectors.take(np.sort(sample), chunk))
        del sample
    for part in vectors.chunks(chunk):
        index.add(part)
    set_search_params(index, kind, params)
    return index, kind, params


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


def set_search_params(index, kind: str, params: dict) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = int(params["ef_search"])
    elif kind == "ivfpq":
        index.nprobe = int(params["nprobe"])


def index_collection(
    collection: Collection, kind: str = "auto", params: dict | None = None, max_memory: int | None = None
) -> IndexInfo:
    """Build and save an index over the collection's image embeddings, read shard by shard (see above)."""
    faiss = _faiss()
    started = time.perf_counter()
    index, kind, params = build_index(ShardedVectors(collection), kind, params, max_memory=max_memory)
    info = IndexInfo(
        kind,
        index.ntotal,
        collection.dim,
        collection.model["fingerprint"],
        params,
        round(time.perf_counter() - started, 3),
    )
    path = collection.folder / INDEX_FILE
    path.parent.mkdir(exist_ok=True)
    atomic_write(path, lambda tmp: faiss.write_index(index, tmp))
    write_json(collection.folder / INFO_FILE, asdict(info))
    return info


def load_index(collection: Collection):
    """(the saved index, its IndexInfo), or (None, None) when the collection has no index yet."""
    path = collection.folder / INDEX_FILE
    if not path.is_file():
        return None, None
    faiss = _faiss()
    info = IndexInfo(**json.loads((collection.folder / INFO_FILE).read_text()))
    if info.rows != len(collection) or info.model != collection.model["fingerprint"]:
        raise SourceError(
            f"{path} was built for another embedding run ({info.rows} rows); run `cliplab index {collection.folder}` again"
        )
    index = faiss.read_index(str(path))
    set_search_params(index, info.kind, info.params)
    return index, info
