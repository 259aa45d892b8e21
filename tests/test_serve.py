"""The search service through FastAPI's test client: every route, every limit answered with its 4xx,
and a schema-driven fuzz of the OpenAPI spec (schemathesis) that must find no 5xx."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab
from cliplab.search import Collection, Searcher, embed_collection, index_collection

from .conftest import natural_image

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from cliplab.serve import Limits, create_app  # noqa: E402

LIMITS = Limits(max_body_bytes=300_000, max_pixels=1_000_000, max_k=20, max_text_chars=200, max_labels=5)


@pytest.fixture(scope="module")
def collection_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    (root / "images").mkdir()
    rows = ["image\tcaption"]
    for i in range(24):
        Image.fromarray(natural_image(40 + i, 56, seed=100 + i)).save(root / "images" / f"{i:02d}.jpg")
        rows.append(f"{i:02d}.jpg\tphoto number {i}")
    (root / "captions.tsv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    cliplab.save_checkpoint(cliplab.create_model("tiny-ViT/8@32px"), root / "model.safetensors")
    model = cliplab.load_model(root / "model.safetensors")
    embed_collection(
        root / "captions.tsv", root / "emb", model, str(root / "model.safetensors"), workers=0, progress=False
    )
    index_collection(Collection.open(root / "emb"), "flat")
    return root / "emb"


@pytest.fixture(scope="module")
def searcher(collection_dir):
    return Searcher.open(collection_dir)


@pytest.fixture(scope="module")
def client(searcher):
    return TestClient(create_app(searcher, LIMITS), raise_server_exceptions=False)


def _png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(natural_image(height, width, seed=seed)).save(buffer, "PNG")
    return buffer.getvalue()


def test_health_items_and_thumbnails(client, searcher):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["items"] == 24 and health["captions"] is True
    item = client.get("/items/7").json()
    images = {"video": None, "start": None, "end": None}  # an image is no video's segment
    assert item == images | searcher.collection.item(7).public() and "path" not in item
    thumbnail = client.get("/items/7/thumbnail")
    assert thumbnail.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumbnail.content)) as image, searcher.collection.open_image(7) as original:
        assert image.size == original.size  # small originals are not enlarged
    for bad in ("/items/24", "/items/-1", "/items/24/thumbnail"):
        assert client.get(bad).status_code == 404, bad
    assert client.get("/items/../../etc/passwd").status_code == 404
    assert client.get("/items/abc").status_code == 422
    page = client.get("/")
    assert page.status_code == 200 and "cliplab search" in page.text and 'id="query"' in page.text


def test_search_by_text_image_and_embedding_equals_the_searcher(client, searcher):
    by_text = client.post("/search", json={"text": "photo number 3", "k": 5}).json()
    expected = searcher.search(searcher.text_vector("photo number 3"), 5)
    assert [r["id"] for r in by_text["results"]] == [h.id for h in expected] and by_text["query"] == "text"
    assert by_text["results"][0]["thumbnail"] == f"/items/{expected[0].id}/thumbnail"

    with searcher.collection.open_image(11) as image:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
    by_image = client.post("/search", files={"image": ("q.png", buffer.getvalue(), "image/png")}, data={"k": "3"})
    assert by_image.status_code == 200 and by_image.json()["results"][0]["id"] == 11

    vector = searcher.collection.image_vectors[5].tolist()
    by_vector = client.post("/search", json={"embedding": vector, "k": 2}).json()
    assert by_vector["results"][0]["id"] == 5 and len(by_vector["results"]) == 2
    huge = client.post("/search", json={"embedding": [x * 1e300 for x in vector], "k": 2}).json()  # any scale
    assert [r["id"] for r in huge["results"]] == [r["id"] for r in by_vector["results"]]

    embedded = client.post("/embed", json={"text": "photo number 3"}).json()
    np.testing.assert_allclose(embedded["embedding"], searcher.text_vector("photo number 3"), atol=1e-6)
    image_embedding = client.post("/embed", files={"image": ("q.png", buffer.getvalue(), "image/png")}).json()
    assert len(image_embedding["embedding"]) == image_embedding["dim"] == searcher.dim


def test_classify_returns_probabilities_for_every_label(client):
    answer = client.post("/classify", files={"image": ("x.png", _png(), "image/png")}, data={"labels": "dog, cat\ncar"})
    assert answer.status_code == 200
    labels = answer.json()["labels"]
    assert sorted(item["label"] for item in labels) == ["car", "cat", "dog"]
    assert abs(sum(item["probability"] for item in labels) - 1) < 1e-5
    assert [item["probability"] for item in labels] == sorted((item["probability"] for item in labels), reverse=True)


def _bomb() -> bytes:
    """A small PNG that declares 2,000 x 2,000 pixels: over LIMITS.max_pixels."""
    buffer = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "request_args, status",
    [
        ({"json": {"text": "x" * 201}}, 422),  # text length
        ({"json": {"text": ""}}, 422),
        ({"json": {"text": "a", "k": 21}}, 422),  # k above max_k
        ({"json": {"text": "a", "k": 0}}, 422),
        ({"json": {"text": "a", "embedding": [0.0] * 128}}, 422),  # both
        ({"json": {}}, 422),  # neither
        ({"json": {"embedding": [1.0, 2.0]}}, 422),  # wrong dimension
        ({"json": {"embedding": [0.0] * 128}}, 422),  # all zeros
        ({"content": b'{"text": "a", ', "headers": {"content-type": "application/json"}}, 422),  # malformed JSON
        ({"content": b'{"embedding": [NaN]}', "headers": {"content-type": "application/json"}}, 422),
        ({"content": b"a dog", "headers": {"content-type": "text/plain"}}, 415),  # unsupported body type
        ({"files": {"image": ("x.txt", b"not an image", "text/plain")}}, 415),  # unsupported file format
        ({"files": {"image": ("x.png", b"", "image/png")}}, 422),  # empty upload
        ({"files": {"image": ("x.png", _bomb(), "image/png")}}, 413),  # decompression bomb
        ({"files": {"image": ("x.png", b"x" * 400_000, "image/png")}}, 413),  # upload size
        ({"files": {"image": ("x.png", _png(), "image/png")}, "data": {"k": "many"}}, 422),
        ({"files": {"image": ("x.png", _png(), "image/png")}, "data": {"k": "500"}}, 422),
        ({"files": {"other": ("x.png", _png(), "image/png")}}, 422),  # no image field
        ({"content": b"--b\r\nbroken", "headers": {"content-type": "multipart/form-data"}}, 400),  # no boundary
    ],
)
def test_every_limit_is_a_clear_4xx(client, request_args, status):
    answer = client.post("/search", **request_args)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert detail and "Traceback" not in json.dumps(detail)


def test_classify_and_embed_limits(client):
    png = ("x.png", _png(), "image/png")
    assert client.post("/classify", files={"image": png}, data={"labels": " , "}).status_code == 422
    assert client.post("/classify", files={"image": png}, data={"labels": "a,b,c,d,e,f"}).status_code == 422
    assert (
        client.post("/classify", files={"image": png}, data={"labels": "a", "templates": "no slot"}).status_code == 422
    )
    assert client.post("/classify", data={"labels": "a"}).status_code == 422
    bomb = ("b.png", _bomb(), "image/png")
    assert client.post("/classify", files={"image": bomb}, data={"labels": "a,b"}).status_code == 413
    one = client.post("/classify", files={"image": png}, data={"labels": "dog"})  # nothing to choose among
    assert one.status_code == 422 and "at least two" in one.json()["detail"]
    assert client.post("/embed", json={"text": "y" * 201}).status_code == 422
    assert client.post("/embed", content=b"[1, 2", headers={"content-type": "application/json"}).status_code == 422
    huge = client.post("/embed", content=b"x" * 400_000, headers={"content-type": "application/json"})
    assert huge.status_code == 413


def test_an_unexpected_failure_is_a_500_without_a_stack_trace(searcher, monkeypatch):
    client = TestClient(create_app(searcher, LIMITS), raise_server_exceptions=False)

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(searcher, "text_vectors", broken)
    answer = client.post("/search", json={"text": "a dog"})
    assert answer.status_code == 500 and answer.json() == {"detail": "internal error"}
    assert "secret" not in answer.text


def test_schema_driven_fuzzing_finds_no_server_error(searcher):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    app = create_app(searcher, LIMITS)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    for operation in schema.get_all_operations():
        operation = operation.ok()

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call()
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.body, response.status_code, response.text[:200]))

        check()
    assert failures == []


def _concurrently(app, requests: list[tuple[str, dict]]) -> list:
    """The requests sent at once over one event loop, as concurrent clients would."""
    import asyncio

    import httpx

    async def send_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cliplab") as client:
            return await asyncio.gather(*(client.post(path, **kwargs) for path, kwargs in requests))

    return asyncio.run(send_all())


def test_batched_answers_equal_one_at_a_time_answers(searcher):
    """Concurrent /search, /embed and /classify requests are encoded together, and every answer is the
    one the server gives with batching off."""
    from cliplab.serve import Batching

    texts = [f"photo number {i}" for i in range(12)] + ["a much longer query about a photo with many words in it"]
    requests = [("/search", {"json": {"text": text, "k": 5}}) for text in texts]
    requests += [("/embed", {"json": {"text": text}}) for text in texts[:4]]
    requests += [
        ("/search", {"files": {"image": ("q.png", _png(seed=s), "image/png")}, "data": {"k": "5"}}) for s in range(6)
    ]
    requests += [
        ("/classify", {"files": {"image": ("q.png", _png(seed=s), "image/png")}, "data": {"labels": "a dog,a cat"}})
        for s in range(3)
    ]
    batched_app = create_app(searcher, LIMITS, Batching(max_batch=32, max_wait_ms=50))
    searcher._texts = type(searcher._texts)(searcher._texts.max_bytes)  # no text embedding from earlier tests
    batched = _concurrently(batched_app, requests)
    service = batched_app.state.service
    assert max(service.texts.batches) > 1 and max(service.images.batches) > 1  # they really were batched
    searcher._texts = type(searcher._texts)(searcher._texts.max_bytes)
    plain = _concurrently(create_app(searcher, LIMITS, Batching(enabled=False)), requests)
    for (path, _), one, other in zip(requests, batched, plain):
        assert one.status_code == other.status_code == 200, (path, one.text)
        a, b = one.json(), other.json()
        if path == "/search":
            assert [r["id"] for r in a["results"]] == [r["id"] for r in b["results"]]
            np.testing.assert_allclose(
                [r["score"] for r in a["results"]], [r["score"] for r in b["results"]], atol=1e-6
            )
        elif path == "/embed":
            np.testing.assert_allclose(a["embedding"], b["embedding"], atol=1e-6)
        else:
            assert [x["label"] for x in a["labels"]] == [x["label"] for x in b["labels"]]
            np.testing.assert_allclose(
                [x["probability"] for x in a["labels"]], [x["probability"] for x in b["labels"]], atol=1e-6
            )


def test_one_failing_input_fails_only_its_own_request(searcher, monkeypatch):
    from cliplab.serve import Batching

    real = searcher.text_vectors

    def poisoned(texts):
        if "poison" in texts:
            raise RuntimeError("this input breaks the tower")
        return real(texts)

    monkeypatch.setattr(searcher, "text_vectors", poisoned)
    app = create_app(searcher, LIMITS, Batching(max_batch=32, max_wait_ms=50))
    texts = ["photo number 1", "poison", "photo number 2", "photo number 5"]
    answers = _concurrently(app, [("/search", {"json": {"text": text, "k": 3}}) for text in texts])
    assert [a.status_code for a in answers] == [200, 500, 200, 200]
    assert max(app.state.service.texts.batches) == 4  # tried together first, then each alone


def test_locate_gives_the_texts_similarity_with_each_cell_and_keeps_the_limits(client, searcher):
    from cliplab.dense import local_embeddings
    from cliplab.dense.maps import dense_pixels

    answer = client.post("/locate", json={"id": 3, "text": "photo number 3"})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["id"] == 3 and data["grid"] == [4, 4] and len(data["scores"]) == 4  # tiny-ViT/8 at 32 px
    with searcher.collection.open_image(3) as image:
        pixels = dense_pixels(searcher.model, image.convert("RGB"))
    expected = local_embeddings(searcher.model, pixels)[0] @ torch.from_numpy(searcher.text_vector("photo number 3"))
    np.testing.assert_allclose(data["scores"], expected.numpy(), atol=1e-5)
    assert data["peak"] == pytest.approx(float(expected.max()), abs=1e-6)
    as_json = {"content-type": "application/json"}
    for request_args, status in [
        ({"json": {"id": 10_000, "text": "a"}}, 404),  # no such item
        ({"json": {"id": -1, "text": "a"}}, 422),
        ({"json": {"id": 1, "text": ""}}, 422),
        ({"json": {"id": 1, "text": "x" * 201}}, 422),  # text length
        ({"json": {"id": 1}}, 422),
        ({"json": {"id": "one", "text": "a"}}, 422),
        ({"content": b'{"id": 1, ', "headers": as_json}, 422),  # malformed JSON
        ({"content": b"a dog", "headers": {"content-type": "text/plain"}}, 415),
        ({"files": {"image": ("x.png", _png(), "image/png")}}, 415),  # JSON only
        ({"content": b"x" * 400_000, "headers": as_json}, 413),  # body size
    ]:
        answer = client.post("/locate", **request_args)
        assert answer.status_code == status, (request_args, answer.text)
        assert answer.json()["detail"] and "Traceback" not in answer.text
