"""ASGI middleware in front of the service: the bearer token (when one is set), the upload size
limit and the shape of an upload, all enforced as the body streams in, before BentoML parses it
or writes any of it to disk. A request refused half-way is cut off for BentoML (it reads a
client disconnect) and answered by the guard. Client errors are logged in one line each."""

from __future__ import annotations

import codecs
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MULTIPART_SLACK = 64 * 1024  # form boundaries and headers around the file
REFUSED: ContextVar[str | None] = ContextVar("mimicflow_refused", default=None)


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def _json_error(send: Send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class UploadForm:
    """Checks a multipart body chunk by chunk with python-multipart, the parser Starlette uses
    (so both see the same parts): it must hold exactly one part, a file upload named ``field``.
    A text part is refused (BentoML would fetch it as a URL), as are a second file and any
    other field. Raises :class:`Refused`."""

    def __init__(self, content_type: bytes, field: str):
        self.field = field
        # BentoML picks its multipart parser by this exact string, else reads the body as JSON
        # (and fetches it when it is a URL): nothing else gets through.
        if content_type.decode("latin-1").split(";")[0].strip() != "multipart/form-data":
            raise Refused(
                415,
                f"upload the clip as multipart/form-data, field {field!r} "
                f"(curl -F {field}=@clip.mp4)",
            )
        _, options = parse_options_header(content_type)
        if not options.get(b"boundary"):
            raise Refused(400, "multipart/form-data without a boundary")
        try:  # names are decoded as Starlette decodes them
            self.charset = codecs.lookup(options.get(b"charset", b"utf-8").decode("latin-1")).name
        except LookupError:
            self.charset = "latin-1"
        self.files = 0
        self.header, self.value, self.disposition = b"", b"", b""
        self.parser = MultipartParser(
            options[b"boundary"],
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
            },
        )

    def feed(self, chunk: bytes, last: bool) -> None:
        try:
            self.parser.write(chunk)
            if last:
                self.parser.finalize()
        except FormParserError as exc:
            raise Refused(400, f"invalid multipart body ({exc})") from exc
        if last and not self.files:
            raise Refused(
                400, f"no {self.field!r} part: upload the clip as multipart field {self.field!r}"
            )

    def _part_begin(self) -> None:
        self.disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def _header_end(self) -> None:
        if self.header.lower() == b"content-disposition":
            self.disposition = self.value
        self.header, self.value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        try:
            name = options[b"name"].decode(self.charset)
        except KeyError:
            raise Refused(400, "a multipart part without a name") from None
        except UnicodeDecodeError:
            name = options[b"name"].decode("latin-1")
        if name != self.field:
            raise Refused(
                400,
                f"unexpected field {name!r}: the only field is {self.field!r}, "
                "the clip as a file upload",
            )
        if b"filename" not in options:
            raise Refused(
                400,
                f"field {self.field!r} is text, not a file: upload the clip's "
                f"bytes (curl -F {self.field}=@clip.mp4); URLs are not fetched",
            )
        self.files += 1
        if self.files > 1:
            raise Refused(400, f"more than one {self.field!r} part: one clip per request")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then defers to the client's."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


class _OneLineClientErrors(logging.Filter):
    """BentoML logs a request whose body never fully arrived (the client went away, or the
    guard refused it) and a request that fails validation (a 400) with a full traceback; one
    line says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError
        from starlette.requests import ClientDisconnect

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ClientDisconnect):
            reason = REFUSED.get()
            detail = f"refused: {reason}" if reason else "the client disconnected mid-request"
        elif isinstance(error, ValidationError):
            detail = f"400, {error.error_count()} validation error(s): {error.errors()[0]['msg']}"
        else:
            return True
        record.msg, record.args = "%s: %s", (record.getMessage(), detail)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_ONE_LINE = _OneLineClientErrors()


class RequestGuard:
    """Token, size and upload checks for ``paths`` (and the token for ``/metrics`` too, unless
    configured open); configured once per worker (``configure``) when the service has read its
    bundle, before any request is served. ``uploads``: the upload endpoints and their field;
    ``features``: the endpoint whose JSON body is read whole (up to ``features_max_bytes``)
    and checked before BentoML sees it (:func:`~mimicflow.serving.schemas.features_problem`)."""

    token: str | None = None
    max_bytes: int | None = None
    guard_metrics: bool = True
    features_max_bytes: int | None = None

    def __init__(
        self,
        app,
        paths: tuple[str, ...] = ("/predict", "/predict_features"),
        uploads: dict[str, str] | None = None,
        features: str = "/predict_features",
    ):
        self.app = app
        self.paths = paths
        self.uploads = {"/predict": "file"} if uploads is None else uploads
        self.features = features

    @classmethod
    def configure(
        cls,
        token: str | None,
        max_bytes: int | None,
        guard_metrics: bool = True,
        features_max_bytes: int | None = None,
    ) -> None:
        cls.token, cls.max_bytes, cls.guard_metrics = token or None, max_bytes, guard_metrics
        cls.features_max_bytes = features_max_bytes
        logging.getLogger("bentoml._internal.server.http_app").addFilter(_ONE_LINE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") if scope["type"] == "http" else None
        guarded = path in self.paths
        if not guarded and not (path == "/metrics" and self.guard_metrics):
            return await self.app(scope, receive, send)
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first, as Starlette reads them
        if not self._authorised(headers):
            return await _json_error(
                send, 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")]
            )
        if not guarded or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        try:
            if path == self.features:
                body = await self._whole_body(receive, headers)
                if body is None:  # the client went away
                    return None
                return await self.app(scope, _replay(body, receive), send)
            form, limit = self._upload(path, headers)
        except Refused as exc:
            return await _json_error(send, exc.status, exc.message)
        if form is None and limit is None:
            return await self.app(scope, receive, send)
        await self._checked(scope, receive, send, limit, form)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        if self.token is None:
            return True
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), self.token)

    def _upload(
        self, path: str, headers: dict[bytes, bytes]
    ) -> tuple[UploadForm | None, int | None]:
        """The form parser (upload endpoints) and the byte limit of this request's body."""
        form = (
            UploadForm(headers.get(b"content-type", b""), self.uploads[path])
            if path in self.uploads
            else None
        )
        limit = None
        if self.max_bytes is not None:
            limit = self.max_bytes + MULTIPART_SLACK
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise Refused(413, self._too_large)
        return form, limit

    async def _whole_body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes | None:
        """The features endpoint's body, read whole and checked: JSON (by its content type), at
        most ``features_max_bytes``, the shape and sense of :func:`features_problem`. Returns None
        when the client disconnected; raises :class:`Refused`."""
        from mimicflow.serving.schemas import features_problem

        kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if kind != "application/json":
            raise Refused(415, "send the clips' features as application/json")
        cap = self.features_max_bytes
        too_large = (
            f"body too large (limit {(cap or 0) / 2**20:g} MB): send fewer clips per request"
        )
        length = headers.get(b"content-length")
        if cap is not None and length is not None and length.isdigit() and int(length) > cap:
            raise Refused(413, too_large)
        body = bytearray()
        while True:
            item = await receive()
            if item["type"] == "http.disconnect":
                return None
            body += item.get("body", b"")
            if cap is not None and len(body) > cap:
                raise Refused(413, too_large)
            if not item.get("more_body", False):
                break
        problem = features_problem(bytes(body))
        if problem is not None:
            raise Refused(*problem)
        return bytes(body)

    @property
    def _too_large(self) -> str:
        return f"upload too large (limit {self.max_bytes / 2**20:g} MB)"

    async def _checked(
        self, scope, receive, send, limit: int | None, form: UploadForm | None
    ) -> None:
        """Each body chunk is counted (a body without a length, chunked, too) and checked before
        the app reads it; a refused request is cut off and its answer replaced."""
        seen, refused = 0, None

        async def checked_receive() -> Message:
            nonlocal seen, refused
            if refused is not None:
                return {"type": "http.disconnect"}
            item = await receive()
            if item["type"] == "http.request":
                body = item.get("body", b"")
                seen += len(body)
                try:
                    if limit is not None and seen > limit:
                        raise Refused(413, self._too_large)
                    if form is not None:
                        form.feed(body, last=not item.get("more_body", False))
                except Refused as exc:
                    refused = exc
                    REFUSED.set(f"{exc.status} {exc.message}")
                    return {"type": "http.disconnect"}
            return item

        async def replacing_send(item: Message) -> None:
            if refused is None:
                await send(item)
            elif item["type"] == "http.response.start":
                await _json_error(send, refused.status, refused.message)

        await self.app(scope, checked_receive, replacing_send)
