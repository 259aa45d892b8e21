"""The search service: a FastAPI app over a `Searcher`, with a page at `/` and OpenAPI docs at `/docs`.

Every request is bounded (body size, pixels, k, text length, labels; `limits.py`) and every way a
request can be wrong is a 4xx with a one-line reason; nothing a client sends reaches the file system
(items are addressed by their row number, and thumbnails are read only from the collection's own items).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..search import Searcher
from .batching import Batching
from .limits import BodyLimit, Limits
from .routes import router
from .service import Service

log = logging.getLogger("cliplab.serve")


def create_app(searcher: Searcher, limits: Limits = Limits(), batching: Batching = Batching()) -> FastAPI:
    app = FastAPI(
        title="cliplab search",
        version="1",
        description="Search a collection by text, by example image or by embedding; zero-shot classify an image.",
    )
    app.state.service = service = Service(searcher, limits, batching)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(InternalErrors)
    app.include_router(router)
    _register_schemas(app, *service.models.all())
    return app


class InternalErrors:
    """ASGI middleware: a failure no route foresaw is logged once, with its traceback, and answered with a
    bare 500; its reason never reaches the client. (An exception handler for Exception would leave
    Starlette to raise it again, and the server would log it twice.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if not started:  # otherwise the response is under way: the connection is simply closed
                await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)


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
