"""Measure ``icmbridge serve`` on loopback: load, kill -9 during uploads, hostile uploads.

Each mode starts a real ``icmbridge serve --port 0`` subprocess on a fresh data folder (SQLite),
sends it pre-encoded small bitstreams (distinct crops of a packaged photo, so every upload is a
new image) and checks what the server kept.

* ``load``: C client threads × N uploads, each followed by a view (human and machine in turn);
  images/s, p50/p95 latency of uploads and views, the server's peak RSS (VmHWM), and whether
  every 201 is listed with identical bytes (``lost`` must be 0).
* ``crash``: K rounds of uploads from 3 threads, the server SIGKILLed a random moment into each;
  after a final restart every 201'd upload must be there with identical bytes and detections, and
  no image row may have a detection count other than its detection rows (partial rows).
* ``hostile``: the mutation kinds of ``fuzz_bitstream.py`` (bit flips, byte edits, truncations,
  extensions, header fields with the checksum fixed, random payloads, random bytes) plus
  broken images, posted as uploads: every answer must be 4xx or 201/200, and the server alive.

    nice -n 10 .venv/bin/python benchmarks/server_load.py load \
        --json results/benchmarks/server_load.json
    nice -n 10 .venv/bin/python benchmarks/server_load.py crash \
        --json results/benchmarks/server_crash.json
    nice -n 10 .venv/bin/python benchmarks/server_load.py hostile \
        --json results/benchmarks/server_hostile.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import queue
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class Server:
    """``icmbridge serve`` as a subprocess; started on a free port, stopped or killed."""

    def __init__(self, data: Path, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.log = open(data.parent / f"{data.name}.log", "ab")  # noqa: SIM115 (kept open)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "icmbridge.cli", "serve", "--data", str(data), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, **(env or {})},
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(x) for x in self.proc.stdout], daemon=True
        ).start()
        got: list[str] = []
        deadline = time.time() + 300
        while not any(x.startswith("push:") for x in got):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"serve did not start: {got}")
            with contextlib.suppress(queue.Empty):
                got.append(lines.get(timeout=0.5))
        self.url = re.search(r"(http://\S+)/ ", got[0]).group(1)
        self.token = (data / "token").read_text().strip()

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def alive(self) -> bool:
        try:
            return request(self.url + "/healthz", "", timeout=10)[0] == 200
        except OSError:
            return False

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def request(
    url: str, token: str, data: bytes | None = None, headers: dict | None = None, timeout=300
) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=data, headers={"Authorization": f"Bearer {token}", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def bitstreams(n: int, size: int, offset: int = 0) -> list[bytes]:
    """``n`` distinct bitstreams of ``size``² crops of packaged photos, encoded with base."""
    import torch
    from skimage import data as skdata

    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec
    from icmbridge.imageio import array_to_tensor

    torch.set_num_threads(1)
    codec = load_codec("base")
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    rng = random.Random(offset)
    out: list[bytes] = []
    seen: set[bytes] = set()
    while len(out) < n:
        photo = photos[rng.randrange(len(photos))]
        h, w = photo.shape[:2]
        y, x = rng.randrange(h - size), rng.randrange(w - size)
        crop = photo[y : y + size, x : x + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        data = bitstream.encode(codec, array_to_tensor(crop.copy()))
        if data not in seen:  # distinct bytes: every upload is a new image
            seen.add(data)
            out.append(data)
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {}
    a = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1), "n": len(values)}  # fmt: skip


def listed(server: Server) -> dict[int, dict]:
    out, before = {}, None
    while True:
        q = "?limit=500" + (f"&before={before}" if before else "")
        page = json.loads(request(server.url + "/v1/images" + q, server.token)[1])
        out.update({r["id"]: r for r in page["images"]})
        before = page["next"]
        if before is None:
            return out


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "note": "2 shared CPU cores, a niced training job running beside; expect noise",
    }


# -- load ---------------------------------------------------------------------------------------
def run_load(args: argparse.Namespace, root: Path) -> dict:
    print(f"encoding {args.clients * args.uploads} distinct {args.size}² bitstreams …", flush=True)
    blobs = bitstreams(args.clients * args.uploads, args.size)
    server = Server(root / "srv")
    up_lat: list[float] = []
    view_lat: list[float] = []
    codes: dict[str, int] = {}
    acked: dict[int, bytes] = {}
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(args.uploads):
            data = blobs[k * args.uploads + i]
            t0 = time.perf_counter()
            code, body = request(server.url + "/v1/images", server.token, data)
            t1 = time.perf_counter()
            with lock:
                codes[f"upload {code}"] = codes.get(f"upload {code}", 0) + 1
                if code == 201:
                    up_lat.append(t1 - t0)
                    acked[json.loads(body)["id"]] = data
            if code != 201:
                continue
            decoder = ("human", "machine")[i % 2]
            image_id = json.loads(body)["id"]
            t0 = time.perf_counter()
            code, _ = request(
                f"{server.url}/v1/images/{image_id}/view?decoder={decoder}", server.token
            )
            t1 = time.perf_counter()
            with lock:
                codes[f"view {code}"] = codes.get(f"view {code}", 0) + 1
                if code == 200:
                    view_lat.append(t1 - t0)

    health: list[float] = []
    done = threading.Event()

    def probe() -> None:  # the event loop must keep answering while models run
        while not done.is_set():
            t0 = time.perf_counter()
            request(server.url + "/healthz", "", timeout=30)
            health.append(time.perf_counter() - t0)
            time.sleep(0.5)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    prober = threading.Thread(target=probe)
    start = time.perf_counter()
    prober.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done.set()
    prober.join()
    rss = server.peak_rss_mb()
    stored = listed(server)
    lost = sum(
        1
        for image_id, data in acked.items()
        if image_id not in stored
        or request(f"{server.url}/v1/images/{image_id}.icmb", server.token)[1] != data
    )
    server.stop()
    return {
        "clients": args.clients,
        "uploads_per_client": args.uploads,
        "image": f"{args.size}x{args.size}",
        "mean_bytes": round(sum(map(len, blobs)) / len(blobs), 1),
        "wall_s": round(wall, 1),
        "images_per_s": round(len(acked) / wall, 2),
        "requests_per_s": round((len(up_lat) + len(view_lat)) / wall, 2),
        "upload_latency": percentiles(up_lat),
        "view_latency": percentiles(view_lat),
        "healthz_latency_during_load": percentiles(health),
        "status_counts": codes,
        "acknowledged": len(acked),
        "stored": len(stored),
        "lost": lost,
        "server_peak_rss_mb": round(rss, 1),
    }


# -- crash --------------------------------------------------------------------------------------
def run_crash(args: argparse.Namespace, root: Path) -> dict:
    from icmbridge.server.store import SQLiteStore

    per_round = 120
    print(f"encoding {args.kills * per_round} distinct bitstreams …", flush=True)
    blobs = bitstreams(args.kills * per_round, args.size, offset=10_000)
    data_dir = root / "srv"
    rng = random.Random(0)
    acked: dict[int, dict] = {}
    in_flight_at_kill = 0
    rounds = []
    for k in range(args.kills):
        server = Server(data_dir)
        todo = iter(blobs[k * per_round : (k + 1) * per_round])
        lock = threading.Lock()
        sending = [0]
        got = [0]

        def uploader(
            server: Server = server, todo=todo, lock=lock, sending=sending, got=got
        ) -> None:
            while True:
                with lock:
                    data = next(todo, None)
                    if data is None:
                        return
                    sending[0] += 1
                try:
                    code, body = request(server.url + "/v1/images", server.token, data)
                except OSError:
                    return  # the server died under this request: not acknowledged
                with lock:
                    sending[0] -= 1
                    if code == 201:
                        rec = json.loads(body)
                        acked[rec["id"]] = rec | {"_sha": hashlib.sha256(data).hexdigest()}
                        got[0] += 1

        threads = [threading.Thread(target=uploader) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.time() + 300
        while got[0] == 0 and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.3, 2.5))  # a random moment into the uploads
        with lock:
            in_flight = sending[0]
        server.kill()
        for t in threads:
            t.join()
        server.log.close()
        in_flight_at_kill += in_flight
        rounds.append({"acknowledged": got[0], "in_flight_at_kill": in_flight})
        print(
            f"round {k + 1}: {got[0]} acknowledged, killed with {in_flight} in flight", flush=True
        )

    db = SQLiteStore(data_dir / "icmbridge.sqlite3")
    partial = db.partial_rows()
    torn = sum(hashlib.sha256(db.bitstream(r.id)).hexdigest() != r.sha256 for r in db.page(100_000))
    total_rows = db.count()
    db.close()
    server = Server(data_dir)
    missing = changed = 0
    for image_id, rec in acked.items():
        code, body = request(f"{server.url}/v1/images/{image_id}", server.token)
        if code != 200:
            missing += 1
            continue
        now = json.loads(body)
        same = {k: v for k, v in rec.items() if k != "_sha"} == now
        code, data = request(f"{server.url}/v1/images/{image_id}.icmb", server.token)
        if not same or hashlib.sha256(data).hexdigest() != rec["_sha"]:
            changed += 1
    server.stop()
    return {
        "kills": args.kills,
        "rounds": rounds,
        "acknowledged": len(acked),
        "in_flight_at_kills": in_flight_at_kill,
        "rows_after_restart": total_rows,
        "stored_but_unacknowledged": total_rows - len(acked),
        "missing": missing,
        "changed_bytes_or_detections": changed,
        "partial_rows": partial,
        "rows_whose_bytes_fail_their_hash": torn,
    }


# -- hostile ------------------------------------------------------------------------------------
def broken_images(rng: random.Random) -> tuple[str, bytes]:
    """Image-side hostile uploads: truncated or edited PNG/JPEG, decompression-bomb headers."""
    import numpy as np
    from PIL import Image

    arr = (np.random.default_rng(rng.randrange(2**32)).random((48, 48, 3)) * 255).astype("uint8")
    buf = io.BytesIO()
    fmt = rng.choice(["PNG", "JPEG"])
    Image.fromarray(arr).save(buf, fmt)
    raw = bytearray(buf.getvalue())
    kind = rng.choice(["image-truncated", "image-bytes", "image-bomb"])
    if kind == "image-truncated":
        return kind, bytes(raw[: rng.randrange(8, len(raw))])
    if kind == "image-bytes":
        for _ in range(rng.randint(1, 16)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return kind, bytes(raw)

    # a 60-byte PNG announcing 40000 x 40000 pixels (IHDR, an empty IDAT, IEND)
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 1, 0, 0, 0, 0)
    return kind, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(
        b"IEND", b""
    )


def run_hostile(args: argparse.Namespace, root: Path) -> dict:
    from fuzz_bitstream import mutate

    seeds = bitstreams(4, args.size, offset=20_000) + bitstreams(1, 128, offset=20_004)
    # bounded work per case, as fuzz_bitstream.py: a fuzzed header may announce up to 1 MP
    server = Server(root / "srv", env={"ICMBRIDGE_MAX_PIXELS": str(args.max_pixels)})
    counts: dict[str, dict[str, int]] = {}
    bad: list[str] = []
    latency: list[float] = []
    for case in range(args.cases):
        rng = random.Random(case)
        if case % 5 == 4:
            kind, data = broken_images(rng)
        else:
            kind, data = mutate(rng.choice(seeds), rng)
        t0 = time.perf_counter()
        code, body = request(server.url + "/v1/images", server.token, data)
        latency.append(time.perf_counter() - t0)
        by_kind = counts.setdefault(kind, {})
        by_kind[str(code)] = by_kind.get(str(code), 0) + 1
        ok = 400 <= code < 500 or code in (200, 201)
        if ok and code >= 400:
            try:
                message = json.loads(body)["error"]
                ok = bool(message) and "\n" not in message
            except (ValueError, KeyError):
                ok = False
        if not ok:
            bad.append(f"case {case} ({kind}): {code} {body[:200]!r}")
        if case % 25 == 0 and not server.alive():
            bad.append(f"case {case}: /healthz did not answer")
            break
    alive = server.alive() and server.proc.poll() is None
    rss = server.peak_rss_mb()
    server.stop()
    statuses: dict[str, int] = {}
    for by_kind in counts.values():
        for code, n in by_kind.items():
            statuses[code] = statuses.get(code, 0) + n
    return {
        "cases": args.cases,
        "max_pixels": args.max_pixels,
        "status_counts": statuses,
        "by_kind": counts,
        "not_4xx_or_stored": len(bad),
        "examples": bad[:10],
        "server_alive_after": alive,
        "latency": percentiles(latency),
        "server_peak_rss_mb": round(rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["load", "crash", "hostile"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--uploads", type=int, default=50, help="per client")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--max-pixels", type=int, default=1 << 20)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    started = machine()
    with tempfile.TemporaryDirectory(prefix="icmbridge-bench-") as tmp:
        result = {"load": run_load, "crash": run_crash, "hostile": run_hostile}[args.mode](
            args, Path(tmp)
        )
    result = {"mode": args.mode, "command": " ".join(sys.argv), "machine": started, **result}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
