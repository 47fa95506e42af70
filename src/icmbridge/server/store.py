"""The server's one data layer: SQLite by default, PostgreSQL for a ``postgresql://`` URL.

Each image is one row holding the bitstream itself (a BLOB / BYTEA) and its detections are rows
of a second table, written in the same transaction: an upload is there whole or not at all, so a
crash can lose only uploads that were never acknowledged. The SHA-256 of the bytes is unique, so
the same bitstream is stored once however many times (and however concurrently) it arrives.

Both back ends share the SQL below (``?`` placeholders, rewritten to ``%s`` for psycopg) and a
single connection guarded by a lock: writes are a few per second at most (each follows a model
decode), so a pool would buy nothing but failure modes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icmbridge.errors import InputError

SQLITE_FILE = "icmbridge.sqlite3"

_COLUMNS = "id, sha256, fingerprint, width, height, size, n_detections, created, source, name"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id {id_type},
    sha256 TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    size INTEGER NOT NULL,
    n_detections INTEGER NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    data {blob_type} NOT NULL
);
CREATE TABLE IF NOT EXISTS detections (
    image_id BIGINT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    x0 DOUBLE PRECISION NOT NULL,
    y0 DOUBLE PRECISION NOT NULL,
    x1 DOUBLE PRECISION NOT NULL,
    y1 DOUBLE PRECISION NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    label INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
)
"""


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]
    score: float
    label: int

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box), "score": self.score, "label": self.label}


@dataclass(frozen=True)
class NewImage:
    """What an upload adds: the bitstream and what the server computed from it."""

    data: bytes
    sha256: str
    fingerprint: str
    width: int
    height: int
    detections: Sequence[Detection]
    source: str = "icmb"  # "icmb": uploaded as a bitstream; "image": encoded by the server
    name: str = ""


@dataclass(frozen=True)
class ImageRecord:
    id: int
    sha256: str
    fingerprint: str
    width: int
    height: int
    size: int
    created: float
    source: str
    name: str
    detections: list[Detection] = field(default_factory=list)

    @property
    def bpp(self) -> float:
        return 8 * self.size / (self.width * self.height)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bytes": self.size,
            "bpp": self.bpp,
            "width": self.width,
            "height": self.height,
            "detections": [d.to_json() for d in self.detections],
            "sha256": self.sha256,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "name": self.name,
            "created": self.created,
        }


class Store:
    """Images and their detections in SQL; thread-safe (one connection, one lock)."""

    placeholder = "?"
    id_type = "INTEGER PRIMARY KEY AUTOINCREMENT"
    blob_type = "BLOB"
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # -- back-end specifics ---------------------------------------------------------------------
    def _connection(self) -> Any:
        raise NotImplementedError

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _create_schema(self) -> None:
        with self._lock, self._transaction() as cur:
            for statement in _SCHEMA.format(id_type=self.id_type, blob_type=self.blob_type).split(
                ";"
            ):
                cur.execute(statement)

    # -- queries ----------------------------------------------------------------------------------
    def _records(self, cur: Any, rows: list[Sequence[Any]]) -> list[ImageRecord]:
        if not rows:
            return []
        ids = [int(r[0]) for r in rows]
        marks = ",".join("?" * len(ids))
        cur.execute(
            self._sql(
                "SELECT image_id, x0, y0, x1, y1, score, label FROM detections "
                f"WHERE image_id IN ({marks}) ORDER BY image_id, idx"
            ),
            ids,
        )
        found: dict[int, list[Detection]] = {i: [] for i in ids}
        for image_id, x0, y0, x1, y1, score, label in cur.fetchall():
            found[int(image_id)].append(Detection((x0, y0, x1, y1), score, int(label)))
        return [
            ImageRecord(
                id=int(r[0]),
                sha256=r[1],
                fingerprint=r[2],
                width=int(r[3]),
                height=int(r[4]),
                size=int(r[5]),
                created=float(r[7]),
                source=r[8],
                name=r[9],
                detections=found[int(r[0])],
            )  # fmt: skip
            for r in rows
        ]

    def add(self, image: NewImage) -> tuple[ImageRecord, bool]:
        """Store ``image`` unless its bytes are already there: (the record, whether it is new).

        Bitstream and detections go in one transaction; a concurrent upload of the same bytes
        meets the unique constraint on the hash and gets the record the first one wrote.
        """
        with self._lock:
            with self._transaction() as cur:
                cur.execute(
                    self._sql(
                        "INSERT INTO images (sha256, fingerprint, width, height, size, "
                        "n_detections, created, source, name, data) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (sha256) DO NOTHING RETURNING id"
                    ),
                    (
                        image.sha256, image.fingerprint, image.width, image.height,
                        len(image.data), len(image.detections), time.time(), image.source,
                        image.name, image.data,
                    ),
                )  # fmt: skip
                row = cur.fetchone()
                if row is not None:
                    cur.executemany(
                        self._sql(
                            "INSERT INTO detections (image_id, idx, x0, y0, x1, y1, score, label)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                        ),
                        [
                            (row[0], k, *d.box, d.score, d.label)
                            for k, d in enumerate(image.detections)
                        ],
                    )
            created = row is not None
        record = self.get(int(row[0])) if created else self.by_hash(image.sha256)
        assert record is not None  # written above, and rows are never deleted
        return record, created

    def _select(self, where: str, params: Sequence[Any], tail: str = "") -> list[ImageRecord]:
        with self._lock, self._transaction() as cur:
            cur.execute(self._sql(f"SELECT {_COLUMNS} FROM images {where} {tail}"), params)
            return self._records(cur, cur.fetchall())

    def get(self, image_id: int) -> ImageRecord | None:
        found = self._select("WHERE id = ?", (image_id,))
        return found[0] if found else None

    def by_hash(self, sha256: str) -> ImageRecord | None:
        found = self._select("WHERE sha256 = ?", (sha256,))
        return found[0] if found else None

    def page(self, limit: int, before: int | None = None) -> list[ImageRecord]:
        """Newest first; ``before``: only ids below it (the previous page's last id)."""
        if before is None:
            return self._select("", (), f"ORDER BY id DESC LIMIT {int(limit)}")
        return self._select("WHERE id < ?", (before,), f"ORDER BY id DESC LIMIT {int(limit)}")

    def bitstream(self, image_id: int) -> bytes | None:
        with self._lock, self._transaction() as cur:
            cur.execute(self._sql("SELECT data FROM images WHERE id = ?"), (image_id,))
            row = cur.fetchone()
        return None if row is None else bytes(row[0])

    def count(self) -> int:
        with self._lock, self._transaction() as cur:
            cur.execute("SELECT COUNT(*) FROM images")
            return int(cur.fetchone()[0])

    def fingerprints(self) -> list[str]:
        """The model fingerprints of the stored bitstreams (to refuse a server on another base)."""
        with self._lock, self._transaction() as cur:
            cur.execute("SELECT DISTINCT fingerprint FROM images")
            return sorted(r[0] for r in cur.fetchall())

    def partial_rows(self) -> int:
        """Images whose stored detection count differs from their detection rows (must be 0)."""
        with self._lock, self._transaction() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM images i WHERE i.n_detections <> "
                "(SELECT COUNT(*) FROM detections d WHERE d.image_id = i.id)"
            )
            return int(cur.fetchone()[0])


class SQLiteStore(Store):
    """One file in the data folder; WAL, and ``synchronous=FULL`` so a 201 survives power loss."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        try:
            self._conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise InputError(f"cannot open the database {str(path)!r}: {exc}") from None
        self._create_schema()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStore(Store):
    """PostgreSQL through psycopg 3; reconnects once when the server went away between calls."""

    placeholder = "%s"
    id_type = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    blob_type = "BYTEA"

    def __init__(self, url: str) -> None:
        import psycopg

        super().__init__()
        self.url = url
        self._psycopg = psycopg
        self.integrity_errors = (psycopg.IntegrityError,)
        self._conn = self._connect()
        self._create_schema()

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, connect_timeout=10, autocommit=True)
        except self._psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot connect to the database: {first}") from None

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_store(db: str | None, data_dir: Path) -> Store:
    """SQLite in ``data_dir`` when ``db`` is None (or a ``sqlite:///PATH`` URL), else PostgreSQL."""
    if db is None:
        return SQLiteStore(data_dir / SQLITE_FILE)
    if db.startswith("sqlite:///"):
        return SQLiteStore(Path(db[len("sqlite:///") :]))
    if db.startswith(("postgresql://", "postgres://")):
        return PostgresStore(db)
    raise InputError(f"--db {db!r}: give a postgresql://… URL (or leave it out for SQLite)")
