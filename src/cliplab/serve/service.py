"""The search service's state and work: a `Searcher` behind one lock, the request models, thumbnails.

Every way a request can be wrong becomes an `HTTPException` with a 4xx status and a one-line reason.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import torch
from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile as FormFile

from ..caches import LRUCache, release_free_memory
from ..data import BadSample, decode_image
from ..dense import local_embeddings
from ..dense.maps import dense_pixels
from ..errors import ConfigError, QueryError
from ..files import regular_file_problem
from ..search import Searcher
from .batching import Batcher, Batching
from .limits import Limits
from .schemas import Located, RequestModels, Result, SearchResults, request_models

VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
}
THUMBNAIL_SIDE = 256
THUMBNAIL_CACHE_BYTES = 32 * 2**20  # JPEG thumbnails of recent hits


class Service:
    def __init__(self, searcher: Searcher, limits: Limits, batching: Batching = Batching()):
        self.searcher, self.limits, self.batching = searcher, limits, batching
        self.dim, self.rows = searcher.dim, len(searcher.collection)
        self.models: RequestModels = request_models(limits, self.dim)
        self._compute = threading.Lock()  # one model call at a time: on a CPU, parallel calls only fight for cores
        self.thumbnail = LRUCache(THUMBNAIL_CACHE_BYTES).memoize(self._thumbnail)
        # looked up at each call, so a test can swap the searcher's methods
        self.texts = Batcher(lambda texts: self.searcher.text_vectors(texts), self.locked, batching)
        self.images = Batcher(lambda images: self.searcher.image_vectors(images), self.locked, batching)

    async def text_vector(self, text: str) -> np.ndarray:
        """A text's embedding: batched with concurrent requests', or on its own with batching off."""
        if self.batching.enabled:
            return await self.texts(text)
        return await run_in_threadpool(self.locked, self.searcher.text_vector, text)

    async def image_vector(self, image: Image.Image) -> np.ndarray:
        if self.batching.enabled:
            return await self.images(image)
        return await run_in_threadpool(self.locked, self.searcher.image_vector, image)

    def locked(self, function, *args, release: bool = False):
        """`function(*args)`, one model call at a time; with `release`, then the memory it freed is handed
        back to the system (for calls that run a tower on hundreds of inputs)."""
        with self._compute:
            try:
                return function(*args)
            finally:
                if release:
                    release_free_memory()

    def read_upload(self, data: bytes) -> Image.Image:
        if not data:
            raise HTTPException(422, "the uploaded image is empty")
        try:
            image = decode_image(data, max_pixels=self.limits.max_pixels)
        except BadSample as err:
            if err.reason == "too many pixels":
                raise HTTPException(413, f"image too large: more than {self.limits.max_pixels:,} pixels") from None
            raise HTTPException(415, "unsupported or damaged image: send a JPEG, PNG, WebP, GIF, BMP or TIFF") from None
        return image.convert("RGB")

    async def query(self, request: Request, json_model: type[BaseModel], form_model: type[BaseModel]):
        """(the query, None) from a JSON body, or (the query, its decoded image) from a multipart form."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            return validate_body(json_model, await request.body()), None
        if kind == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=8)
            except Exception as err:  # malformed multipart bodies surface as assorted parser errors
                raise HTTPException(400, f"malformed multipart body: {err}") from None
            upload = form.get("image")
            if not isinstance(upload, FormFile):  # starlette's class: FastAPI's UploadFile subclasses it
                raise HTTPException(422, "a multipart request needs an 'image' file")
            fields = {name: value for name, value in form.items() if name != "image"}
            query = validate_body(form_model, {**fields, "image": await upload.read()})
            return query, self.read_upload(query.image)
        raise HTTPException(415, "send application/json (text or embedding) or multipart/form-data (an image)")

    def results(self, kind: str, vector: np.ndarray, k: int, fold: bool) -> SearchResults:
        try:
            hits = self.searcher.search(vector, k, fold_duplicates=fold)
        except QueryError as err:
            raise HTTPException(422, str(err)) from None
        out = []
        for hit in hits:
            item = self.searcher.collection.item(hit.id)
            thumbnail = f"/items/{hit.id}/thumbnail"
            media = f"/items/{hit.id}/video" if item.video is not None else None
            out.append(
                Result(**item.public(), score=hit.score, thumbnail=thumbnail, duplicates=hit.duplicates, media=media)
            )
        return SearchResults(query=kind, results=out)

    def locate(self, id: int, text: str) -> Located:
        """The text's similarity with each cell of item `id`'s image (run under the model's lock)."""
        self.check_item(id)
        try:
            with self.searcher.collection.open_image(id) as image:
                pixels = dense_pixels(self.searcher.model, image.convert("RGB"))
        except BadSample as err:
            raise HTTPException(404, f"item {id}'s image can no longer be read ({err.reason})") from None

        def both() -> tuple[torch.Tensor, torch.Tensor]:
            local = local_embeddings(self.searcher.model, pixels)[0]
            return local, torch.from_numpy(self.searcher.text_vector(text))

        try:
            local, vector = self.locked(both)
        except ConfigError as err:  # a model without a tower dense maps know
            raise HTTPException(422, str(err)) from None
        scores = (local @ vector).tolist()
        return Located(id=id, text=text, grid=list(local.shape[:2]), scores=scores, peak=max(map(max, scores)))

    def video_file(self, id: int) -> tuple[Path, str]:
        """The file of item `id`'s video and its media type; 404 for an image or a file no longer there."""
        self.check_item(id)
        item = self.searcher.collection.item(id)
        if item.video is None:
            raise HTTPException(404, f"item {id} is an image, not a video's segment")
        path = Path(item.path)
        if regular_file_problem(path):
            raise HTTPException(404, f"item {id}'s video can no longer be read")
        return path, VIDEO_TYPES.get(path.suffix.lower(), "application/octet-stream")

    def check_item(self, id: int) -> None:
        if not 0 <= id < self.rows:
            raise HTTPException(404, f"no item {id}: ids run from 0 to {self.rows - 1}")

    def _thumbnail(self, id: int) -> bytes:
        try:
            with self.searcher.collection.open_image(id) as image:
                image = image.convert("RGB")
                image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                buffer = io.BytesIO()
                image.save(buffer, "JPEG", quality=85)
                return buffer.getvalue()
        except BadSample as err:
            raise HTTPException(404, f"item {id}'s image can no longer be read ({err.reason})") from None


def validate_body(model: type[BaseModel], data: bytes | dict):
    try:
        return model.model_validate_json(data) if isinstance(data, bytes) else model.model_validate(data)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_context=False, include_input=False)
        raise HTTPException(422, jsonable_encoder(errors)) from None
