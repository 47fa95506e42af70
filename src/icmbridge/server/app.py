"""The HTTP API (FastAPI on Starlette) over the codec, the task network and the store.

Model work (decoding, detecting, encoding images sent as images) is CPU-heavy and runs in worker
threads behind a small limiter (``workers``, default 1) with a bounded queue (``queue``): the event
loop stays free to answer ``/healthz`` and reads, and a flood of uploads gets 503 + Retry-After
instead of an ever-growing backlog. Errors are JSON ``{"error": "<one line>"}``; content the codec
refuses gets the same one-line reason the CLI prints.
"""

import hashlib
import hmac
import io
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from icmbridge.errors import IcmError, InputError
from icmbridge.server.store import Detection, ImageRecord, NewImage, Store, open_store

log = logging.getLogger("icmbridge.server")

T = TypeVar("T")

#: Media type of an icmbridge bitstream (what ``icmbridge push`` sends).
BITSTREAM_TYPE = "application/x-icmbridge"
DEFAULT_MAX_BODY = 64 * 2**20
DECODERS = ("human", "machine")


@dataclass
class ServerConfig:
    """Everything ``create_app`` needs; the CLI fills it from ``icmbridge serve``'s options."""

    data_dir: Path
    token: str
    base: str = "base"
    human: str = "human"
    task: str | None = None  # None: the base's training task (else face); "none": no detections
    task_weights: str | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    db: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    workers: int = 1
    queue: int = 32
    view_cache_bytes: int = 64 * 2**20


class Engine:
    """The models of one server: the base (machine decoder), the human decoder and the task."""

    def __init__(self, config: ServerConfig) -> None:
        from icmbridge.codec import bitstream
        from icmbridge.codec.store import load_codec
        from icmbridge.tasks import build_task

        self.base_name, self.human_name = config.base, config.human
        self.base = load_codec(config.base)
        self.human = load_codec(config.human)
        self.fingerprint = bitstream.fingerprint(self.base).hex()
        human_fp = bitstream.fingerprint(self.human).hex()
        if human_fp != self.fingerprint:
            raise InputError(
                f"--human {config.human} ({human_fp}) does not read the bitstreams of --base "
                f"{config.base} ({self.fingerprint}): give a decoder finetuned from the base"
            )
        self.task_name = config.task or default_task(self.base)
        self.task = (
            None
            if self.task_name == "none"
            else build_task(self.task_name, weights_path=config.task_weights, **config.task_options)
        )

    def encode_image(self, data: bytes, name: str) -> bytes:
        """An uploaded image file → the bitstream the CLI's ``compress`` would write."""
        from icmbridge.codec import bitstream
        from icmbridge.imageio import load_image

        with tempfile.TemporaryDirectory(prefix="icmbridge-upload-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            try:
                x, _ = load_image(path, max_pixels=bitstream.max_pixels(), as_uint8=True)
            except InputError as exc:  # say the upload's name, as the CLI says the file's
                raise InputError(str(exc).replace(repr(str(path)), repr(name))) from None
        return bitstream.encode(self.base, x)

    def detect(self, data: bytes) -> "tuple[int, int, list[Detection]]":
        """(width, height, detections) of the task network on the machine decoder's output.

        The decoded image is rounded to 8 bits first, exactly what ``decompress --model base``
        writes, so the detections equal the task network's on the CLI's PNG.
        """
        import torch

        from icmbridge.codec import bitstream

        x = bitstream.decode(self.base, data, dtype=torch.uint8)  # header, checksum, fingerprint
        height, width = x.shape[-2:]
        if self.task is None:
            return width, height, []
        pred = self.task.predict(x.float().div_(255))[0]
        found = [
            Detection(tuple(float(v) for v in box), float(score), int(label))  # type: ignore[arg-type]
            for box, score, label in zip(
                pred["boxes"].tolist(),
                pred["scores"].tolist(),
                pred["labels"].tolist(),
                strict=True,
            )  # fmt: skip
        ]
        return width, height, found

    def render(self, data: bytes, decoder: str) -> bytes:
        """PNG bytes identical to ``icmbridge decompress --model <decoder's model>``'s file."""
        import torch
        from PIL import Image

        from icmbridge.codec import bitstream
        from icmbridge.imageio import tensor_to_array

        codec = self.human if decoder == "human" else self.base
        x = bitstream.decode(codec, data, dtype=torch.uint8)
        out = io.BytesIO()
        Image.fromarray(tensor_to_array(x)).save(out, format="PNG")  # as imageio.save_image
        return out.getvalue()


def default_task(codec: Any) -> str:
    """The task the base was trained for (recorded in its model folder), else face."""
    meta = getattr(codec, "meta", {}) or {}
    task = (meta.get("train_config") or {}).get("task")
    return task if isinstance(task, str) and task else "face"


class ViewCache:
    """Rendered PNGs by (id, decoder), least recently used out first, bounded in bytes.

    A stored bitstream never changes, so neither does its view while the server runs.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[int, str]) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[int, str], value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)


def _clean_name(raw: str | None) -> str:
    """A display and temp-file name from what the client said: base name, printable, short."""
    name = unquote(raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()[:200]
    return "upload" if name in ("", ".", "..") else name


def _parse_id(text: str) -> int:
    from fastapi import HTTPException

    if not text.isdigit() or len(text) > 18:
        raise HTTPException(404, f"no image {text!r}")
    return int(text)


class _Shared:
    """What the routes of one app share: models, store, view cache, limiter and the token."""

    def __init__(self, config: ServerConfig, engine: Engine, store: Store) -> None:
        import anyio

        self.config, self.engine, self.store = config, engine, store
        self.views = ViewCache(config.view_cache_bytes)
        self.model_limiter = anyio.CapacityLimiter(max(1, config.workers))
        self.token = config.token.encode()

    async def on_models(self, fn: Callable[..., T], *args: Any) -> T:
        """Run model work in a worker thread; 503 when the queue in front of it is full."""
        import anyio
        from fastapi import HTTPException

        config = self.config
        if self.model_limiter.statistics().tasks_waiting >= config.queue:
            raise HTTPException(
                503,
                f"busy: {config.queue} requests are waiting for the models; retry later",
                headers={"Retry-After": "1"},
            )
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.model_limiter)

    async def on_store(self, fn: Callable[..., T], *args: Any) -> T:
        import anyio

        return await anyio.to_thread.run_sync(fn, *args)

    def ingest(self, body: bytes, name: str, is_bitstream: bool) -> tuple[ImageRecord, bool]:
        from icmbridge.codec import bitstream

        engine, store = self.engine, self.store
        data = body if is_bitstream else engine.encode_image(body, name)
        bitstream.parse_header(data)  # the CLI's checks and messages (the pixel limit too)
        sha = hashlib.sha256(data).hexdigest()
        existing = store.by_hash(sha)
        if existing is not None:
            return existing, False
        width, height, found = engine.detect(data)
        new = NewImage(
            data=data,
            sha256=sha,
            fingerprint=engine.fingerprint,
            width=width,
            height=height,
            detections=found,
            source="icmb" if is_bitstream else "image",
            name=name,
        )
        return store.add(new)


def _bearer_check(token: bytes) -> Callable[..., None]:
    """The dependency every /v1 route takes: 401 unless the request carries the token."""
    from fastapi import HTTPException, Request

    def authorised(request: Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return authorised


async def _read_upload(request: Any, limit: int) -> tuple[bytes, str, bool]:
    """(content, name, is a bitstream) of a raw or multipart body, within the size limit."""
    from fastapi import HTTPException, Request

    from icmbridge.codec.bitstream import MAGIC

    too_big = f"request body over the server's limit of {limit} bytes (serve --max-body)"
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPException(413, too_big)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_big)
        chunks.append(chunk)
    body = b"".join(chunks)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    name = request.headers.get("x-filename")
    if ctype == "multipart/form-data":
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(
                max_files=1, max_fields=16, max_part_size=limit
            )
        except Exception as exc:  # malformed multipart: Starlette raises its own types
            raise HTTPException(400, f"bad multipart body: {exc}") from None
        part = form.get("file")
        if part is None or isinstance(part, str):
            raise HTTPException(400, "a multipart upload needs a file field named 'file'")
        body = await part.read()
        name = name or part.filename
        ctype = (part.content_type or "").lower()
        await form.close()
    if not body:
        raise HTTPException(400, "the upload is empty")
    name = _clean_name(name)
    is_bitstream = body[:4] == MAGIC or ctype == BITSTREAM_TYPE or name.endswith(".icmb")
    return body, name, is_bitstream


def create_app(config: ServerConfig, engine: Engine | None = None, store: Store | None = None):
    """The ASGI app; loads the models and opens the store now (errors surface before serving).

    ``engine`` and ``store`` may be given to share them between apps (tests do).
    """
    from fastapi import FastAPI

    owns_store = store is None
    engine = engine or Engine(config)
    store = store or open_store(config.db, config.data_dir)
    foreign = [fp for fp in store.fingerprints() if fp != engine.fingerprint]
    if foreign:
        raise InputError(
            f"the store holds bitstreams of model {', '.join(foreign)}, but --base {config.base} "
            f"is {engine.fingerprint}: serve it with the base that wrote them"
        )
    shared = _Shared(config, engine, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_store:
            store.close()

    app = FastAPI(
        title="icmbridge",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.engine, app.state.store, app.state.config = engine, store, config
    app.state.model_limiter = shared.model_limiter
    _add_error_handlers(app)
    _add_page_routes(app)
    _add_image_routes(app, shared)
    _add_internal_error_handler(app)
    return app


def _add_error_handlers(app: Any) -> None:
    """Errors as JSON ``{"error": "<one line>"}``: HTTP errors, bad requests, refused content."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        return JSONResponse({"error": f"bad {where}: {first.get('msg', 'invalid')}"}, 400)

    @app.exception_handler(IcmError)
    async def refused(request: Request, exc: IcmError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 422)


def _add_internal_error_handler(app: Any) -> None:
    """Anything unexpected: logged with its traceback, answered 500 with only its type."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)


def _add_page_routes(app: Any) -> None:
    """The routes without a token: the health check and the browser page."""
    from fastapi.responses import HTMLResponse

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        html = resources.files("icmbridge.server").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(
            html,
            headers={
                "Cache-Control": "no-cache",
                "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; img-src blob:; connect-src 'self'",
            },
        )


def _add_image_routes(app: Any, shared: _Shared) -> None:
    """The /v1/images routes (bearer token): upload, list, download, one record, rendered view."""
    from fastapi import Depends, HTTPException, Request
    from fastapi.responses import JSONResponse, Response

    authorised = _bearer_check(shared.token)
    store, on_models, on_store = shared.store, shared.on_models, shared.on_store

    @app.post("/v1/images", dependencies=[Depends(authorised)])
    async def upload(request: Request) -> JSONResponse:
        body, name, is_bitstream = await _read_upload(request, shared.config.max_body)
        record, created = await on_models(shared.ingest, body, name, is_bitstream)
        return JSONResponse(
            record.to_json(),
            201 if created else 200,
            headers={"Location": f"/v1/images/{record.id}"},
        )

    @app.get("/v1/images", dependencies=[Depends(authorised)])
    async def listing(limit: int = 50, before: int | None = None) -> dict[str, Any]:
        if not 1 <= limit <= 500:
            raise HTTPException(400, f"limit must be 1..500, got {limit}")
        records = await on_store(store.page, limit, before)
        return {
            "images": [r.to_json() for r in records],
            "next": records[-1].id if len(records) == limit else None,
        }

    @app.get("/v1/images/{image_id}.icmb", dependencies=[Depends(authorised)])
    async def download(image_id: str) -> Response:
        data = await on_store(store.bitstream, _parse_id(image_id))
        if data is None:
            raise HTTPException(404, f"no image {image_id}")
        return Response(
            data,
            media_type=BITSTREAM_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{int(image_id)}.icmb"'},
        )

    @app.get("/v1/images/{image_id}", dependencies=[Depends(authorised)])
    async def one(image_id: str) -> dict[str, Any]:
        record = await on_store(store.get, _parse_id(image_id))
        if record is None:
            raise HTTPException(404, f"no image {image_id}")
        return record.to_json()

    @app.get("/v1/images/{image_id}/view", dependencies=[Depends(authorised)])
    async def view(image_id: str, decoder: str = "human") -> Response:
        if decoder not in DECODERS:
            raise HTTPException(400, f"decoder must be human or machine, got {decoder!r}")
        key = (_parse_id(image_id), decoder)
        png = shared.views.get(key)
        if png is None:
            data = await on_store(store.bitstream, key[0])
            if data is None:
                raise HTTPException(404, f"no image {image_id}")
            png = await on_models(shared.engine.render, data, decoder)
            shared.views.put(key, png)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private"})
