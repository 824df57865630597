"""ASGI middleware in front of the predict endpoints: the bearer token (when one is set) and the
upload size limit, both enforced before any of the body is parsed or written to disk."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MULTIPART_SLACK = 64 * 1024  # form boundaries and headers around the file


async def _json_error(send: Send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Token and size checks for ``paths``; configured once per worker (``configure``) when the
    service has read its bundle, before any request is served."""

    token: str | None = None
    max_bytes: int | None = None

    def __init__(self, app, paths: tuple[str, ...] = ("/predict", "/predict_features")):
        self.app = app
        self.paths = paths

    @classmethod
    def configure(cls, token: str | None, max_bytes: int | None) -> None:
        cls.token, cls.max_bytes = token or None, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") not in self.paths:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.token is not None:
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), self.token):
                return await _json_error(send, 401, "missing or wrong bearer token",
                                         [(b"www-authenticate", b"Bearer")])  # fmt: skip
        if self.max_bytes is None:
            return await self.app(scope, receive, send)
        limit = self.max_bytes + MULTIPART_SLACK
        message = f"upload too large (limit {self.max_bytes / 2**20:g} MB)"
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _json_error(send, 413, message)
        await self._counted(scope, receive, send, limit, message)

    async def _counted(self, scope, receive, send, limit: int, message: str) -> None:
        """A body without a length (chunked) is counted as it arrives; past the limit the
        request is cut off and its answer replaced by the 413."""
        seen, over = 0, False

        async def counted_receive() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            item = await receive()
            if item["type"] == "http.request":
                seen += len(item.get("body", b""))
                if seen > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return item

        async def replacing_send(item: Message) -> None:
            if not over:
                await send(item)
            elif item["type"] == "http.response.start":
                await _json_error(send, 413, message)

        await self.app(scope, counted_receive, replacing_send)
