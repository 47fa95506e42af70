"""``icmbridge serve`` and ``icmbridge push``: the API, the store (SQLite and PostgreSQL), the
page in a real browser, and a kill -9 of the server during uploads.

Most checks run in-process through FastAPI's TestClient; one module-scoped server runs as a real
``icmbridge serve`` subprocess for ``push``, concurrent uploads and headless Chromium.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from icmbridge import commands
from icmbridge.codec.store import available_models
from icmbridge.imageio import array_to_tensor, load_image

pytest.importorskip("fastapi")
pytestmark = [
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
    pytest.mark.skipif("base" not in available_models(), reason="weights/base not shipped"),
]

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[1]


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pictures() -> dict[str, np.ndarray]:
    """Small images: a face MTCNN finds on the base's output (128²), and three without one."""
    from skimage import data

    astronaut = data.astronaut()
    return {
        "face.png": astronaut[20:148, 140:268],
        "corner.png": astronaut[0:64, 0:64],
        "cat.png": np.asarray(Image.fromarray(data.chelsea()).resize((96, 64))),
        "coffee.png": np.asarray(Image.fromarray(data.coffee()).resize((80, 64))),
    }


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory, pictures) -> Path:
    folder = tmp_path_factory.mktemp("camera")
    for name, arr in pictures.items():
        Image.fromarray(arr).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from icmbridge.server.app import Engine, ServerConfig

    return Engine(ServerConfig(data_dir=tmp_path_factory.mktemp("unused"), token=TOKEN))


@pytest.fixture(scope="module")
def streams(engine, pictures) -> dict[str, bytes]:
    """The pictures encoded with the base, as ``icmbridge compress`` writes them."""
    from icmbridge.codec import bitstream

    return {n: bitstream.encode(engine.base, array_to_tensor(a)) for n, a in pictures.items()}


def _app(engine, folder: Path, **options):
    from icmbridge.server.app import ServerConfig, create_app

    return create_app(ServerConfig(data_dir=folder, token=TOKEN, **options), engine=engine)


@pytest.fixture(scope="module")
def client(engine, tmp_path_factory: pytest.TempPathFactory):
    from fastapi.testclient import TestClient

    with TestClient(_app(engine, tmp_path_factory.mktemp("srv"))) as c:
        yield c


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line message of a failing CLI command."""
    capsys.readouterr()
    assert commands.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0].removeprefix("error: ")


def _alive(client) -> None:
    assert client.get("/healthz").json() == {"ok": True}
    assert client.get("/v1/images", headers=AUTH).status_code == 200


# -- the API ---------------------------------------------------------------------------------------
def test_upload_detects_on_the_machine_decoder_like_the_cli(
    client, streams, tmp_path: Path, capsys, monkeypatch
) -> None:
    from icmbridge.tasks import build_task

    data = streams["face.png"]
    r = client.post("/v1/images", content=data, headers=AUTH)
    assert r.status_code in (200, 201), r.text
    rec = r.json()
    assert rec["bytes"] == len(data) and (rec["width"], rec["height"]) == (128, 128)
    assert rec["bpp"] == pytest.approx(8 * len(data) / 128**2)
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["detections"], "the face crop has a face MTCNN finds"

    # the task network on `icmbridge decompress --model base` of the same bytes
    (tmp_path / "face.icmb").write_bytes(data)
    monkeypatch.chdir(tmp_path)
    assert commands.main(["decompress", "face.icmb", "-o", "machine.png", "--model", "base"]) == 0
    x, _ = load_image(tmp_path / "machine.png")
    pred = build_task("face").predict(x)[0]
    want = [
        {"box": b, "score": s, "label": label}
        for b, s, label in zip(
            pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist(), strict=True
        )
    ]
    assert rec["detections"] == want
    assert client.get(f"/v1/images/{rec['id']}", headers=AUTH).json() == rec


@pytest.mark.parametrize("decoder,model", [("human", "human"), ("machine", "base")])
def test_views_are_byte_identical_to_cli_decompress(
    client, streams, tmp_path: Path, decoder: str, model: str
) -> None:
    data = streams["cat.png"]
    image_id = client.post("/v1/images", content=data, headers=AUTH).json()["id"]
    (tmp_path / "cat.icmb").write_bytes(data)
    out = tmp_path / f"{model}.png"
    assert (
        commands.main(["decompress", str(tmp_path / "cat.icmb"), "-o", str(out), "--model", model])
        == 0
    )
    r = client.get(f"/v1/images/{image_id}/view?decoder={decoder}", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == out.read_bytes()
    again = client.get(f"/v1/images/{image_id}/view?decoder={decoder}", headers=AUTH)
    assert again.content == r.content  # from the view cache
    stored = client.get(f"/v1/images/{image_id}.icmb", headers=AUTH)
    assert stored.status_code == 200 and stored.content == data


def test_same_bytes_are_stored_once(client, streams, tmp_path: Path) -> None:
    data = streams["coffee.png"]
    first = client.post("/v1/images", content=data, headers=AUTH)
    total = len(client.get("/v1/images?limit=500", headers=AUTH).json()["images"])
    again = client.post("/v1/images", content=data, headers=AUTH)
    multipart = client.post(
        "/v1/images", files={"file": ("other-name.icmb", data, "application/octet-stream")},
        headers=AUTH,
    )  # fmt: skip
    assert first.status_code in (200, 201)
    assert again.status_code == 200 and multipart.status_code == 200
    assert again.json() == first.json() == multipart.json()
    assert len(client.get("/v1/images?limit=500", headers=AUTH).json()["images"]) == total


def test_image_upload_is_encoded_like_cli_compress(client, image_dir: Path, tmp_path: Path) -> None:
    png = (image_dir / "corner.png").read_bytes()
    r = client.post("/v1/images", files={"file": ("corner.png", png, "image/png")}, headers=AUTH)
    assert r.status_code in (200, 201), r.text
    rec = r.json()
    assert rec["source"] == "image" and rec["name"] == "corner.png"
    out = tmp_path / "corner.icmb"
    assert commands.main(["compress", str(image_dir / "corner.png"), "-o", str(out)]) == 0
    assert client.get(f"/v1/images/{rec['id']}.icmb", headers=AUTH).content == out.read_bytes()
    # the raw body works too, and finds the same record
    raw = client.post("/v1/images", content=png, headers=AUTH | {"X-Filename": "corner.png"})
    assert raw.status_code == 200 and raw.json()["id"] == rec["id"]


def test_tiny_images_are_stored_without_detections(client, engine) -> None:
    """1×N images are valid bitstreams; the face detector cannot scan them (it raises)."""
    from icmbridge.codec import bitstream

    for h, w in [(1, 64), (13, 13)]:
        data = bitstream.encode(engine.base, torch.rand(1, 3, h, w))
        r = client.post("/v1/images", content=data, headers=AUTH)
        assert r.status_code == 201 and r.json()["detections"] == [], r.text
        view = client.get(f"/v1/images/{r.json()['id']}/view", headers=AUTH)
        with Image.open(io.BytesIO(view.content)) as im:
            assert im.size == (w, h)


def test_paging(client, streams) -> None:
    for data in streams.values():
        client.post("/v1/images", content=data, headers=AUTH)
    everything = client.get("/v1/images?limit=500", headers=AUTH).json()
    ids = [r["id"] for r in everything["images"]]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 4 and everything["next"] is None
    seen, before = [], None
    while True:
        page = client.get(
            "/v1/images?limit=2" + (f"&before={before}" if before else ""), headers=AUTH
        ).json()
        seen += [r["id"] for r in page["images"]]
        before = page["next"]
        if before is None:
            break
    assert seen == ids


def test_refusals_give_the_cli_reason_and_the_server_keeps_serving(
    client, engine, streams, tiny_codec, tmp_path: Path, capsys, monkeypatch
) -> None:
    from icmbridge.codec import bitstream

    monkeypatch.chdir(tmp_path)
    good = streams["corner.png"]

    def refused(body: bytes, status: int, headers: dict | None = None, **kw) -> str:
        r = client.post("/v1/images", content=body, headers=AUTH | (headers or {}), **kw)
        assert r.status_code == status, r.text
        _alive(client)
        return r.json()["error"]

    # not an image: what `icmbridge compress` says of the same file
    Path("junk.bin").write_bytes(b"this is not an image at all")
    message = refused(b"this is not an image at all", 422, {"X-Filename": "junk.bin"})
    assert message == _cli_error(["compress", "junk.bin", "-o", "junk.icmb"], capsys)
    # corrupt, truncated, foreign bitstreams: what `icmbridge decompress --model base` says
    corrupt = bytearray(good)
    corrupt[40] ^= 0x10
    foreign = bitstream.encode(tiny_codec, torch.rand(1, 3, 64, 64))
    for name, body in [("corrupt", bytes(corrupt)), ("short", good[:-7]), ("foreign", foreign),
                       ("magic", b"ICMB" + b"\0" * 3)]:  # fmt: skip
        Path(f"{name}.icmb").write_bytes(body)
        message = refused(body, 422)
        assert message == _cli_error(["decompress", f"{name}.icmb", "--model", "base"], capsys)
        if name == "foreign":  # refused naming both fingerprints
            assert bitstream.fingerprint(tiny_codec).hex() in message
            assert engine.fingerprint in message
    # a file sent as a bitstream that is none
    message = refused(b"GIF89a...", 422, {"Content-Type": "application/x-icmbridge"})
    assert message.startswith("not an icmbridge bitstream")
    # the pixel limit of the CLI (ICMBRIDGE_MAX_PIXELS), for bitstreams and images alike
    monkeypatch.setenv("ICMBRIDGE_MAX_PIXELS", "4000")
    Path("big.icmb").write_bytes(streams["face.png"])
    message = refused(streams["face.png"], 422)
    assert message == _cli_error(["decompress", "big.icmb"], capsys)
    png = io.BytesIO()
    Image.new("RGB", (100, 100)).save(png, "PNG")
    Path("big.png").write_bytes(png.getvalue())
    message = refused(png.getvalue(), 422, {"X-Filename": "big.png"})
    assert message == _cli_error(["compress", "big.png"], capsys)
    monkeypatch.delenv("ICMBRIDGE_MAX_PIXELS")
    # empty and malformed requests
    assert refused(b"", 400) == "the upload is empty"
    refused(b"--x\r\nnonsense", 400, {"Content-Type": "multipart/form-data; boundary=x"})
    r = client.post("/v1/images", files={"other": ("a.icmb", good)}, headers=AUTH)
    assert r.status_code == 400 and "'file'" in r.json()["error"]


def test_tokens_ids_and_sizes(engine, client, streams, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    data = streams["corner.png"]
    for method, path in [("post", "/v1/images"), ("get", "/v1/images"), ("get", "/v1/images/1"),
                         ("get", "/v1/images/1.icmb"), ("get", "/v1/images/1/view")]:  # fmt: skip
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = client.request(
                method, path, headers=headers, content=data if method == "post" else None
            )
            assert r.status_code == 401, (path, headers)
            assert r.headers["www-authenticate"] == "Bearer"
    for path in ["/v1/images/999999", "/v1/images/999999.icmb", "/v1/images/999999/view",
                 "/v1/images/abc", "/v1/images/-1.icmb"]:  # fmt: skip
        r = client.get(path, headers=AUTH)
        assert r.status_code == 404 and "no image" in r.json()["error"]
    assert client.get("/v1/images/1/view?decoder=nope", headers=AUTH).status_code == 400
    assert client.get("/v1/images?limit=0", headers=AUTH).status_code == 400
    assert client.get("/").status_code == 200  # the page itself holds no data
    # body size limit: by Content-Length and by what actually arrives
    with TestClient(_app(engine, tmp_path, max_body=len(data) - 1)) as small:
        r = small.post("/v1/images", content=data, headers=AUTH)
        assert r.status_code == 413 and "limit" in r.json()["error"]
        r = small.post("/v1/images", content=iter([data[:10], data[10:]]), headers=AUTH)
        assert r.status_code == 413
        assert small.post("/v1/images", content=data[:-8], headers=AUTH).status_code == 422
        assert small.get("/healthz").status_code == 200


def test_queue_bound_answers_503(engine, streams, tmp_path: Path) -> None:
    """With the model queue full, uploads get 503 + Retry-After while /healthz still answers."""
    from fastapi.testclient import TestClient

    app = _app(engine, tmp_path, queue=1)
    gate = threading.Event()
    real = engine.detect

    def slow_detect(data: bytes):
        gate.wait(30)
        return real(data)

    results: list[int] = []
    limiter = app.state.model_limiter

    def wait_for(check) -> None:
        deadline = time.time() + 60
        while not check(limiter.statistics()) and time.time() < deadline:
            time.sleep(0.01)

    with TestClient(app) as c:
        engine.detect = slow_detect  # type: ignore[method-assign]
        workers = [
            threading.Thread(target=lambda d=d: results.append(
                c.post("/v1/images", content=d, headers=AUTH).status_code))
            for d in list(streams.values())[:3]
        ]  # fmt: skip
        try:
            workers[0].start()
            wait_for(lambda st: st.borrowed_tokens == 1)  # the first one holds the models
            workers[1].start()
            wait_for(lambda st: st.tasks_waiting == 1)  # the second one fills the queue
            workers[2].start()
            workers[2].join(60)  # the third one is turned away at once
            assert results == [503]
            assert c.get("/healthz").status_code == 200
        finally:
            gate.set()
            for w in workers:
                w.join(60)
            engine.detect = real  # type: ignore[method-assign]
    assert sorted(results) == [201, 201, 503], results


# -- the store, on SQLite and PostgreSQL -----------------------------------------------------------
def _pg_url() -> str:
    url = os.environ.get("ICMBRIDGE_TEST_PG")
    if not url:
        pytest.skip("ICMBRIDGE_TEST_PG is unset (.ci/run starts a PostgreSQL and sets it)")
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=5).close()
    except Exception as exc:
        pytest.skip(f"PostgreSQL at ICMBRIDGE_TEST_PG is unreachable: {exc}")
    return url


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh schema in the test PostgreSQL, dropped afterwards."""
    import psycopg

    url = _pg_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    from icmbridge.server.store import open_store

    db = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    s = open_store(db, tmp_path)
    yield s
    s.close()


def _new(data: bytes, n: int = 2):
    from icmbridge.server.store import Detection, NewImage

    found = [Detection((1.5 * k, 2.0, 30.25, 40.125), 0.9 - k / 10, 1) for k in range(n)]
    return NewImage(data, hashlib.sha256(data).hexdigest(), "d039429244b8056b", 64, 32, found)


def test_store_round_trip_and_dedup(store) -> None:
    blob = bytes(range(256)) * 7
    rec, created = store.add(_new(blob, 3))
    assert created and rec.size == len(blob) and len(rec.detections) == 3
    assert rec.detections[1].box == (1.5, 2.0, 30.25, 40.125) and rec.detections[1].score == 0.8
    again, created = store.add(_new(blob, 1))
    assert not created and again == rec
    assert store.bitstream(rec.id) == blob and store.get(rec.id) == rec
    assert store.get(rec.id + 1000) is None and store.bitstream(rec.id + 1000) is None
    others = [store.add(_new(bytes([k]) * 50, 0))[0] for k in range(5)]
    assert [r.id for r in store.page(3)] == [r.id for r in others[::-1][:3]]
    assert [r.id for r in store.page(10, before=others[1].id)] == [others[0].id, rec.id]
    assert store.count() == 6 and store.partial_rows() == 0
    assert store.fingerprints() == ["d039429244b8056b"]


def test_store_concurrent_same_bytes(store) -> None:
    """Eight threads add the same bitstream at once: one row, one 'created', same record."""
    blob = os.urandom(2000)
    barrier = threading.Barrier(8)
    out: list = []

    def add() -> None:
        barrier.wait()
        out.append(store.add(_new(blob)))

    threads = [threading.Thread(target=add) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(created for _, created in out) == 1
    assert all(rec == out[0][0] for rec, _ in out) and store.count() == 1


def test_api_on_postgresql(engine, streams, pg_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    with TestClient(_app(engine, tmp_path, db=pg_url)) as c:
        r = c.post("/v1/images", content=streams["face.png"], headers=AUTH)
        assert r.status_code == 201 and r.json()["detections"]
        assert c.post("/v1/images", content=streams["face.png"], headers=AUTH).status_code == 200
        rid = r.json()["id"]
        assert c.get(f"/v1/images/{rid}", headers=AUTH).json() == r.json()
        assert c.get(f"/v1/images/{rid}.icmb", headers=AUTH).content == streams["face.png"]
    assert not (tmp_path / "icmbridge.sqlite3").exists()


def test_bad_database_url_is_one_line(tmp_path: Path, capsys) -> None:
    from icmbridge.server.store import open_store

    with pytest.raises(Exception, match="postgresql://"):
        open_store("mysql://x", tmp_path)
    with pytest.raises(Exception, match="cannot connect to the database"):
        open_store("postgresql://nobody@127.0.0.1:1/none", tmp_path)


# -- a real server: push, concurrency, the page ----------------------------------------------------
@dataclass
class Live:
    url: str
    token_file: Path
    proc: subprocess.Popen
    data: Path
    log: Path


def _serve(data: Path, *extra: str, env: dict | None = None) -> Live:
    """Start ``icmbridge serve --port 0`` and wait for the lines it prints once it listens."""
    log = data.parent / f"{data.name}.stderr.log"
    with open(log, "ab") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "icmbridge.cli", "serve", "--data", str(data), "--port", "0",
             *extra],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    got: list[str] = []
    deadline = time.time() + 180
    while not any(x.startswith("push:") for x in got):
        assert proc.poll() is None and time.time() < deadline, (got, log.read_text()[-2000:])
        with contextlib.suppress(queue.Empty):
            got.append(lines.get(timeout=0.5))
    url = re.search(r"(http://\S+)/ ", got[0]).group(1)
    token = re.search(r"^token: (\S+)", got[1]).group(1)
    return Live(url, Path(token), proc, data, log)


def _stop(live: Live) -> None:
    if live.proc.poll() is None:
        live.proc.send_signal(signal.SIGINT)
        try:
            live.proc.wait(20)
        except subprocess.TimeoutExpired:
            live.proc.kill()
            live.proc.wait()


def _http(url: str, token: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = _serve(tmp_path_factory.mktemp("live") / "srv")
    yield server
    _stop(server)


def test_serve_then_push_a_folder(live: Live, engine, image_dir: Path, streams) -> None:
    assert live.token_file == live.data / "token"
    assert live.token_file.stat().st_mode & 0o777 == 0o600
    token = live.token_file.read_text().strip()
    push = [sys.executable, "-m", "icmbridge.cli", "push", str(image_dir), "--to", live.url,
            "--token-file", str(live.token_file)]  # fmt: skip
    run = subprocess.run(push, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 4 and all("(stored, encoded with base)" in x for x in lines), lines
    # what push uploaded is exactly what `compress` writes (the module's bitstreams)
    listing = json.loads(_http(live.url + "/v1/images", token)[1])["images"]
    assert {r["sha256"] for r in listing} == {
        hashlib.sha256(d).hexdigest() for d in streams.values()
    }
    # a second push stores nothing new
    again = subprocess.run(push, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("already stored") == 4, again.stdout
    # eight concurrent uploads of new bytes: one 201, seven 200, one row
    fresh = distinct_streams(engine.base, 1, size=80)[0]
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def post() -> None:
        barrier.wait()
        codes.append(_http(live.url + "/v1/images", token, fresh)[0])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] * 7 + [201], codes
    assert len(json.loads(_http(live.url + "/v1/images", token)[1])["images"]) == 5
    assert _http(live.url + "/healthz", "")[0] == 200


def test_push_errors_are_one_line(live: Live, image_dir: Path, tmp_path: Path, capsys) -> None:
    from icmbridge.server import client as push_client

    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    message = _cli_error(["push", str(image_dir / "face.png"), "--to", live.url,
                          "--token-file", str(wrong)], capsys)  # fmt: skip
    assert message == f"{live.url} refused the token in {wrong} (401)"
    assert "no token file" in _cli_error(
        ["push", str(image_dir), "--to", live.url, "--token-file", str(tmp_path / "none")], capsys
    )
    (tmp_path / "junk.icmb").write_bytes(b"ICMBxx")
    capsys.readouterr()
    code = commands.main(["push", str(tmp_path / "junk.icmb"), "--to", live.url,
                     "--token-file", str(live.token_file)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[0].startswith(f"error: {tmp_path / 'junk.icmb'}: truncated"), err
    # nobody listening: retried with growing waits, then one line
    waits: list[float] = []
    with pytest.raises(push_client.Unreachable, match="no answer after 4 tries"):
        push_client.upload("http://127.0.0.1:1", "t", b"x", "x", retries=3, sleep=waits.append)
    assert len(waits) == 3 and waits[0] < waits[2]


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", *extra, url],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH (make chromium installs it)")
def test_page_in_headless_chromium(live: Live, image_dir: Path, tmp_path: Path) -> None:
    token = live.token_file.read_text().strip()
    if not json.loads(_http(live.url + "/v1/images", token)[1])["images"]:
        subprocess.run([sys.executable, "-m", "icmbridge.cli", "push", str(image_dir), "--to",
                        live.url, "--token-file", str(live.token_file)], check=True,
                       capture_output=True, timeout=300)  # fmt: skip
    records = json.loads(_http(live.url + "/v1/images", token)[1])["images"]
    for rec in records:  # render the views first: the browser's virtual time budget is short
        for decoder in ("human", "machine"):
            assert (
                _http(f"{live.url}/v1/images/{rec['id']}/view?decoder={decoder}", token)[0] == 200
            )
    n_boxes = sum(len(r["detections"]) for r in records)
    assert n_boxes >= 1

    def render(fragment: str) -> str:
        run = _chromium(f"{live.url}/#{fragment}", tmp_path / "profile", "--dump-dom")
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout

    def body_attrs(dom: str) -> dict[str, str]:
        body = re.search(r"<body([^>]*)>", dom)
        assert body, dom[:500]
        return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))

    dom = render(f"token={token}")
    attrs = body_attrs(dom)
    assert attrs["ready"] == "1" and attrs["decoder"] == "human", attrs
    assert attrs["images-failed"] == "0" and attrs["images-loaded"] == str(len(records)), attrs
    assert len(re.findall(r'<figure class="card"', dom)) == len(records)
    assert len(re.findall(r'class="box"', dom)) == n_boxes
    assert re.search(r'<input type="radio" name="decoder" value="machine">', dom)
    assert dom.count('src="blob:') == len(records)
    for rec in records:
        assert f"{rec['bytes']} bytes · {rec['bpp']:.3f} bpp" in dom
    # the switch: the machine decoder's views
    attrs = body_attrs(render(f"token={token}&decoder=machine"))
    assert attrs["decoder"] == "machine" and attrs["images-loaded"] == str(len(records)), attrs
    # without a token: the login field, no images
    dom = render("")
    assert re.search(r'<form id="login">', dom) and '<figure class="card"' not in dom
    shot = tmp_path / "server.png"
    run = _chromium(f"{live.url}/#token={token}", tmp_path / "profile", "--window-size=1000,560",
                    f"--screenshot={shot}")  # fmt: skip
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    with Image.open(shot) as im:
        assert np.asarray(im.convert("RGB")).std() > 20  # a real page, not a blank one
    if os.environ.get("ICMBRIDGE_SCREENSHOT"):  # refresh docs/server.png
        shutil.copy(shot, os.environ["ICMBRIDGE_SCREENSHOT"])


# -- kill -9 during uploads ------------------------------------------------------------------------
def distinct_streams(codec, n: int, size: int = 64) -> list[bytes]:
    """``n`` different small bitstreams: crops of a packaged photo at distinct offsets."""
    from skimage import data

    from icmbridge.codec import bitstream

    photo = data.astronaut()
    out = []
    for k in range(n):
        y, x = (k * 37) % (512 - size), (k * 53) % (512 - size)
        out.append(bitstream.encode(codec, array_to_tensor(photo[y : y + size, x : x + size])))
    assert len(set(out)) == n
    return out


@pytest.mark.slow
def test_kill9_during_uploads_loses_nothing_acknowledged(engine, tmp_path: Path) -> None:
    from icmbridge.server.store import SQLiteStore

    blobs = distinct_streams(engine.base, 40)
    server = _serve(tmp_path / "srv")
    token = server.token_file.read_text().strip()
    acked: dict[int, dict] = {}
    todo = iter(blobs)
    lock = threading.Lock()
    stop = threading.Event()

    def uploader() -> None:
        while not stop.is_set():
            with lock:
                data = next(todo, None)
            if data is None:
                return
            try:
                code, body = _http(server.url + "/v1/images", token, data)
            except OSError:
                return
            if code == 201:
                with lock:
                    acked[json.loads(body)["id"]] = json.loads(body) | {"_data": data}

    threads = [threading.Thread(target=uploader) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.time() + 240
    while len(acked) < 8 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(server.proc.pid, signal.SIGKILL)  # mid-upload: three are in flight
    server.proc.wait()
    stop.set()
    for t in threads:
        t.join(120)
    assert len(acked) >= 8

    db = SQLiteStore(server.data / "icmbridge.sqlite3")
    assert db.partial_rows() == 0
    for rec in db.page(500):  # everything stored is whole, acknowledged or not
        assert hashlib.sha256(db.bitstream(rec.id)).hexdigest() == rec.sha256
    db.close()
    again = _serve(server.data)
    try:
        for image_id, rec in acked.items():
            code, body = _http(f"{again.url}/v1/images/{image_id}", token)
            assert code == 200 and json.loads(body) == {
                k: v for k, v in rec.items() if k != "_data"
            }
            assert _http(f"{again.url}/v1/images/{image_id}.icmb", token)[1] == rec["_data"]
        # the server goes on taking uploads after the restart
        assert _http(again.url + "/v1/images", token, blobs[-1])[0] in (200, 201)
    finally:
        _stop(again)
