"""The search service: a FastAPI app over a `Searcher`, with a page at `/` and OpenAPI docs at `/docs`.

Every request is bounded (body size, pixels, k, text length, labels; `limits.py`) and every way a
request can be wrong is a 4xx with a one-line reason; nothing a client sends reaches the file system
(items are addressed by their row number, and thumbnails are read only from the collection's own items).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..search import Searcher
from .limits import BodyLimit, Limits
from .routes import router
from .service import Service

log = logging.getLogger("cliplab.serve")


def create_app(searcher: Searcher, limits: Limits = Limits()) -> FastAPI:
    app = FastAPI(
        title="cliplab search",
        version="1",
        description="Search a collection by text, by example image or by embedding; zero-shot classify an image.",
    )
    app.state.service = service = Service(searcher, limits)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(router)
    _register_schemas(app, *service.models.all())
    return app


async def _internal_error(request: Request, err: Exception) -> JSONResponse:
    """The reason goes to the log, never to the client."""
    log.exception("%s %s failed", request.method, request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def _register_schemas(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add the request models that routes reference by name to the OpenAPI components."""
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
