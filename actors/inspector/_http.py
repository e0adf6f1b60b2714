"""The little of HTTP the inspector needs, over raw ASGI: no web framework required.

A raw ASGI callable (rather than a Starlette app) keeps the inspector free of dependencies
and indifferent to the host's event loop: it awaits only anyio primitives and the
server's ``receive`` and ``send``, so it runs under uvicorn (asyncio, uvloop) as well as
under a trio server (hypercorn), mounted in Starlette, FastAPI or any ASGI router.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

MAX_BODY = 64 * 1024  # bytes: an action's JSON body is small
_ENCODER = msgspec.json.Encoder()


class HTTPError(Exception):
    """A request the inspector refuses: answered with ``status`` and a JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def encode(value: object) -> bytes:
    """JSON for a Struct, a dict or a list of them."""
    return _ENCODER.encode(value)


async def respond(
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    status: int,
    body: bytes,
    content_type: str = "application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A whole response in two ASGI messages."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_error(
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]], error: HTTPError
) -> None:
    await respond(send, error.status, encode({"error": error.message, "status": error.status}))


async def read_body(receive: Callable[[], Awaitable[MutableMapping[str, Any]]]) -> bytes:
    """The request's body, at most `MAX_BODY` bytes (413 beyond)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "the client went away before sending its body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPError(413, f"the request body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The path below the mount point: ``path`` less ``root_path`` (as Starlette's Mount sets
    it; a server's ``--root-path`` without a router leaves ``path`` alone)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


class Query:
    """The query string's parameters, with checked conversions (400 on bad input)."""

    def __init__(self, scope: MutableMapping[str, Any]) -> None:
        raw: bytes = scope.get("query_string", b"")
        try:
            self._values = urllib.parse.parse_qs(
                raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False
            )
        except UnicodeDecodeError:
            raise HTTPError(400, "the query string is not UTF-8") from None

    def text(self, name: str, default: str) -> str:
        values = self._values.get(name)
        return values[-1] if values else default

    def texts(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))

    def integer(self, name: str, default: int, low: int, high: int | None = None) -> int:
        values = self._values.get(name)
        if not values:
            return default
        try:
            value = int(values[-1])
        except ValueError:
            raise HTTPError(400, f"{name} must be an integer, got {values[-1]!r}") from None
        if value < low or (high is not None and value > high):
            within = f"from {low} to {high}" if high is not None else f">= {low}"
            raise HTTPError(400, f"{name} must be {within}, got {value}")
        return value
