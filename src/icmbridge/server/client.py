"""The edge side: encode locally, upload the bitstream, retry until the server has it.

Uploads are idempotent because the server keys each bitstream by the SHA-256 of its bytes: a
retry after a lost answer gets ``200`` and the record the first attempt created (``201``), so
retrying is always safe. Only the standard library's ``urllib`` is used.
"""

from __future__ import annotations

import json
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from icmbridge.errors import IcmError, InputError

#: Answers worth another try: the server was busy, restarting or behind a failing proxy.
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
BITSTREAM_TYPE = "application/x-icmbridge"


class Refused(IcmError):
    """The server answered with a 4xx that no retry will change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(IcmError):
    """No usable answer from the server after every retry."""


@dataclass
class Uploaded:
    status: int  # 201: stored now; 200: the server already had these bytes
    record: dict[str, Any]


def read_token(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no token file {str(p)!r} (serve writes one to DATA/token)")
    token = p.read_text(encoding="utf-8", errors="replace").strip()
    if not token or any(c.isspace() for c in token):
        raise InputError(f"token file {str(p)!r} must hold one token on one line")
    return token


def _message(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip()[:200] or f"HTTP {status}"


def upload(
    url: str,
    token: str,
    data: bytes,
    name: str,
    retries: int = 6,
    timeout: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Uploaded:
    """POST ``data`` to ``url``/v1/images, retrying network errors and 5xx/429 with backoff.

    Backoff doubles from 0.5 s to at most 30 s, with jitter, or follows Retry-After.
    """
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/images",
        data=data,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": BITSTREAM_TYPE,
            "X-Filename": quote(name),
        },
    )
    last = ""
    for attempt in range(retries + 1):
        wait = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Uploaded(response.status, json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if exc.code not in RETRY_STATUS:
                raise Refused(exc.code, _message(body, exc.code)) from None
            last = f"HTTP {exc.code}: {_message(body, exc.code)}"
            after = exc.headers.get("Retry-After", "")
            if after.isdigit():
                wait = min(60.0, float(after))
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            last = str(reason) or type(reason).__name__
        if attempt < retries:
            sleep(wait)
    raise Unreachable(f"{url}: no answer after {retries + 1} tries (last: {last})")


def collect(paths: Iterable[str]) -> list[Path]:
    """Files to push: files as given, and in folders (recursively) images and .icmb files."""
    from PIL import Image

    suffixes = set(Image.registered_extensions()) | {".icmb"}
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            out += sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in suffixes
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"no such file or folder: {item!r}")
    if not out:
        raise InputError("no images or .icmb files to push")
    return out


def push(
    paths: Iterable[str],
    url: str,
    token_file: str,
    model: str = "base",
    retries: int = 6,
    out: Any = sys.stdout,
    err: Any = sys.stderr,
) -> int:
    """Encode and upload every file; one line per file. Exit code 2 if any file was refused."""
    from icmbridge.codec import bitstream

    if not url.startswith(("http://", "https://")):
        raise InputError(f"--to {url!r}: give the server's http:// or https:// URL")
    token = read_token(token_file)
    files = collect(paths)
    codec = None
    failed = 0
    for path in files:
        try:
            raw = path.read_bytes()
            if raw[:4] == bitstream.MAGIC or path.suffix.lower() == ".icmb":
                bitstream.parse_header(raw)  # refuse a broken file here, as `info` would
                data, how = raw, "as is"
            else:
                from icmbridge.codec.store import load_codec
                from icmbridge.imageio import load_image

                codec = codec or load_codec(model)
                x, _ = load_image(path, max_pixels=bitstream.max_pixels(), as_uint8=True)
                data, how = bitstream.encode(codec, x), f"encoded with {model}"
            result = upload(url, token, data, path.name, retries=retries)
        except Refused as exc:
            if exc.status == 401:
                raise IcmError(f"{url} refused the token in {token_file} (401)") from None
            print(f"error: {path}: {exc} (HTTP {exc.status})", file=err)
            failed += 1
            continue
        except Unreachable:
            raise
        except IcmError as exc:
            print(f"error: {path}: {exc}", file=err)
            failed += 1
            continue
        r = result.record
        state = "stored" if result.status == 201 else "already stored"
        print(
            f"{path} -> {url.rstrip('/')}/v1/images/{r['id']} ({state}, {how}): {r['bytes']} "
            f"bytes, {r['bpp']:.4f} bpp, {len(r['detections'])} detections",
            file=out,
            flush=True,
        )
    if failed:
        print(f"error: {failed} of {len(files)} files were not stored", file=err)
        return 2
    return 0
