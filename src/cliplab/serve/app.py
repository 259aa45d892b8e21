"""The search service: a FastAPI app over a `Searcher`, with a page at `/` and OpenAPI docs at `/docs`.

Every request is bounded (body size, pixels, k, text length, labels) and every way a request can be
wrong is a 4xx with a one-line reason; nothing a client sends reaches the file system (items are
addressed by their row number, and thumbnails are read only from the collection's own items).
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile as FormFile

from ..data.decode import BadSample, decode_image
from ..search import Searcher
from .limits import BodyLimit

log = logging.getLogger("cliplab.serve")
DEFAULT_TEMPLATES = ("a photo of a {}.",)
THUMBNAIL_SIDE = 256


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 10 * 2**20  # a whole request, uploads included
    max_pixels: int = 40_000_000  # width x height of an uploaded image; larger is a decompression bomb
    max_k: int = 100
    max_text_chars: int = 1_000
    max_labels: int = 100
    max_label_chars: int = 200


def create_app(searcher: Searcher, limits: Limits = Limits()) -> FastAPI:
    dim, rows = searcher.dim, len(searcher.collection)
    compute = threading.Lock()  # one model call at a time: on a CPU, parallel calls only fight for cores

    class SearchQuery(BaseModel):
        """Exactly one of `text` and `embedding`."""

        text: Annotated[str, Field(min_length=1, max_length=limits.max_text_chars)] | None = None
        embedding: Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=dim, max_length=dim)] | None = None  # fmt: skip
        k: Annotated[int, Field(ge=1, le=limits.max_k)] = 10
        fold_duplicates: bool = False

    class EmbedQuery(BaseModel):
        text: Annotated[str, Field(min_length=1, max_length=limits.max_text_chars)]

    class Result(BaseModel):
        id: int
        score: float
        key: str
        caption: str | None
        width: int
        height: int
        thumbnail: str
        duplicates: list[int]

    class SearchResults(BaseModel):
        query: Literal["text", "image", "embedding"]
        results: list[Result]

    class ItemOut(BaseModel):
        id: int
        key: str
        caption: str | None
        width: int
        height: int

    class LabelProbability(BaseModel):
        label: str
        probability: float

    class Classification(BaseModel):
        labels: list[LabelProbability]

    class Embedding(BaseModel):
        embedding: list[float]
        dim: int

    class Health(BaseModel):
        status: str
        items: int
        dim: int
        index: str
        model: str
        captions: bool

    app = FastAPI(
        title="cliplab search",
        version="1",
        description="Search a collection by text, by example image or by embedding; zero-shot classify an image.",
    )
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(Exception)
    async def _internal(request: Request, err: Exception):  # the reason goes to the log, never to the client
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    # -- helpers ---------------------------------------------------------------------------------

    def read_upload(data: bytes) -> Image.Image:
        if not data:
            raise HTTPException(422, "the uploaded image is empty")
        try:
            image = decode_image(data, max_pixels=limits.max_pixels)
        except BadSample as err:
            if err.reason == "too many pixels":
                raise HTTPException(413, f"image too large: more than {limits.max_pixels:,} pixels") from None
            raise HTTPException(415, "unsupported or damaged image: send a JPEG, PNG, WebP, GIF, BMP or TIFF") from None
        return image.convert("RGB")

    async def query_body(request: Request, model: type[BaseModel]):
        """(the JSON body as `model`, None) or (the multipart form, its decoded `image`)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                return model.model_validate_json(await request.body()), None
            except ValidationError as err:
                errors = err.errors(include_url=False, include_context=False, include_input=False)
                raise HTTPException(422, jsonable_encoder(errors)) from None
        if kind == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=8)
            except Exception as err:  # malformed multipart bodies surface as assorted parser errors
                raise HTTPException(400, f"malformed multipart body: {err}") from None
            upload = form.get("image")
            if not isinstance(upload, FormFile):  # starlette's class: FastAPI's UploadFile subclasses it
                raise HTTPException(422, "a multipart request needs an 'image' file")
            image = read_upload(await upload.read())
            return form, image
        raise HTTPException(415, "send application/json (text or embedding) or multipart/form-data (an image)")

    def form_int(form, name: str, default: int, low: int, high: int) -> int:
        raw = form.get(name, str(default))
        try:
            value = int(str(raw))
        except ValueError:
            raise HTTPException(422, f"{name} must be an integer") from None
        if not low <= value <= high:
            raise HTTPException(422, f"{name} must be between {low} and {high}")
        return value

    def results(kind: str, vector: np.ndarray, k: int, fold: bool) -> SearchResults:
        try:
            hits = searcher.search(vector, k, fold_duplicates=fold)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        out = []
        for hit in hits:
            item = searcher.collection.item(hit.id)
            out.append(Result(**item.public(), score=hit.score, thumbnail=f"/items/{hit.id}/thumbnail",
                              duplicates=hit.duplicates))  # fmt: skip
        return SearchResults(query=kind, results=out)

    def locked(function, *args):
        with compute:
            return function(*args)

    @lru_cache(maxsize=1024)
    def thumbnail(id: int) -> bytes:
        try:
            with searcher.collection.open_image(id) as image:
                image = image.convert("RGB")
                image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                buffer = io.BytesIO()
                image.save(buffer, "JPEG", quality=85)
                return buffer.getvalue()
        except BadSample as err:
            raise HTTPException(404, f"item {id}'s image can no longer be read ({err.reason})") from None

    def check_item(id: int) -> None:
        if not 0 <= id < rows:
            raise HTTPException(404, f"no item {id}: ids run from 0 to {rows - 1}")

    # -- routes ----------------------------------------------------------------------------------

    query_bodies = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SearchQuery"}},
                "multipart/form-data": {"schema": {
                    "type": "object", "required": ["image"],
                    "properties": {"image": {"type": "string", "format": "binary"},
                                   "k": {"type": "integer", "minimum": 1, "maximum": limits.max_k, "default": 10},
                                   "fold_duplicates": {"type": "boolean", "default": False}},
                }},
            },
        }
    }  # fmt: skip

    @app.post("/search", response_model=SearchResults, openapi_extra=query_bodies,
              responses={413: {"description": "body or image too large"}, 415: {"description": "unsupported type"},
                         422: {"description": "invalid query"}})  # fmt: skip
    async def search(request: Request) -> SearchResults:
        """The k nearest items to a text, an uploaded image (multipart `image`) or a raw embedding."""
        query, image = await query_body(request, SearchQuery)
        if image is not None:
            k = form_int(query, "k", 10, 1, limits.max_k)
            fold = str(query.get("fold_duplicates", "false")).lower() in ("1", "true", "on", "yes")
            vector = await run_in_threadpool(locked, searcher.image_vector, image)
            return await run_in_threadpool(results, "image", vector, k, fold)
        if (query.text is None) == (query.embedding is None):
            raise HTTPException(422, "give exactly one of 'text' and 'embedding'")
        if query.text is not None:
            vector = await run_in_threadpool(locked, searcher.text_vector, query.text)
            return await run_in_threadpool(results, "text", vector, query.k, query.fold_duplicates)
        return await run_in_threadpool(
            results, "embedding", np.asarray(query.embedding), query.k, query.fold_duplicates
        )

    @app.post("/classify", response_model=Classification, responses={413: {}, 415: {}})
    def classify(
        image: Annotated[UploadFile, File(description="the image to classify")],
        labels: Annotated[str, Form(description="candidate labels, comma- or newline-separated")],
        templates: Annotated[str | None, Form(description='prompt templates with "{}", one per line')] = None,
    ) -> Classification:
        """Zero-shot probabilities of each label (prompt ensembling over the templates)."""
        names = [name.strip() for name in labels.replace("\n", ",").split(",") if name.strip()]
        if not names or len(names) > limits.max_labels or any(len(n) > limits.max_label_chars for n in names):
            raise HTTPException(
                422, f"give 1 to {limits.max_labels} labels of at most {limits.max_label_chars} characters"
            )
        chosen = [t.strip() for t in (templates or "").splitlines() if t.strip()] or list(DEFAULT_TEMPLATES)
        if len(chosen) > limits.max_labels or any(len(t) > limits.max_label_chars or "{}" not in t for t in chosen):
            raise HTTPException(422, f'templates need "{{}}" for the label; at most {limits.max_labels} of them')
        picture = read_upload(image.file.read(limits.max_body_bytes + 1))
        probabilities = locked(searcher.classify, picture, tuple(names), tuple(chosen))
        return Classification(labels=[LabelProbability(label=n, probability=p) for n, p in probabilities])

    embed_bodies = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/EmbedQuery"}},
                "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                                   "properties": {"image": {"type": "string", "format": "binary"}}}},
            },
        }
    }  # fmt: skip

    @app.post("/embed", response_model=Embedding, openapi_extra=embed_bodies, responses={413: {}, 415: {}, 422: {}})
    async def embed(request: Request) -> Embedding:
        """The model's normalised embedding of a text (JSON) or an image (multipart `image`)."""
        query, image = await query_body(request, EmbedQuery)
        if image is not None:
            vector = await run_in_threadpool(locked, searcher.image_vector, image)
        else:
            vector = await run_in_threadpool(locked, searcher.text_vector, query.text)
        return Embedding(embedding=[float(v) for v in vector], dim=dim)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        model = searcher.collection.model
        return Health(status="ok", items=rows, dim=dim, index=searcher.index_kind or "flat",
                      model=f"{Path(model['checkpoint']).name} ({model['fingerprint'][:12]})",  # no server paths
                      captions=searcher.collection.has_captions)  # fmt: skip

    @app.get("/items/{id}", response_model=ItemOut, responses={404: {}})
    def item(id: int) -> ItemOut:
        check_item(id)
        return ItemOut(**searcher.collection.item(id).public())

    @app.get(
        "/items/{id}/thumbnail", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}, 404: {}}
    )
    def item_thumbnail(id: int) -> Response:
        check_item(id)
        return Response(thumbnail(id), media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(files("cliplab.serve").joinpath("page.html").read_text(encoding="utf-8"))

    _register_schemas(app, SearchQuery, EmbedQuery)
    return app


def _register_schemas(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add the hand-referenced request models to the OpenAPI components."""
    build = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
