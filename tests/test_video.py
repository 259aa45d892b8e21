"""Videos as sources: frames sampled at a rate, static shots folded into one segment with the right times,
bad files skipped and listed, embed -> index -> search -> serve with times, and resuming video by video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab
from cliplab.cli import main
from cliplab.data import VideoItem, open_source
from cliplab.errors import BadSample, SourceError
from cliplab.search import Collection, Searcher, embed_collection

from .conftest import natural_image, saved_model

av = pytest.importorskip("av")
pytest.importorskip("faiss")
from cliplab.data.video import frame_at, sample_frames, write_video  # noqa: E402
from cliplab.encode.videos import embed_video  # noqa: E402

RATE = 10  # frames a second in the test videos
SCENES = [(1, 3.0), (2, 2.0), (3, 3.0)]  # (picture's seed, seconds held): shots at 0-3, 3-5 and 5-8 s
CODECS = {"mp4": "libx264", "webm": "libvpx-vp9", "avi": "mpeg4"}


def scenes_video(path: Path, scenes=SCENES, size=(64, 96)) -> Path:
    """A video of still pictures, each held for its seconds."""
    frames = [natural_image(*size, seed=seed) for seed, seconds in scenes for _ in range(round(seconds * RATE))]
    write_video(path, frames, RATE, CODECS[path.suffix[1:]])
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return saved_model(tmp_path_factory, "tiny-ViT/8@32px")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Two photos, two videos (H.264 and VP9) and the ways a video file can be bad."""
    folder = tmp_path_factory.mktemp("library")
    for i in range(2):
        Image.fromarray(natural_image(48, 64, seed=100 + i)).save(folder / f"photo{i}.jpg")
    scenes_video(folder / "holiday.mp4")
    scenes_video(folder / "talk.webm", [(4, 2.0), (5, 2.0)])
    whole = scenes_video(folder.parent / "whole.webm", [(6, 4.0), (7, 4.0)]).read_bytes()
    (folder / "cut.webm").write_bytes(whole[: len(whole) * 6 // 10])  # stops part of the way: kept, listed
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska" * 20)
    audio_only(folder / "sound.mp4")
    return folder


@pytest.mark.parametrize("suffix", ["mp4", "webm", "avi"])
def test_a_still_shot_is_one_segment_with_its_times_and_the_models_embedding(tmp_path, checkpoint, suffix):
    path = scenes_video(tmp_path / f"scenes.{suffix}")
    frames = list(sample_frames(path, fps=2))
    assert [f.time for f in frames] == pytest.approx([i / 2 for i in range(16)], abs=0.11)
    model, preprocess = cliplab.load(checkpoint)
    video = embed_video(model, path, fps=2, fold=0.95)
    assert video.starts == pytest.approx([0, 3, 5], abs=0.11) and video.ends == pytest.approx([3, 5, 8], abs=0.11)
    assert video.segment_frames == [6, 4, 6] and video.sampled == 16 and video.problem is None
    assert (video.width, video.height, video.duration) == (96, 64, pytest.approx(8.0, abs=0.11))
    with torch.no_grad():  # the frames' own embeddings, as any image's: a segment is the mean of its frames'
        each = model.encode_image(torch.stack([preprocess(f.image) for f in frames]), normalize=True)
    for segment, (a, b) in enumerate([(0, 6), (6, 10), (10, 16)]):
        expected = torch.nn.functional.normalize(each[a:b].mean(0), dim=0)
        torch.testing.assert_close(video.features[segment], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(video.vector, torch.nn.functional.normalize(each.mean(0), dim=0), atol=1e-5, rtol=0)
    # the frame a segment shows, read back by seeking (as thumbnails are), is the sampled one
    shown = np.asarray(frame_at(path, video.frames[1]), dtype=np.int16)
    assert np.abs(shown - np.asarray(frames[6].image, dtype=np.int16)).max() == 0

    every = embed_video(model, path, fps=2, fold=1.0)  # 1: every sampled frame its own segment
    assert len(every.starts) == 16 and every.ends[-1] == pytest.approx(8.0, abs=0.11)
    torch.testing.assert_close(every.features, each, atol=1e-5, rtol=0)


def test_sparse_sampling_seeks_and_keeps_the_same_frames(tmp_path):
    path = tmp_path / "long.mp4"
    frames = [np.full((32, 32, 3), 8 * (i // RATE), np.uint8) for i in range(30 * RATE)]  # shade = second
    write_video(path, frames, RATE, "libx264", g="10")  # a keyframe a second
    sampled = list(sample_frames(path, fps=0.2))  # every 5 s: seeks past the 4 keyframes between
    assert [f.time for f in sampled] == pytest.approx([0, 5, 10, 15, 20, 25], abs=0.01)
    assert [int(np.asarray(f.image).mean() / 8 + 0.5) for f in sampled] == [0, 5, 10, 15, 20, 25]


def test_bad_video_files_are_skipped_and_listed(tmp_path, library, checkpoint):
    model = cliplab.load_model(checkpoint)
    reasons = {}
    for name in ("empty.mp4", "garbage.mkv", "sound.mp4"):
        with pytest.raises(BadSample) as caught:
            embed_video(model, library / name)
        reasons[name] = caught.value.reason
    assert reasons == {"empty.mp4": "empty file", "garbage.mkv": "not a video", "sound.mp4": "no video stream"}
    with pytest.raises(BadSample, match="too many pixels"):
        embed_video(model, library / "holiday.mp4", max_pixels=96 * 64 - 1)
    cut = embed_video(model, library / "cut.webm")  # the part before the damage is kept, and said
    assert cut.problem is not None and cut.problem.reason == "video cut off" and 1 <= len(cut.starts)
    with pytest.raises(BadSample, match="only `cliplab embed` reads videos"):
        VideoItem("holiday.mp4", path=str(library / "holiday.mp4")).open_image()
    # every other command reads images: a video in a folder is listed as left out, one video refused
    source = open_source(library)
    assert ("holiday.mp4", "a video (`cliplab embed` reads videos; this command takes images)") in source.problems
    assert [item.key for item in source.items] == ["photo0.jpg", "photo1.jpg"]
    with pytest.raises(SourceError, match="is a video"):
        open_source(library / "holiday.mp4")


def test_image_commands_skip_a_video_saying_which_command_reads_it(library, checkpoint, capsys):
    video, photo = str(library / "holiday.mp4"), str(library / "photo0.jpg")
    assert main(["classify", video, photo, "--labels", "a,b", "--checkpoint", str(checkpoint)]) == 0
    said = capsys.readouterr()
    assert "holiday.mp4: skipped: a video: only `cliplab embed` reads videos" in said.out + said.err


def test_a_failure_while_encoding_stops_the_decoding_thread(tmp_path, checkpoint):
    import threading

    path = scenes_video(tmp_path / "scenes.mp4")
    model = cliplab.load_model(checkpoint)
    calls = []

    def failing(pixels, normalize=False):
        calls.append(len(pixels))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return torch.nn.functional.normalize(torch.ones(len(pixels), model.embed_dim), dim=1)

    model.encode_image = failing
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="out of memory"):
        embed_video(model, path, fps=10, batch_size=4)  # 80 frames; the thread had up to 8 more decoded
    assert calls == [4, 4] and threading.active_count() == before  # the decoding thread has ended


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_embed_index_search_and_serve_a_folder_of_photos_and_videos(tmp_path, library, checkpoint, capsys):
    out = tmp_path / "emb"
    assert main(["embed", str(library), "--checkpoint", str(checkpoint), "--out", str(out), "--fps", "2"]) == 0
    said = capsys.readouterr().out
    assert "2 images and 6 videos" in said and "segments of 3 videos" in said
    skipped = {s["key"]: s for s in map(json.loads, (out / "skipped.jsonl").read_text().splitlines())}
    assert sorted(skipped) == ["cut.webm", "empty.mp4", "garbage.mkv", "sound.mp4"]
    assert skipped["cut.webm"].get("partial") is True and "partial" not in skipped["empty.mp4"]

    collection = Collection.open(out)
    rows = [collection.item(i) for i in range(len(collection))]
    segments = [(r.start, r.end) for r in rows if r.video == "holiday.mp4"]
    assert [t for pair in segments for t in pair] == pytest.approx([0, 3, 3, 5, 5, 8], abs=0.11)
    assert [r.key for r in rows if r.video is None] == ["photo0.jpg", "photo1.jpg"]
    first = next(r for r in rows if r.video == "holiday.mp4")
    assert first.key == "holiday.mp4#t=0,3" and first.public()["start"] == 0 and "path" not in first.public()
    assert [v.key for v in collection.videos] == ["cut.webm", "holiday.mp4", "talk.webm"]
    assert collection.video_vectors.shape == (3, collection.dim)

    assert main(["index", str(out), "--kind", "flat"]) == 0
    capsys.readouterr()
    # a frame of the second shot, saved as a picture, finds that shot first, printed with its times
    frame = tmp_path / "frame.png"
    frame_at(library / "holiday.mp4", 4.0).save(frame)
    assert main(["search", str(out), "--image", str(frame), "-k", "3"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f"{library / 'holiday.mp4'} @ 00:00:03-00:00:05") and " 1.0000 " in first
    assert main(["search", str(out), "--image", str(frame), "-k", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["video"], record["start"], record["end"]) == ("holiday.mp4", pytest.approx(3, abs=0.11), 5)
    assert main(["search", str(out), "--image", str(frame), "--videos", "--json"]) == 0
    ranked = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    searcher = Searcher.open(out)
    vector = searcher.image_vector(Image.open(frame))
    scores = collection.video_vectors @ vector  # each video's own vector: the mean of its frames'
    assert [h.id for h in searcher.search_videos(vector)] == np.argsort(-scores).tolist()
    assert [r["key"] for r in ranked] == [collection.videos[i].key for i in np.argsort(-scores)]
    assert [r["score"] for r in ranked] == pytest.approx(sorted(scores, reverse=True), abs=1e-4)
    assert {r["key"]: r["duration"] for r in ranked}["holiday.mp4"] == pytest.approx(8, abs=0.11)
    assert main(["search", str(out), "a dog", "--videos", "--fold-duplicates"]) == 2

    from fastapi.testclient import TestClient

    from cliplab.serve import create_app

    client = TestClient(create_app(searcher))
    files = {"image": ("frame.png", frame.read_bytes(), "image/png")}
    hit = client.post("/search", files=files, data={"k": "1"}).json()["results"][0]
    assert (hit["video"], hit["start"], hit["end"]) == ("holiday.mp4", pytest.approx(3, abs=0.11), 5)
    assert hit["media"] == f"/items/{hit['id']}/video" and str(library) not in json.dumps(hit)
    whole = client.get(hit["media"])
    assert whole.status_code == 200 and whole.content == (library / "holiday.mp4").read_bytes()
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    part = client.get(hit["media"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert "holiday" not in part.headers.get("content-disposition", "")
    thumbnail = client.get(hit["thumbnail"])  # the segment's own frame
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    photo = next(r.id for r in rows if r.video is None)
    assert client.get(f"/items/{photo}/video").status_code == 404
    assert client.get(f"/items/{len(rows)}/video").status_code == 404
    assert client.get(f"/items/{hit['id']}").json()["video"] == "holiday.mp4"


def test_an_interrupted_embed_resumes_video_by_video_to_the_same_files(tmp_path, library, checkpoint):
    model = cliplab.load_model(checkpoint)

    def embed(out: Path, **options):
        return embed_collection(library, out, model, str(checkpoint), progress=False, workers=0, fps=2, **options)

    embed(tmp_path / "whole")

    class Killed(Exception):
        pass

    def kill(shard: int) -> None:
        if shard == 2:  # after cut.webm, empty.mp4 and garbage.mkv (one shard each; the photos share one)
            raise Killed

    with pytest.raises(Killed):
        embed(tmp_path / "resumed", on_shard_done=kill)
    report = embed(tmp_path / "resumed")
    assert report.resumed_shards == 3 and report.shards == 7 and report.videos == 3
    whole, resumed = _files(tmp_path / "whole"), _files(tmp_path / "resumed")
    del whole["runs.jsonl"], resumed["runs.jsonl"]
    assert whole.keys() == resumed.keys() and [name for name in whole if whole[name] != resumed[name]] == []
    with pytest.raises(SourceError, match="sampled otherwise"):  # another rate would mix two samplings
        embed(tmp_path / "resumed", fold=0.9)


def test_bad_video_options_are_one_line_errors(tmp_path, library, checkpoint, capsys):
    for option, value in (("--fps", "0"), ("--fps", "nan"), ("--fold", "1.5"), ("--fold", "0")):
        code = main(
            ["embed", str(library), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x"), option, value]
        )
        assert code == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and option in error
