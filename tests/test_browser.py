"""The search page in a real browser: headless Chromium (Debian's) driven by Playwright, against
`cliplab serve`'s app on loopback. Types a query, sees result images, classifies an image; saves
screenshots under $CLIPLAB_TEST_ARTIFACTS (default ./test-artifacts)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from PIL import Image

import cliplab
from cliplab.search import Collection, Searcher, embed_collection, index_collection

from .conftest import natural_image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's own background traffic is refused on a closed network; these flags keep it quiet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if CHROMIUM is None:
    pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
uvicorn = pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    (root / "images").mkdir()
    rows = ["image\tcaption"]
    for i in range(12):
        Image.fromarray(natural_image(80, 96, seed=200 + i)).save(root / "images" / f"{i:02d}.jpg")
        rows.append(f"{i:02d}.jpg\ta test photo, number {i}")
    (root / "captions.tsv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-ViT/8@32px"), root / "model.safetensors")
    model = cliplab.load_model(root / "model.safetensors")
    embed_collection(
        root / "captions.tsv", root / "emb", model, str(root / "model.safetensors"), workers=0, progress=False
    )
    index_collection(Collection.open(root / "emb"))

    with _serving(root / "emb") as url:
        yield url, root


@contextmanager
def _serving(collection: Path):
    """`cliplab serve`'s app over `collection`, on a free loopback port, in a thread; yields its URL."""
    from cliplab.serve import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(Searcher.open(collection)), host="127.0.0.1", port=port, log_level="warning")
    service = uvicorn.Server(config)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not service.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        service.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def video_server(tmp_path_factory):
    """A collection of a photo and a VP9 video of three shots (0-3, 3-5 and 5-8 s)."""
    pytest.importorskip("av")
    from cliplab.data.video import write_video

    root = tmp_path_factory.mktemp("video")
    (root / "library").mkdir()
    Image.fromarray(natural_image(80, 96, seed=300)).save(root / "library" / "photo.jpg")
    shots = [(301, 3), (302, 2), (303, 3)]
    frames = [natural_image(64, 96, seed=seed) for seed, seconds in shots for _ in range(10 * seconds)]
    write_video(root / "library" / "shots.webm", frames, 10, "libvpx-vp9")  # a codec every Chromium plays
    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-ViT/8@32px"), root / "model.safetensors")
    model = cliplab.load_model(root / "model.safetensors")
    embed_collection(root / "library", root / "emb", model, str(root / "model.safetensors"), workers=0, progress=False)
    with _serving(root / "emb") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _artifacts() -> Path:
    folder = Path(os.environ.get("CLIPLAB_TEST_ARTIFACTS", "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_typing_a_query_shows_result_images(server, browser):
    url, _ = server
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url + "/")
    page.wait_for_function("document.getElementById('info').textContent.includes('12 items')")
    page.fill("#query", "a test photo")
    page.press("#query", "Enter")
    page.wait_for_selector("#results .card img")
    # every result image has actually loaded from /items/{id}/thumbnail
    page.wait_for_function(
        "[...document.querySelectorAll('#results .card img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    cards = page.locator("#results .card")
    assert cards.count() == 12  # k = 24 on the page; the collection holds 12
    assert "a test photo, number" in cards.first.inner_text()
    assert "results in" in page.inner_text("#status")
    page.screenshot(path=str(_artifacts() / "search-page.png"), full_page=True)

    # where the query matches: POST /locate, drawn as a heatmap over the (now whole) thumbnail
    cards.first.locator("button.where").click()
    page.wait_for_selector("#results .card .frame.located canvas.heat")
    painted = page.evaluate(
        """() => {
          const canvas = document.querySelector('#results .card canvas.heat');
          const image = canvas.parentElement.querySelector('img').getBoundingClientRect();
          const box = canvas.getBoundingClientRect();
          const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let opaque = 0;
          for (let i = 3; i < pixels.length; i += 4) opaque += pixels[i] === 255;
          return {cells: canvas.width * canvas.height, opaque, peak: canvas.dataset.peak,
                  covers: Math.abs(box.width - image.width) < 1 && Math.abs(box.height - image.height) < 1};
        }"""
    )
    assert painted["cells"] == 16 and painted["opaque"] == 16 and painted["covers"]  # 4 x 4 cells over the image
    assert cards.first.locator("button.where").inner_text() == f"peak {painted['peak']}"
    page.screenshot(path=str(_artifacts() / "search-page-located.png"), full_page=True)
    page.close()


def test_an_image_query_and_zero_shot_panel(server, browser):
    url, root = server
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url + "/")
    page.set_input_files("#search-file", str(root / "images" / "03.jpg"))  # what a drop or a click hands over
    page.wait_for_function("document.querySelectorAll('#results .card img').length > 0")
    assert "number 3" in page.locator("#results .card").first.inner_text()  # the image itself comes first

    page.set_input_files("#classify-file", str(root / "images" / "05.jpg"))
    page.fill("#labels", "dog, cat, red car")
    page.click("#classify-button")
    page.wait_for_selector("#bars .bar")
    bars = page.locator("#bars .bar")
    assert bars.count() == 3
    assert {bars.nth(i).inner_text().split(":")[0] for i in range(3)} == {"dog", "cat", "red car"}
    page.screenshot(path=str(_artifacts() / "zero-shot-panel.png"), full_page=True)
    page.close()


def test_clicking_a_video_result_plays_it_from_the_segments_start(video_server, browser):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(video_server + "/")
    page.wait_for_function("document.getElementById('info').textContent.includes('4 items')")
    page.fill("#query", "a short film")
    page.press("#query", "Enter")
    page.wait_for_selector("#results .card .frame.playable")
    cards = page.locator("#results .card")
    assert cards.count() == 4  # the photo and the video's three shots
    texts = [cards.nth(i).inner_text() for i in range(4)]
    assert sum("shots.webm @ 00:00:03–00:00:05" in text for text in texts) == 1
    second = page.locator("#results .card .frame.playable[title='play shots.webm from 00:00:03']")
    second.click()  # the thumbnail becomes the video, which seeks to the shot's start
    played = page.wait_for_function(  # the moment the player has moved: where it went, and where it should
        """() => {
          const v = document.querySelector('#results video');
          if (!v || v.readyState < 1 || v.currentTime === 0) return null;
          return {time: v.currentTime, start: Number(v.dataset.start), error: v.error && v.error.code};
        }"""
    ).json_value()
    assert played["error"] is None and played["start"] == pytest.approx(3.0, abs=0.11)
    assert abs(played["time"] - played["start"]) <= 0.5
    page.screenshot(path=str(_artifacts() / "search-page-video.png"), full_page=True)
    page.close()
