"""Embed -> index -> search: the stored embeddings are the model's, results equal a brute-force
search, an interrupted embed resumes to the same files, and a second model is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab
from cliplab.cli import main
from cliplab.data import open_source
from cliplab.data.synthetic import SyntheticWorld
from cliplab.errors import ModelMismatch
from cliplab.search import Collection, Searcher, build_index, embed_collection, index_collection
from cliplab.search.index import load_index
from cliplab.search.searcher import nearest

from .conftest import natural_image, saved_model

pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return saved_model(tmp_path_factory, "tiny-ViT/8@32px")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """37 photo-like images in nested folders, a resized copy of one of them, and one broken file."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "nested").mkdir()
    for i in range(36):
        where = folder / "nested" if i % 4 == 0 else folder
        Image.fromarray(natural_image(48 + i, 64, seed=i)).save(where / f"photo{i:02d}.jpg", quality=90)
    Image.open(folder / "photo05.jpg").resize((96, 80)).save(folder / "photo05_copy.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def _embed(source, out, checkpoint, **options):
    model = cliplab.load_model(checkpoint)
    return embed_collection(source, out, model, str(checkpoint), progress=False, workers=0, **options)


def test_embeddings_are_the_models_and_search_equals_brute_force(tmp_path, photos, checkpoint):
    report = _embed(photos, tmp_path / "emb", checkpoint, shard_size=10, batch_size=4)
    assert (report.rows, report.skipped, report.shards) == (37, 1, 4)
    skipped = [json.loads(line) for line in (tmp_path / "emb" / "skipped.jsonl").read_text().splitlines()]
    assert [s["key"] for s in skipped] == ["broken.jpg"]

    collection = Collection.open(tmp_path / "emb")
    model, preprocess = cliplab.load(checkpoint)
    vectors = collection.image_vectors
    assert vectors.shape == (37, model.config.embed_dim)
    for id in (0, 17, 36):  # each stored row is the model's normalised embedding of that item's file
        item = collection.item(id)
        assert item.id == id
        with Image.open(item.path) as image:
            expected = model.encode_image(preprocess(image)[None], normalize=True)[0].detach().numpy()
            assert (item.width, item.height) == image.size
        np.testing.assert_allclose(vectors[id], expected, atol=2e-3)  # float16 storage
    assert sorted(collection.item(i).key for i in range(37)) == sorted(
        str(p.relative_to(photos)) for p in photos.rglob("*") if p.is_file() and p.name != "broken.jpg"
    )

    for kind in ("flat", "hnsw"):
        index, _, _ = build_index(vectors, kind)
        searcher = Searcher(collection, model, index, kind)
        rng = np.random.default_rng(0)
        for _ in range(5):
            query = rng.normal(size=vectors.shape[1]).astype(np.float32)
            hits = searcher.search(query, k=10)
            scores = vectors @ (query / np.linalg.norm(query))
            np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:10], atol=1e-5)
            assert {h.id for h in hits} == set(np.argsort(-scores)[:10].tolist())


def test_query_by_text_image_and_folding_near_duplicates(tmp_path, photos, checkpoint):
    _embed(photos, tmp_path / "emb", checkpoint)
    index_collection(Collection.open(tmp_path / "emb"), "flat")
    searcher = Searcher.open(tmp_path / "emb")
    keys = [searcher.collection.item(i).key for i in range(len(searcher.collection))]
    with Image.open(photos / "photo05.jpg") as image:
        hits = searcher.search(searcher.image_vector(image), k=3)
    assert keys[hits[0].id] == "photo05.jpg" and hits[0].score > 0.999

    threshold = (
        float(
            searcher.collection.image_vectors[keys.index("photo05_copy.png")]
            @ searcher.collection.image_vectors[keys.index("photo05.jpg")]
        )
        - 1e-3
    )
    with Image.open(photos / "photo05.jpg") as image:
        folded = searcher.search(searcher.image_vector(image), k=3, fold_duplicates=True, threshold=threshold)
    assert keys[folded[0].id] == "photo05.jpg" and keys.index("photo05_copy.png") in folded[0].duplicates
    assert all(keys.index("photo05_copy.png") != hit.id for hit in folded) and len(folded) == 3

    text = searcher.text_vector("a photo of a dog")
    model = cliplab.load_model(searcher.collection.model["checkpoint"])
    expected = model.encode_text(cliplab.tokenize(["a photo of a dog"]), normalize=True)[0].detach().numpy()
    np.testing.assert_allclose(text, expected, atol=1e-6)
    assert len(searcher.search(text, k=5)) == 5
    with pytest.raises(ValueError, match="needs"):
        searcher.search(np.ones(3), k=5)
    with pytest.raises(ValueError, match="zeros"):
        searcher.search(np.zeros(searcher.dim), k=5)


def test_an_interrupted_embed_resumes_to_the_same_files(tmp_path, photos, checkpoint):
    _embed(photos, tmp_path / "whole", checkpoint, shard_size=8)

    class Killed(Exception):
        pass

    def kill_after_two(shard: int) -> None:
        if shard == 1:
            raise Killed

    with pytest.raises(Killed):
        _embed(photos, tmp_path / "resumed", checkpoint, shard_size=8, on_shard_done=kill_after_two)
    # what a kill in the middle of writing shard 2 leaves behind: a temporary file, no `done` marker
    (tmp_path / "resumed" / "img_emb" / ".img_emb_00002.npy.abc.tmp").write_bytes(b"half")
    with pytest.raises(ValueError, match="did not finish"):
        Collection.open(tmp_path / "resumed")
    report = _embed(photos, tmp_path / "resumed", checkpoint, shard_size=8)
    assert report.resumed_shards == 2 and report.embedded_now == 38 - 16

    def files(folder: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "runs.jsonl" and not p.name.endswith(".tmp")
        }

    whole, resumed = files(tmp_path / "whole"), files(tmp_path / "resumed")
    assert whole.keys() == resumed.keys() and len(whole) > 10
    assert [name for name in whole if whole[name] != resumed[name]] == []


def test_mixing_models_is_refused(tmp_path, photos, checkpoint):
    _embed(photos, tmp_path / "emb", checkpoint, shard_size=100)
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    cliplab.save_checkpoint(cliplab.create_model("tiny-ViT/8@32px"), other)
    with pytest.raises(ModelMismatch, match="another model"):
        _embed(photos, tmp_path / "emb", other, shard_size=100)  # resuming with other weights
    with pytest.raises(ModelMismatch, match="same model"):
        Searcher.open(tmp_path / "emb", checkpoint=str(other))
    assert main(["search", str(tmp_path / "emb"), "a dog", "--checkpoint", str(other)]) == 2
    # the same weights in another file format are the same model
    same = tmp_path / "same"
    cliplab.save_hf_folder(cliplab.load_model(checkpoint), same)
    assert Searcher.open(tmp_path / "emb", checkpoint=str(same)).collection.item(0).id == 0


def test_caption_tables_and_shards_as_sources(tmp_path, checkpoint):
    world = SyntheticWorld()
    (tmp_path / "images").mkdir()
    rows = ["image\tcaption"]
    for i in range(12):
        scene = world.scene(i, seed=3, objects=1)
        world.render(scene, 48).save(tmp_path / "images" / f"{i}.png")
        rows += [f"{i}.png\t{world.describe(scene)}", f"{i}.png\tanother caption of {i}"]
    (tmp_path / "captions.tsv").write_text("\n".join(rows) + "\n")
    source = open_source(tmp_path / "captions.tsv")
    assert len(source.items) == 12 and source.has_captions
    _embed(tmp_path / "captions.tsv", tmp_path / "emb", checkpoint, shard_size=5)
    collection = Collection.open(tmp_path / "emb")
    model = cliplab.load_model(checkpoint)
    texts = collection.embeddings("text_emb")
    expected = model.encode_text(cliplab.tokenize([collection.item(i).caption for i in range(12)]), normalize=True)
    np.testing.assert_allclose(texts, expected.detach().numpy(), atol=2e-3)
    assert collection.item(3).caption == world.describe(world.scene(3, seed=3, objects=1))

    assert main(["shards", str(tmp_path / "captions.tsv"), str(tmp_path / "shards"), "--samples-per-shard", "5"]) == 0
    _embed(tmp_path / "shards", tmp_path / "emb_shards", checkpoint)
    from_shards = Collection.open(tmp_path / "emb_shards")
    np.testing.assert_allclose(from_shards.image_vectors, collection.image_vectors, atol=1e-4)  # the same pixels
    with from_shards.open_image(4) as a, collection.open_image(4) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_approximate_indexes_find_most_true_neighbours_and_reranking_the_rest(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 64))
    vectors = centres[rng.integers(0, 50, 10_000)] + 0.3 * rng.normal(size=(10_000, 64))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    queries = vectors[:100] + 0.05 * rng.normal(size=(100, 64)).astype(np.float32)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]

    def recall(found) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found)]))

    for kind, params in (("ivfpq", {"nlist": 64, "m": 16, "nprobe": 16}), ("hnsw", {})):
        index, _, _ = build_index(vectors, kind, params)
        _, found = index.search(queries, 10)
        assert recall(found) > 0.5, (kind, recall(found))
        if kind == "ivfpq":  # the searcher re-scores 10 x k candidates with the stored vectors
            reranked = [[h.id for h in nearest(index, kind, vectors, q, k=10)] for q in queries]
            assert recall(reranked) > max(0.9, recall(found)), (recall(found), recall(reranked))


def test_the_command_line_embed_index_search(tmp_path, photos, checkpoint, capsys):
    assert (
        main(
            [
                "embed",
                str(photos),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "emb"),
                "--no-progress",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert "37 images embedded" in capsys.readouterr().out
    assert main(["index", str(tmp_path / "emb")]) == 0
    assert "flat index over 37" in capsys.readouterr().out
    assert main(["search", str(tmp_path / "emb"), "--image", str(photos / "photo07.jpg"), "-k", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["key"] == "photo07.jpg" and len(lines) == 2
    assert main(["search", str(tmp_path / "emb")]) == 2  # neither text nor image
    assert main(["search", str(tmp_path / "nowhere"), "x"]) == 2


def _vector_collection(folder: Path, rows: int, dim: int, shard_rows: int, clusters: int = 200) -> np.ndarray:
    """A collection as `cliplab embed` leaves it (manifest, float16 shards), of clustered unit vectors."""
    from cliplab.search.collection import FORMAT, MANIFEST, shard_name

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, rows)] + 0.5 * rng.normal(size=(rows, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)
    (folder / "img_emb").mkdir(parents=True)
    shards = range(0, rows, shard_rows)
    for n, start in enumerate(shards):
        np.save(folder / "img_emb" / f"img_emb_{shard_name(n)}.npy", vectors[start : start + shard_rows])
    manifest = {"format": FORMAT, "complete": True, "rows": rows, "dim": dim, "shards": len(shards), "captions": False}
    (folder / MANIFEST).write_text(json.dumps({**manifest, "model": {"fingerprint": "f" * 32, "checkpoint": "m"}}))
    return vectors.astype(np.float32)


def test_an_index_larger_than_its_memory_budget_as_float32_is_built_shard_by_shard(tmp_path):
    """200,000 x 128 vectors are 102 MB as float32; the ivfpq build reads the shards a chunk at a time and
    stays within --max-memory 80M (peak RSS measured in a fresh process), and finds the true neighbours."""
    vectors = _vector_collection(tmp_path / "emb", 200_000, 128, 50_000)
    script = f"""
import json
from cliplab.search import Collection
from cliplab.search import index_collection

def status(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) * 1024

collection = Collection.open({str(tmp_path / "emb")!r})
import faiss  # noqa: F401  (its libraries, mapped once per process, are not the build's memory)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from here: what imports used does not count
before = status("VmRSS")
info = index_collection(collection, "ivfpq", max_memory=80 * 2**20)
print(json.dumps({{"grew": status("VmHWM") - before, "rows": info.rows}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["rows"] == 200_000
    assert measured["grew"] < 80 * 2**20, measured  # the float32 vectors alone would be 102 MB
    index, info = load_index(Collection.open(tmp_path / "emb"))
    queries = vectors[::2_000][:100]
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    reranked = [[h.id for h in nearest(index, info.kind, vectors, q, k=10)] for q in queries]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, reranked)])
    assert recall > 0.9, recall


def test_an_index_that_cannot_fit_its_memory_budget_is_refused_before_any_work(tmp_path, capsys):
    _vector_collection(tmp_path / "emb", 20_000, 64, 10_000)
    assert main(["index", str(tmp_path / "emb"), "--kind", "flat", "--max-memory", "1M"]) == 2
    error = capsys.readouterr().err.strip()
    assert "a flat index of 20,000 x 64 vectors needs about 2 MB to build, more than the 1 MB allowed" in error
    assert "ivfpq compresses vectors" in error and not (tmp_path / "emb" / "index").exists()
    with pytest.raises(SystemExit):  # argparse: usage and one line, exit status 2
        main(["index", str(tmp_path / "emb"), "--max-memory", "lots"])
    assert "'lots' is not a size such as 512M or 4G" in capsys.readouterr().err


def test_the_exact_index_keeps_float16_and_answers_as_brute_force_over_the_stored_vectors(tmp_path):
    """A collection's embeddings are float16: the flat index keeps them so (2 bytes a value, half of float32)
    and its ids and scores are those of brute force over the stored vectors."""
    vectors = _vector_collection(tmp_path / "emb", 5_000, 64, 2_000)
    info = index_collection(Collection.open(tmp_path / "emb"), "flat")
    index, _ = load_index(Collection.open(tmp_path / "emb"))
    assert info.kind == "flat" and index.code_size == 64 * 2 and index.ntotal == 5_000
    queries = vectors[:50] + 0.01
    scores, ids = index.search(queries, 10)
    exact = queries @ vectors.T
    assert (ids == np.argsort(-exact, axis=1, kind="stable")[:, :10]).mean() > 0.99  # ties may swap
    np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, axis=1), atol=1e-5)
    float32 = build_index(vectors + np.float32(1e-4), "flat")[0]  # values float16 cannot hold: kept in float32
    assert float32.code_size == 64 * 4


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a collection but the run log (timings) and temporary leftovers."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "runs.jsonl" and not p.name.endswith(".tmp")
    }


INTERRUPTED = """
import os, sys, time
from pathlib import Path
import cliplab
from cliplab import distributed
from cliplab.search import embed, embed_collection

place = distributed.setup("cpu")
out = Path(sys.argv[3])
plain = embed._embed_shard

def embed_shard(out_, n, *rest):
    if place.rank == 0:  # rank 0 is killed before finishing its first shard, once rank 1 has done one
        while not (out / "done" / "00001.json").is_file():
            time.sleep(0.05)
        os._exit(1)
    plain(out_, n, *rest)

def after(n):
    os._exit(1)  # rank 1 is killed right after its first shard

embed._embed_shard = embed_shard
embed_collection(sys.argv[1], out, cliplab.load_model(sys.argv[2]), sys.argv[2], shard_size=5, batch_size=4,
                 workers=0, progress=False, on_shard_done=after)
"""


def test_torchrun_two_processes_embed_the_files_one_process_writes(tmp_path, photos, checkpoint):
    """Two gloo processes split the shards (rank r: shards r, r + 2, ...) and leave the files one process
    writes, byte for byte; so does a two-process run resumed after both ranks were killed, in which shard 1
    was written before shard 0 (which holds the broken image), so its ids had to be renumbered at the end."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    common = ["embed", str(photos), "--checkpoint", str(checkpoint), "--shard-size", "5", "--batch-size", "4"]
    common += ["--workers", "0", "--no-progress"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "cliplab", *common, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [*torchrun, "-m", "cliplab", *common, "--out", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("37 images embedded in 8 shard(s)") == 1  # rank 0 speaks for both
    runs = [json.loads(line) for line in (tmp_path / "two" / "runs.jsonl").read_text().splitlines()]
    assert sorted((r["rank"], r["embedded"]) for r in runs) == [(0, 19), (1, 18)]  # shards 0,2,4,6 and 1,3,5,7
    assert _files(tmp_path / "one").keys() == _files(tmp_path / "two").keys()
    assert [n for n, data in _files(tmp_path / "one").items() if _files(tmp_path / "two")[n] != data] == []

    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    killed = subprocess.run(
        [*torchrun, str(script), str(photos), str(checkpoint), str(tmp_path / "resumed")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode != 0
    done = sorted(p.name for p in (tmp_path / "resumed" / "done").iterdir())
    assert done == ["00001.json"]  # shard 0 unfinished: shard 1 numbered as if nothing were skipped before it
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "resumed" / "metadata" / "metadata_00001.parquet")["id"][0].as_py() == 5
    resumed = subprocess.run(
        [*torchrun, "-m", "cliplab", *common, "--out", str(tmp_path / "resumed")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "1 shard(s) were already done" in resumed.stdout
    whole, again = _files(tmp_path / "one"), _files(tmp_path / "resumed")
    assert whole.keys() == again.keys() and [n for n in whole if whole[n] != again[n]] == []
    assert pq.read_table(tmp_path / "resumed" / "metadata" / "metadata_00001.parquet")["id"][0].as_py() == 4


def test_index_tuning_keeps_the_smallest_kind_that_reaches_the_recall_target(tmp_path, monkeypatch, capsys):
    """Above the exact-search size the tuner builds the smallest kinds first and doubles nprobe: 4-byte product
    quantisation codes cap the recall (two doublings gain nothing), so it moves on to a kind that reaches the
    target. The recall it stores is what a brute force over the stored vectors gives for the same sample
    queries; the memory-mapped index answers as the one read into memory."""
    from cliplab.search import tune

    vectors = _vector_collection(tmp_path / "emb", 20_000, 64, 8_000, clusters=20)  # 1,000 a cluster
    monkeypatch.setattr(tune, "EXACT_UP_TO", 1_000)
    assert main(["index", str(tmp_path / "emb"), "--m", "4", "--queries", "200"]) == 0
    out, err = capsys.readouterr()
    info = json.loads((tmp_path / "emb" / "index" / "image.json").read_text())
    trials = info["trials"]
    assert trials[0]["kind"] == "ivfpq" and trials[0]["params"]["nprobe"] == 1
    assert [t["verdict"] for t in trials if t["kind"] == "ivfpq"][-1] in ("plateau", "recall")
    assert trials[-1]["verdict"] == "met" and trials[-1]["kind"] == info["kind"] != "ivfpq"
    assert info["recall"] >= 0.95 and info["target"] == {"recall": 0.95, "p99_ms": 10.0, "queries": 200, "met": True}
    assert (
        "plateau" in err
        and f"{info['kind']} index over 20,000 x 64" in out
        and f"recall@10 {info['recall']:.3f}" in out
    )

    collection = Collection.open(tmp_path / "emb")
    own = np.sort(np.random.default_rng(0).choice(20_000, 200, replace=False))
    in_memory, loaded = load_index(collection, memory_map=False)
    mapped, _ = load_index(collection, memory_map=True)
    right = []
    for row in own:
        exact = vectors @ vectors[row]
        exact[row] = -np.inf
        tenth = np.sort(exact)[-10]
        hits = nearest(in_memory, loaded.kind, vectors, vectors[row], 11)
        assert hits == nearest(mapped, loaded.kind, vectors, vectors[row], 11)
        ids = [h.id for h in hits if h.id != row][:10]
        right.append(np.sum(vectors[ids] @ vectors[row] >= tenth - 1e-5) / 10)
    assert np.mean(right) == pytest.approx(info["recall"], abs=1e-4)


def test_an_unreachable_target_keeps_the_closest_index_and_says_so(tmp_path, monkeypatch, capsys):
    from cliplab.search import tune

    _vector_collection(tmp_path / "emb", 5_000, 32, 5_000)
    monkeypatch.setattr(tune, "EXACT_UP_TO", 1_000)
    args = ["index", str(tmp_path / "emb"), "--kind", "ivfflat", "--max-latency", "0.0001", "--queries", "50"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "no index reached recall@10 0.95 within p99 0.0001 ms; kept the closest" in err
    assert "(the target, recall@10 0.95 within 0.0001 ms, was not met)" in out
    info = json.loads((tmp_path / "emb" / "index" / "image.json").read_text())
    assert info["kind"] == "ivfflat" and info["target"]["met"] is False and len(info["trials"]) == 1
    for bad in (["--recall", "1.5"], ["--max-latency", "0"], ["--queries", "0"]):
        assert main(["index", str(tmp_path / "emb"), *bad]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    _vector_collection(tmp_path / "small", 100, 32, 100)
    assert main(["index", str(tmp_path / "small"), "--kind", "ivfpq", "--nlist", "4"]) == 2
    assert "an ivfpq index needs at least 256 rows to train its codes; this has 100" in capsys.readouterr().err
