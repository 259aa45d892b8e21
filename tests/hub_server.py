"""A small HTTP server on loopback standing in for OpenAI's file host and the Hugging Face Hub.

It serves `files` (URL path -> bytes) with HTTP Range support, and the Hub's resolve endpoint
(`/{org}/{repo}/resolve/{revision}/{filename}`, GET and HEAD, with the headers `huggingface_hub`
reads: X-Repo-Commit, ETag, Content-Length, X-Error-Code). Every request is recorded. Faults on
demand: `drop_after[path] = n` sends the headers of the whole file but only n bytes, once;
`wrong_bytes` answers every GET with other bytes of the same length.
"""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.drop_after: dict[str, int] = {}
        self.wrong_bytes = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                server._answer(self, body=False)

            def do_GET(self):
                server._answer(self, body=True)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add_hub_file(self, repo_id: str, filename: str, data: bytes) -> None:
        self.files[f"/{repo_id}/resolve/main/{filename}"] = data

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?")[0]
        self.requests.append((handler.command, path, handler.headers.get("Range")))
        hub = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        data = self.files.get(path)
        if hub and data is None:
            path = f"/{hub.group(1)}/resolve/main/{hub.group(3)}"  # any revision is main
            data = self.files.get(path)
        if data is None:
            repo_known = hub and any(p.startswith(f"/{hub.group(1)}/resolve/") for p in self.files)
            handler.send_response(404)
            if hub:
                handler.send_header("X-Error-Code", "EntryNotFound" if repo_known else "RepoNotFound")
                handler.send_header("X-Error-Message", "Entry not found" if repo_known else "Repository not found")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if self.wrong_bytes:
            data = bytes(len(data))
        start = 0
        if (wanted := re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")) and body:
            start = int(wanted.group(1))
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(data) - start))
        handler.send_header("Accept-Ranges", "bytes")
        if hub:
            handler.send_header("X-Repo-Commit", COMMIT)
            handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.end_headers()
        if not body:
            return
        payload = data[start:]
        if path in self.drop_after:
            payload = payload[: self.drop_after.pop(path)]  # then the connection closes
        handler.wfile.write(payload)
        handler.wfile.flush()
