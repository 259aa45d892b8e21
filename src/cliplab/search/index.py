"""`cliplab index`: a FAISS index over a collection's image embeddings, saved beside them.

Embeddings are L2-normalised, so inner product is cosine similarity. Three kinds:

- `flat`: exact inner product over every vector. The default up to `EXACT_UP_TO` items, where an
  exact search is still a few milliseconds.
- `hnsw`: a graph (HNSW, 32 links per node); full vectors, fast and accurate, slower to build.
- `ivfpq`: inverted lists over k-means cells, vectors compressed by product quantisation (`m` bytes
  each), the `nprobe` nearest cells searched; the smallest in memory, the default for large ones.
  Its scores are approximate, so `Searcher` re-scores 10 x k of its candidates with the stored vectors.

The index records how many rows and which embedding run it was built from, so a stale index (the
collection re-embedded since) is refused instead of returning wrong items.
"""

from __future__ import annotations

import json
import math
import time
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


def build_index(vectors: np.ndarray, kind: str = "auto", params: dict | None = None, seed: int = 0):
    """(a FAISS index over `vectors` (n, dim) float32, the parameters used)."""
    faiss = _faiss()
    rows, dim = vectors.shape
    kind = choose_kind(rows) if kind == "auto" else kind
    if kind not in KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)} or auto")
    params = default_params(kind, rows, dim) | dict(params or {})
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "flat":
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
        index.train(vectors[np.sort(sample)])
    index.add(vectors)
    set_search_params(index, kind, params)
    return index, kind, params


def set_search_params(index, kind: str, params: dict) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = int(params["ef_search"])
    elif kind == "ivfpq":
        index.nprobe = int(params["nprobe"])


def index_collection(collection: Collection, kind: str = "auto", params: dict | None = None) -> IndexInfo:
    faiss = _faiss()
    started = time.perf_counter()
    index, kind, params = build_index(collection.image_vectors, kind, params)
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
