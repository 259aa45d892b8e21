"""Every bound on a request: `Limits`, and `BodyLimit`, which caps bodies before any route sees them
(a 413, never an unbounded read)."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 10 * 2**20  # a whole request, uploads included
    max_pixels: int = 40_000_000  # width x height of an uploaded image; larger is a decompression bomb
    max_k: int = 100
    max_text_chars: int = 1_000
    max_labels: int = 100  # labels, and templates, of a /classify request
    max_label_chars: int = 200  # a label's or a template's length
    max_prompts: int = 1_000  # labels x templates of a /classify request: each one runs the text tower


class BodyLimit:
    """ASGI middleware: bodies over `max_bytes` (declared or streamed) get 413 and never reach the app.

    The body is read here, up to the limit, and replayed to the app, so a route can read it freely.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                return await _reply(send, 400, "invalid Content-Length")
            if too_large:
                return await _reply(send, 413, f"request body larger than {self.max_bytes:,} bytes")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await _reply(send, 413, f"request body larger than {self.max_bytes:,} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect, as the server would report it
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _reply(send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
