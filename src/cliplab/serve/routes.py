"""The service's routes; each reads the app's `Service` (`request.app.state.service`)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response

from ..errors import ConfigError
from ..zeroshot import DEFAULT_TEMPLATES, check_labels, check_templates
from .schemas import (
    Classification,
    Embedding,
    Health,
    ItemOut,
    LabelProbability,
    Located,
    SearchResults,
    request_body,
)
from .service import Service, validate_body

router = APIRouter()


def _service(request: Request) -> Service:
    return request.app.state.service


@router.post(
    "/search",
    response_model=SearchResults,
    openapi_extra=request_body("SearchQuery", "SearchForm"),
    responses={
        413: {"description": "body or image too large"},
        415: {"description": "unsupported type"},
        422: {"description": "invalid query"},
    },
)
async def search(request: Request) -> SearchResults:
    """The k nearest items to a text, an uploaded image (multipart `image`) or a raw embedding."""
    service = _service(request)
    models = service.models
    query, image = await service.query(request, models.search, models.search_form)
    if image is not None:
        vector = await service.image_vector(image)
        return await run_in_threadpool(service.results, "image", vector, query.k, query.fold_duplicates)
    if (query.text is None) == (query.embedding is None):
        raise HTTPException(422, "give exactly one of 'text' and 'embedding'")
    if query.text is not None:
        vector = await service.text_vector(query.text)
        return await run_in_threadpool(service.results, "text", vector, query.k, query.fold_duplicates)
    vector = np.asarray(query.embedding)
    return await run_in_threadpool(service.results, "embedding", vector, query.k, query.fold_duplicates)


@router.post("/classify", response_model=Classification, responses={413: {}, 415: {}})
async def classify(
    request: Request,
    image: Annotated[UploadFile, File(description="the image to classify")],
    labels: Annotated[str, Form(description="candidate labels, comma- or newline-separated")],
    templates: Annotated[str | None, Form(description='prompt templates with "{}", one per line')] = None,
) -> Classification:
    """Zero-shot probabilities of each label (prompt ensembling over the templates)."""
    service = _service(request)
    limits = service.limits
    names = [name.strip() for name in labels.replace("\n", ",").split(",") if name.strip()]
    if not names or len(names) > limits.max_labels or any(len(n) > limits.max_label_chars for n in names):
        raise HTTPException(422, f"give 1 to {limits.max_labels} labels of at most {limits.max_label_chars} characters")
    try:
        check_labels(names, service.searcher.model)
    except ConfigError as err:
        raise HTTPException(422, str(err)) from None
    chosen = [t.strip() for t in (templates or "").splitlines() if t.strip()] or list(DEFAULT_TEMPLATES)
    if len(chosen) > limits.max_labels or any(len(t) > limits.max_label_chars for t in chosen):
        raise HTTPException(
            422, f"give at most {limits.max_labels} templates of at most {limits.max_label_chars} characters"
        )
    if len(names) * len(chosen) > limits.max_prompts:
        raise HTTPException(422, f"labels x templates is at most {limits.max_prompts:,} prompts per request")
    try:
        check_templates(chosen, "templates")
    except ConfigError as err:
        raise HTTPException(422, str(err)) from None
    picture = await run_in_threadpool(service.read_upload, await image.read(limits.max_body_bytes + 1))
    vector = await service.image_vector(picture)
    probabilities = await run_in_threadpool(
        service.locked, service.searcher.classify_vector, vector, tuple(names), tuple(chosen), release=True
    )
    return Classification(labels=[LabelProbability(label=n, probability=p) for n, p in probabilities])


@router.post(
    "/embed",
    response_model=Embedding,
    openapi_extra=request_body("EmbedQuery", "EmbedForm"),
    responses={413: {}, 415: {}, 422: {}},
)
async def embed(request: Request) -> Embedding:
    """The model's normalised embedding of a text (JSON) or an image (multipart `image`)."""
    service = _service(request)
    query, image = await service.query(request, service.models.embed, service.models.embed_form)
    vector = await (service.image_vector(image) if image is not None else service.text_vector(query.text))
    return Embedding(embedding=[float(v) for v in vector], dim=service.dim)


@router.post(
    "/locate",
    response_model=Located,
    openapi_extra=request_body("LocateQuery"),
    responses={404: {}, 413: {}, 415: {}, 422: {}},
)
async def locate(request: Request) -> Located:
    """Where in item `id`'s image the text matches: its similarity with each cell of the whole image
    (ClearCLIP's last block; the page draws it over the thumbnail)."""
    service = _service(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, 'send application/json: {"id": ITEM, "text": TEXT}')
    query = validate_body(service.models.locate, await request.body())
    return await run_in_threadpool(service.locate, query.id, query.text)


@router.head("/health", include_in_schema=False)  # load balancers probe with HEAD
@router.get("/health", response_model=Health)
def health(request: Request) -> Health:
    service = _service(request)
    collection = service.searcher.collection
    model = collection.model
    return Health(
        status="ok",
        items=service.rows,
        dim=service.dim,
        index=service.searcher.index_kind or "flat",
        model=f"{Path(model['checkpoint']).name} ({model['fingerprint'][:12]})",  # no server paths
        captions=collection.has_captions,
    )


@router.get("/items/{id}", response_model=ItemOut, responses={404: {}})
def item(request: Request, id: int) -> ItemOut:
    service = _service(request)
    service.check_item(id)
    return ItemOut(**service.searcher.collection.item(id).public())


@router.get("/items/{id}/thumbnail", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}, 404: {}})
def item_thumbnail(request: Request, id: int) -> Response:
    service = _service(request)
    service.check_item(id)
    return Response(service.thumbnail(id), media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})


@router.get(
    "/items/{id}/video",
    response_class=FileResponse,
    responses={200: {"content": {"video/*": {}}}, 206: {"description": "the bytes asked for (Range)"}, 404: {}},
)
def item_video(request: Request, id: int) -> FileResponse:
    """The video a segment comes from (the collection's own file), with HTTP Range requests so a player
    can seek to the segment's start; 404 for an image."""
    path, media_type = _service(request).video_file(id)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "max-age=3600"})


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(files("cliplab.serve").joinpath("page.html").read_text(encoding="utf-8"))
