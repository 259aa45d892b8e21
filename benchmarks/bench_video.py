"""Video search: speed, memory and retrieval of `cliplab embed` on videos.

    python benchmarks/bench_video.py speed                 # 720p H.264 at 1 fps with ViT-B/32: x real time
    python benchmarks/bench_video.py memory                # peak RSS embedding 5- and 30-minute videos
    python benchmarks/bench_video.py synthetic --checkpoint SYNTHETIC.safetensors [--fold 0.999]
    python benchmarks/bench_video.py slideshow --checkpoint LIT.safetensors

- speed: a 2-minute 1280x720 30 fps H.264 video (Flickr8k photos, slowly panning, with film grain, ~2 Mbit/s),
  embedded at 1 fps by ViT-B/32 (random weights: the same arithmetic as OpenAI's) through `embed_video`,
  decoding included; alternated with decoding alone and the model alone on the same frames, 3 rounds, medians.
- memory: `cliplab embed` of a folder holding one 720p video of 5, then 30 minutes (10 fps), each in a
  fresh process; the peak resident memory of each (ru_maxrss).
- synthetic: 8 videos (4 H.264 .mp4, 4 VP9 .webm), each 9 scenes of the synthetic world held for 3 to 9 s,
  every scene a colour-shape pair of its own; each scene's `describe` text is a query against every
  segment of the collection; a hit is rank 1 in the scene's own video with a start within 1 s of the scene's.
- slideshow: Flickr8k dev photos, 5 s each, alternately still (a cut) and slowly panning, in one H.264
  video; each photo's 5 captions are queries; R@K: the photo's own interval among the top K segments
  (a segment counts when it overlaps the photo's interval by at least half of the segment).

Needs the `video` extra and, for speed and slideshow, Flickr8k in ../shared/data (see its README for where
Flickr8k comes from: research use only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import cliplab
from cliplab.data.video import sample_frames, video_info, write_video
from cliplab.encode import embed_texts
from cliplab.encode.videos import embed_video
from cliplab.transforms import model_transform
from common import SHARED, machine

FLICKR = SHARED / "flickr8k"


def panning_frames(photos: list[Path], seconds_each: float, fps: int, size=(1280, 720), grain: int = 0, seed: int = 0):
    """Each photo enlarged past the frame and panned across for `seconds_each`; optional film grain."""
    width, height = size
    rng = np.random.default_rng(seed)
    noise = [rng.integers(-grain, grain + 1, (height, width, 3), dtype=np.int16) for _ in range(7)] if grain else []
    per = round(seconds_each * fps)
    for i, photo in enumerate(photos):
        with Image.open(photo) as image:
            big = np.asarray(image.convert("RGB").resize((width + 320, height + 240), Image.Resampling.BICUBIC))
        for f in range(per):
            p = f / per
            frame = big[int(p * 240) : int(p * 240) + height, int(p * 320) : int(p * 320) + width]
            if grain:
                frame = np.clip(frame + noise[(i * per + f) % len(noise)], 0, 255).astype(np.uint8)
            yield frame


def speed(args) -> None:
    torch.manual_seed(0)
    model = cliplab.create_model("ViT-B/32").eval()
    folder = Path(tempfile.mkdtemp(prefix="bench-video-"))
    video = folder / "720p.mp4"
    photos = sorted((FLICKR / "images").glob("*.jpg"))[: args.seconds // 5]
    write_video(video, panning_frames(photos, 5, 30, grain=args.grain), 30, "libx264", crf="23", preset="veryfast")
    info = video_info(video)
    mbps = video.stat().st_size * 8 / info.duration / 1e6
    print(
        f"{machine()}; video: {info.width}x{info.height} {info.frame_rate:.0f} fps {info.codec}, "
        f"{info.duration:.0f} s, {mbps:.2f} Mbit/s"
    )
    transform = model_transform(model)
    pixels = torch.stack([transform(f.image) for f in sample_frames(video, 1.0)])

    def decode():
        for frame in sample_frames(video, 1.0):
            transform(frame.image)

    def encode():
        with torch.no_grad():
            for batch in pixels.split(32):
                model.encode_image(batch, normalize=True)

    def whole():
        embed_video(model, video, fps=1.0)

    times = {"embed_video (decode + model, overlapped)": [], "decode + preprocess only": [], "model only": []}
    runs = list(zip(times, (whole, decode, encode)))
    runs[0][1]()  # warm up
    for round in range(3):
        for name, fn in runs if round % 2 == 0 else runs[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    for name, ts in times.items():
        median = statistics.median(ts)
        print(
            f"{name:42s} {median:6.2f} s  ({info.duration / median:5.1f}x real time; runs {', '.join(f'{t:.2f}' for t in ts)})"
        )


def memory(args) -> None:
    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench-video-memory-"))
    torch.manual_seed(0)
    checkpoint = folder / "vit-b-32.safetensors"
    cliplab.save_checkpoint(cliplab.create_model("ViT-B/32"), checkpoint)
    photos = sorted((FLICKR / "images").glob("*.jpg"))
    for minutes in args.minutes:
        video = folder / f"{minutes}min" / "long.mp4"
        if not video.is_file():  # kept, so that a second run measures without writing them again
            video.parent.mkdir(parents=True, exist_ok=True)
            write_video(video, panning_frames(photos[: minutes * 6], 10, 10), 10, "libx264", preset="ultrafast")
        shutil.rmtree(video.parent / "emb", ignore_errors=True)
        command = [sys.executable, __file__, "_rss", str(video.parent), str(checkpoint)]
        out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(
            f"{minutes:3d} min 720p video ({video.stat().st_size / 1e6:.0f} MB): model loaded {out['loaded_mb']:.0f} MB; "
            f"peak while embedding {out['peak_mb']:.0f} MB (+{out['peak_mb'] - out['loaded_mb']:.0f}); "
            f"{out['segments']} segments in {out['seconds']:.0f} s ({minutes * 60 / out['seconds']:.1f}x real time)"
        )


def _status(field: str) -> float:
    """A /proc/self/status memory figure (VmRSS, VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _rss(args) -> None:
    from cliplab.search import embed_collection

    model = cliplab.load_model(args.checkpoint)  # loading peaks higher than embedding: measured apart
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the memory now in use
    loaded = _status("VmRSS")
    started = time.perf_counter()
    report = embed_collection(args.folder, Path(args.folder) / "emb", model, args.checkpoint, progress=False)
    seconds = time.perf_counter() - started
    print(json.dumps({"loaded_mb": loaded, "peak_mb": _status("VmHWM"), "segments": report.rows, "seconds": seconds}))


def synthetic(args) -> None:
    from cliplab.data.synthetic import SyntheticWorld
    from cliplab.search import Collection, Searcher, embed_collection

    world = SyntheticWorld()
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="bench-video-synthetic-"))
    (folder / "videos").mkdir()
    pairs, truth, stills, index = set(), [], [], 0
    for v in range(8):
        scenes = []
        while len(scenes) < 9:  # 72 scenes: the world has 75 seen colour-shape pairs
            scene = world.scene(index, seed=11, split="train", objects=1)
            index += 1
            pair = (scene.things[0].colour, scene.things[0].shape)
            if pair not in pairs:
                pairs.add(pair)
                scenes.append((scene, int(rng.integers(3, 10))))
        suffix, codec = ("mp4", "libx264") if v % 2 == 0 else ("webm", "libvpx-vp9")
        fast = {"deadline": "realtime", "cpu-used": "8"} if codec == "libvpx-vp9" else {"preset": "veryfast"}
        name = f"scenes{v}.{suffix}"
        frames, start = [], 0
        for scene, seconds in scenes:
            image = np.asarray(world.render(scene, args.size))
            frames += [image] * (seconds * 25)
            stills.append(image)
            truth.append((world.describe(scene), name, start, start + seconds))
            start += seconds
        write_video(folder / "videos" / name, frames, 25, codec, **fast)
    model = cliplab.load_model(args.checkpoint)
    started = time.perf_counter()
    embed_collection(folder / "videos", folder / "emb", model, args.checkpoint, progress=False, fold=args.fold)
    seconds = time.perf_counter() - started
    searcher = Searcher(Collection.open(folder / "emb"), model)
    hits, exact = 0, 0
    for (_, name, start, end), vector in zip(truth, searcher.text_vectors([t[0] for t in truth])):
        item = searcher.collection.item(searcher.search(vector, 1)[0].id)
        if item.video == name and abs(item.start - start) <= 1:
            hits += 1
            exact += abs(item.start - start) < 1e-6 and abs(item.end - end) < 1e-6
    stills = torch.stack([model_transform(model)(Image.fromarray(image)) for image in stills])
    with torch.no_grad():  # the same scenes as still images, not videos: the model's own share of the misses
        images = model.encode_image(stills, normalize=True).numpy()
    still_hits = int(
        (np.argmax(searcher.text_vectors([t[0] for t in truth]) @ images.T, 1) == np.arange(len(truth))).sum()
    )
    segments = len(searcher.collection)
    print(
        f"{len(truth)} scenes in 8 videos ({sum(t[3] - t[2] for t in truth)} s, {args.size}px, 4 H.264 + 4 VP9), "
        f"{segments} segments (fold {args.fold}), embedded in {seconds:.1f} s"
    )
    print(f"rank 1 with start within 1 s: {hits}/{len(truth)} = {hits / len(truth):.1%} (start and end exact: {exact})")
    print(
        f"the same scenes as still images, text to image rank 1: {still_hits}/{len(truth)} = {still_hits / len(truth):.1%}"
    )


def slideshow(args) -> None:
    import csv

    from cliplab.search import Collection, Searcher, embed_collection

    rows = list(csv.DictReader(open(FLICKR / "captions.tsv"), delimiter="\t"))
    photos = sorted({r["image"] for r in rows if r["split"] == "dev"})[: args.photos]
    captions = {p: [r["caption"] for r in rows if r["image"] == p] for p in photos}
    folder = Path(tempfile.mkdtemp(prefix="bench-video-slideshow-"))
    (folder / "videos").mkdir()

    def frames():
        for i, photo in enumerate(photos):
            with Image.open(FLICKR / "images" / photo) as image:
                big = np.asarray(image.convert("RGB").resize((480, 360), Image.Resampling.BICUBIC))
            for f in range(5 * 25):  # 384x288 of 480x360: odd photos pan slowly across, even ones are still
                x, y = (f * 96 // 125, f * 72 // 125) if i % 2 else (48, 36)
                yield big[y : y + 288, x : x + 384]

    write_video(folder / "videos" / "slideshow.mp4", frames(), 25, "libx264")
    model = cliplab.load_model(args.checkpoint)
    started = time.perf_counter()
    embed_collection(folder / "videos", folder / "emb", model, args.checkpoint, progress=False, fold=args.fold)
    seconds = time.perf_counter() - started
    searcher = Searcher(Collection.open(folder / "emb"), model)
    items = [searcher.collection.item(i) for i in range(len(searcher.collection))]
    ranks = []
    queries = [(i, c) for i, p in enumerate(photos) for c in captions[p]]
    vectors = np.concatenate(
        [embed_texts(model, [c for _, c in queries[s : s + 256]]).numpy() for s in range(0, len(queries), 256)]
    )
    scores = vectors @ searcher.collection.image_vectors.T
    for (i, _), row in zip(queries, scores):
        start, end = 5 * i, 5 * (i + 1)
        own = [max(0, min(end, it.end) - max(start, it.start)) >= (it.end - it.start) / 2 for it in items]
        order = np.argsort(-row)
        ranks.append(next(r for r, j in enumerate(order) if own[j]) + 1)
    ranks = np.array(ranks)
    print(
        f"{len(photos)} Flickr8k dev photos, 5 s each ({len(photos) * 5} s), {len(items)} segments "
        f"(fold {args.fold}), embedded in {seconds:.1f} s; {len(queries)} caption queries"
    )
    print(
        "R@1 {:.1%}  R@5 {:.1%}  R@10 {:.1%}  median rank {:.0f}".format(
            *(np.mean(ranks <= k) for k in (1, 5, 10)), np.median(ranks)
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--seconds", type=int, default=120)
    p.add_argument("--grain", type=int, default=10, help="film grain: more makes a higher bitrate")
    p = sub.add_parser("memory")
    p.add_argument("--minutes", type=int, nargs="+", default=[5, 30])
    p.add_argument("--folder", help="where the videos are written (and kept, for another run)")
    p = sub.add_parser("_rss")
    p.add_argument("folder")
    p.add_argument("checkpoint")
    p = sub.add_parser("synthetic")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--fold", type=float, default=0.95)
    p.add_argument("--size", type=int, default=128)
    p = sub.add_parser("slideshow")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--photos", type=int, default=200)
    p.add_argument("--fold", type=float, default=0.95)
    args = parser.parse_args()
    globals()[args.task](args)


if __name__ == "__main__":
    main()
