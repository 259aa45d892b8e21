"""Choosing an index by measurement: the kind and the search setting that reach a recall target.

As autofaiss does, a sample of the collection's own vectors serves as queries. Their exact 10 nearest
neighbours are found by brute force over the stored vectors (each query's own row left out, here and in
the answers). Candidate kinds are built smallest first; each one's `nprobe` (IVF) or `ef_search` (HNSW)
is doubled until recall@10 of what a search returns (re-scoring included) reaches the target, while the
99th-percentile latency of the same single queries stays within the bound. The first candidate that
meets both is kept; doubling stops early when latency passes the bound or recall stops rising (product
quantisation's codes cap it, whatever the cells searched). If no candidate meets both, the one closest
to the target is kept and the report says so.

Recall counts a returned item as right when its exact score reaches the 10th true neighbour's (ties are
not penalised). Queries drawn from the collection find their own cluster; queries from elsewhere can be
harder, so the target is best set with some margin (`benchmarks/bench_search.py` measures both).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ConfigError
from ..files import atomic_write, write_json
from .collection import Collection
from .index import (
    EXACT_UP_TO,
    INDEX_FILE,
    INFO_FILE,
    IVF_KINDS,
    KINDS,
    IndexInfo,
    ShardedVectors,
    _faiss,
    build_index,
    bytes_per_vector,
    default_params,
    nearest,
    set_search_params,
)

K = 10  # recall@10
WARM_UP = 10  # queries run before timing: the first touch of memory-mapped pages is not a search's cost
TIMED = 300  # searches timed at least, for a 99th percentile that one stray delay does not decide


@dataclass
class Trial:
    kind: str
    params: dict
    recall: float
    p50_ms: float
    p99_ms: float
    bytes_per_vector: float
    build_seconds: float
    verdict: str = ""  # "met" or why the kind was left: "latency", "plateau", "recall", "memory: ..."

    def line(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.params.items() if k not in ("train_size", "ef_construction"))
        return (
            f"{self.kind:<8} {settings or 'exact':<36} recall@10 {self.recall:.3f}   p50 {self.p50_ms:6.2f} ms   "
            f"p99 {self.p99_ms:6.2f} ms   {self.bytes_per_vector:6.0f} B/vector   built in {self.build_seconds:5.1f} s"
            + (f"   {self.verdict}" if self.verdict else "")
        )


@dataclass
class Tuned:
    index: object
    kind: str
    params: dict
    chosen: Trial
    met: bool
    target: dict
    trials: list[Trial] = field(default_factory=list)

    def measured(self) -> dict:
        """The chosen index's measurements, as `IndexInfo` stores them."""
        return {
            "recall": self.chosen.recall,
            "p50_ms": self.chosen.p50_ms,
            "p99_ms": self.chosen.p99_ms,
            "bytes_per_vector": self.chosen.bytes_per_vector,
            "target": self.target | {"met": self.met},
            "trials": [asdict(trial) for trial in self.trials],
        }


def candidates(rows: int, dim: int, kind: str, params: dict, recall: float) -> list[tuple[str, dict]]:
    """(kind, parameters) to try, smallest in memory first."""
    if kind != "auto":
        if kind not in KINDS:
            raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)} or auto")
        return [(kind, default_params(kind, rows, dim) | params)]
    if rows <= EXACT_UP_TO or recall >= 1:
        return [("flat", {})]
    ivf = {key: params[key] for key in ("nlist", "nprobe", "train_size") if key in params}
    pq = default_params("ivfpq", rows, dim) | ivf
    sizes = [params["m"]] if "m" in params else [m for m in (pq["m"], 2 * pq["m"]) if m <= dim // 2 and dim % m == 0]
    tried = [("ivfpq", pq | {"m": m}) for m in sizes]  # and twice the bytes, where PQ's codes cap the recall
    tried += [(name, default_params(name, rows, dim) | ivf) for name in ("ivfsq8", "ivfflat")]
    hnsw = {key: params[key] for key in ("ef_search",) if key in params}
    return tried + [("hnsw", default_params("hnsw", rows, dim) | hnsw), ("flat", {})]


def settings(kind: str, params: dict, fixed: dict) -> tuple[str | None, list[int]]:
    """The search-time parameter doubled for this kind and its values (one when the caller fixed it)."""
    name = "nprobe" if kind in IVF_KINDS else "ef_search" if kind == "hnsw" else None
    if name is None:
        return None, [0]
    if name in fixed:
        return name, [int(fixed[name])]
    top, value = (params["nlist"], 1) if name == "nprobe" else (4096, 16)
    values = []
    while value < top:
        values.append(value)
        value *= 2
    return name, values + [top]


def exact_neighbours(vectors, queries: np.ndarray, own: np.ndarray, k: int, chunk: int = 4_096) -> np.ndarray:
    """(len(queries),) the k-th best exact score of each query over `vectors`, its own row (`own`) left out."""
    best = np.full((len(queries), k), -np.inf, np.float32)
    start = 0
    for part in vectors.chunks(chunk):
        scores = queries @ part.T
        inside = (own >= start) & (own < start + len(part))
        scores[np.nonzero(inside)[0], own[inside] - start] = -np.inf
        both = np.concatenate([best, scores], axis=1)
        best = -np.partition(-both, k - 1, axis=1)[:, :k]
        start += len(part)
    return best.min(axis=1)


def measure(
    index, kind: str, vectors, queries: np.ndarray, own: np.ndarray, kth: np.ndarray, k: int, max_latency_ms: float
):
    """(recall@k, p50 ms, p99 ms) of single-query searches, each query's own row left out.

    At least `TIMED` searches are timed (a small sample is searched again), so one stray delay of a busy
    machine is not the 99th percentile; a p99 over the bound is measured once more and the better kept."""
    for query in queries[:WARM_UP]:
        nearest(index, kind, vectors, query, k + 1)
    right = []
    for query, self_id, threshold in zip(queries, own, kth):
        hits = nearest(index, kind, vectors, query, k + 1)
        ids = [hit.id for hit in hits if hit.id != self_id][:k]
        exact = vectors[ids] @ query if ids else np.zeros(0)
        right.append(int((exact >= threshold - 1e-5).sum()) / k)
    timed = np.resize(np.arange(len(queries)), max(TIMED, len(queries)))
    best = None
    for _ in range(2):
        ms = []
        for i in timed:
            began = time.perf_counter()
            nearest(index, kind, vectors, queries[i], k + 1)
            ms.append((time.perf_counter() - began) * 1000)
        p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
        best = (p50, p99) if best is None or p99 < best[1] else best
        if p99 <= max_latency_ms:
            break
    return float(np.mean(right)), *best


def tune_index(
    vectors,
    kind: str = "auto",
    params: dict | None = None,
    recall: float = 0.95,
    max_latency_ms: float = 10.0,
    queries: int = 500,
    max_memory: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Tuned:
    """Build indexes over `vectors` (a `ShardedVectors`) and keep the smallest that meets the targets."""
    if not 0 < recall <= 1:
        raise ConfigError(f"the recall target must lie in (0, 1], not {recall}")
    if not max_latency_ms > 0:
        raise ConfigError(f"the latency bound must be positive, not {max_latency_ms}")
    if queries < 1:
        raise ConfigError(f"at least one sample query is needed, not {queries}")
    say = progress or (lambda line: None)
    params = dict(params or {})
    rows, dim = vectors.shape
    k = min(K, rows - 1)
    rng = np.random.default_rng(seed)
    own = np.sort(rng.choice(rows, size=min(queries, rows), replace=False))
    sample = vectors.take(own, 4_096)
    kth = exact_neighbours(vectors, sample, own, k) if k > 0 else np.zeros(len(own), np.float32)
    target = {"recall": recall, "p99_ms": max_latency_ms, "queries": len(own)}
    say(
        f"measuring recall@{k} against exact search on {len(own):,} of the collection's own vectors (target: "
        f"{recall} within p99 {max_latency_ms} ms)"
    )
    trials: list[Trial] = []
    shared: dict = {}
    tries = candidates(rows, dim, kind, params, recall)
    for name, wanted in tries:
        began = time.perf_counter()
        try:
            index, name, wanted = build_index(vectors, name, wanted, seed=seed, max_memory=max_memory, shared=shared)
        except ConfigError as err:
            if len(tries) == 1:
                raise
            say(f"{name}: skipped ({err})")
            continue
        built = time.perf_counter() - began
        size = bytes_per_vector(name, wanted, dim, half=name == "flat" and index.code_size == 2 * dim)
        knob, values = settings(name, wanted, params)
        history: list[Trial] = []
        for step, value in enumerate(values):
            tried = wanted | ({knob: value} if knob else {})
            set_search_params(index, name, tried)
            found, p50, p99 = (
                measure(index, name, vectors, sample, own, kth, k, max_latency_ms) if k > 0 else (1.0, 0.0, 0.0)
            )
            trial = Trial(name, tried, round(found, 4), round(p50, 3), round(p99, 3), size, round(built, 1))
            if found >= recall and p99 <= max_latency_ms:
                trial.verdict = "met"
            elif p99 > max_latency_ms:
                trial.verdict = "latency"  # searching more only takes longer
            elif step >= 2 and found - history[-2].recall < 0.002:
                trial.verdict = "plateau"  # two doublings gained nothing: the codes cap the recall
            elif step == len(values) - 1:
                trial.verdict = "recall"
            history.append(trial)
            say(trial.line())
            if trial.verdict:
                break
        trials += history
        if history[-1].verdict == "met":
            return Tuned(index, name, history[-1].params, history[-1], True, target, trials)
        del index
    if not trials:
        raise ConfigError("no index kind fits the memory allowed; raise --max-memory")
    # nothing met both: the fastest that reached the recall, else the one with the best recall
    reached = [t for t in trials if t.recall >= recall]
    best = min(reached, key=lambda t: t.p99_ms) if reached else max(trials, key=lambda t: (t.recall, -t.p99_ms))
    index, _, _ = build_index(vectors, best.kind, best.params, seed=seed, max_memory=max_memory, shared=shared)
    say(f"no index reached recall@10 {recall} within p99 {max_latency_ms} ms; kept the closest: {best.line()}")
    return Tuned(index, best.kind, best.params, best, False, target, trials)


def index_collection(
    collection: Collection,
    kind: str = "auto",
    params: dict | None = None,
    max_memory: int | None = None,
    recall: float = 0.95,
    max_latency_ms: float = 10.0,
    queries: int = 500,
    progress=None,
) -> IndexInfo:
    """Build, measure and save an index over the collection's image embeddings, read shard by shard.

    `kind="auto"` picks the smallest kind whose measured recall@10 reaches `recall` within `max_latency_ms`
    at the 99th percentile (see `tune.py`); a given kind is tuned (its `nprobe` / `ef_search`) the same way
    unless `params` fixes them. `progress(line)` hears each measurement."""
    faiss = _faiss()
    started = time.perf_counter()
    vectors = ShardedVectors(collection)
    tuned = tune_index(
        vectors, kind, params, recall, max_latency_ms, queries=queries, max_memory=max_memory, progress=progress
    )
    info = IndexInfo(
        tuned.kind,
        tuned.index.ntotal,
        collection.dim,
        collection.model["fingerprint"],
        tuned.params,
        round(time.perf_counter() - started, 3),
        **tuned.measured(),
    )
    path = collection.folder / INDEX_FILE
    path.parent.mkdir(exist_ok=True)
    atomic_write(path, lambda tmp: faiss.write_index(tuned.index, tmp))
    write_json(collection.folder / INFO_FILE, asdict(info))
    return info
