"""The one results schema: what ``evaluate``, ``compare``, ``demo``, ``ablate`` and ``curves`` write
and what ``report`` reads.

A :class:`Results` holds the run's context (command, set, task, base, ground truth) and one
:class:`CodecResult` per codec: its means over the set, their 95 % intervals, paired differences
to the reference codec and the per-image rows. The means are computed once, where the images were
scored (:func:`icmbridge.evaluation.core.score`: set-level COCO AP is not a mean of images), and
every reader takes them from here instead of re-deriving them.

Files carry ``"schema": SCHEMA_VERSION``. :meth:`Results.from_dict` validates a file and says in one
line what is wrong. Files written before the schema existed (no ``schema`` key) load when every
codec has its ``mean``; otherwise they are refused with a line saying to re-run the command.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from icmbridge.errors import InputError

SCHEMA_VERSION = 2
"""Version 1: the unversioned files of icmbridge ≤ 0.1 (same keys, no ``schema``)."""

#: What a codec is: one of our decoders, ours + a post-filter, or a classical codec.
CODEC_KINDS = ("ours", "postfilter", "classical")
#: What wrote a file.
RESULT_KINDS = ("demo", "ablation", "curves", "evaluate", "compare", "other")


class SchemaError(InputError):
    """A results file that does not follow the schema (one line, the path first)."""


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise SchemaError(f"{where}: {what}")


def _is_number(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _interval(v: Any) -> bool:
    return v is None or (
        isinstance(v, list | tuple)
        and len(v) == 2
        and all(isinstance(x, int | float) or x is None for x in v)
    )


@dataclass
class CodecResult:
    """One codec on the set: ``mean`` per metric (None: not measured), ``ci`` per metric
    ``[lo, hi]``, ``vs`` = ``{"reference": label, "diff": {metric: {...}}}``, ``images`` one
    row per image (``name`` plus the per-image metrics)."""

    kind: str
    description: str
    mean: dict[str, float | int | None]
    ci: dict[str, list[float | None] | None] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)
    vs: dict[str, Any] | None = None
    params: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "codec") -> CodecResult:
        _check(isinstance(data, Mapping), where, "is not an object")
        _check(
            data.get("kind", "ours") in CODEC_KINDS,
            where,
            f"kind {data.get('kind')!r} is none of {', '.join(CODEC_KINDS)}",
        )
        mean = data.get("mean")
        _check(isinstance(mean, Mapping), where, "has no 'mean' object")
        bad = [k for k, v in mean.items() if not _is_number(v)]
        _check(not bad, where, f"mean of {', '.join(map(str, bad))} is not a number or null")
        ci = data.get("ci") or {}
        _check(isinstance(ci, Mapping), where, "'ci' is not an object")
        bad = [k for k, v in ci.items() if not _interval(v)]
        _check(not bad, where, f"ci of {', '.join(map(str, bad))} is not a [lo, hi] pair or null")
        images = data.get("images") or []
        _check(isinstance(images, list), where, "'images' is not a list")
        for i, row in enumerate(images):
            _check(
                isinstance(row, Mapping) and isinstance(row.get("name"), str),
                where,
                f"image row {i} has no name",
            )
        vs = data.get("vs")
        _check(vs is None or isinstance(vs, Mapping), where, "'vs' is not an object")
        return cls(
            kind=str(data.get("kind", "ours")),
            description=str(data.get("description", "")),
            mean=dict(mean),
            ci={k: None if v is None else list(v) for k, v in ci.items()},
            images=[dict(r) for r in images],
            vs=dict(vs) if vs else None,
            params=dict(data["params"]) if isinstance(data.get("params"), Mapping) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if not (k in ("vs", "params") and v is None)}


@dataclass
class Results:
    """A results file. ``codecs`` in the order tables show them; ``extra`` holds what only one
    command writes (e.g. the ablation's rows and settings)."""

    kind: str
    title: str
    command: str
    set: str
    task: str | None
    codecs: dict[str, CodecResult] = field(default_factory=dict)
    n_images: int | None = None
    base: str | None = None
    reference: str | None = "base"
    ground_truth: str | None = None
    uncompressed: dict[str, Any] | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    rate_curves: dict[str, list[dict[str, Any]]] | None = None
    bd_rate: dict[str, dict[str, float | None]] | None = None
    # 95 % bootstrap interval of each BD-rate, same keys: [lo, hi] or None
    bd_rate_ci: dict[str, dict[str, list[float] | None]] | None = None
    table1: list[dict[str, Any]] | None = None
    table1_note: str | None = None
    tradeoff: list[dict[str, Any]] | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    # what computed cvvdp_jod / ssimulacra2 (package versions, display model); None: not computed
    people_metrics: dict[str, Any] | None = None
    seconds: float | None = None
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["codecs"] = {k: c.to_dict() for k, c in self.codecs.items()}
        return {"schema": d.pop("schema"), **d}

    def write(self, path: str | Path) -> Path:
        """Validate (a writer's bug shows here, not in the report) and write atomically."""
        from icmbridge.utils.atomic import atomic_write_bytes

        data = self.to_dict()
        Results.from_dict(json.loads(json.dumps(data, default=_jsonable)), str(path))
        text = json.dumps(data, indent=1, default=_jsonable)
        atomic_write_bytes(Path(path), (text + "\n").encode())
        return Path(path)

    @classmethod
    def from_dict(cls, data: Any, where: str = "results.json") -> Results:
        _check(isinstance(data, Mapping), where, "does not hold a JSON object")
        version = data.get("schema", 1)
        _check(
            isinstance(version, int) and 1 <= version <= SCHEMA_VERSION,
            where,
            f"results schema {version!r} is newer than this icmbridge reads ({SCHEMA_VERSION}); "
            "update icmbridge",
        )
        if version == 1:
            data = _upgrade_v1(data)
        raw = data.get("codecs", {})
        _check(isinstance(raw, Mapping), where, "'codecs' is not an object")
        if version == 1:
            missing = [k for k, v in raw.items() if isinstance(v, Mapping) and "mean" not in v]
            _check(
                not missing,
                where,
                "written by an older icmbridge without means for "
                f"{', '.join(map(str, missing))}; re-run the command that wrote it",
            )
        codecs = {str(k): CodecResult.from_dict(v, f"{where}: codec {k!r}") for k, v in raw.items()}
        known = {f.name for f in fields(cls)} - {"codecs", "schema"}
        values = {k: data[k] for k in known if k in data}
        extra = dict(values.pop("extra", None) or {})
        extra.update({k: v for k, v in data.items() if k not in known | {"codecs", "schema"}})
        kind = values.pop("kind", "other")
        _check(kind in RESULT_KINDS, where, f"kind {kind!r} is none of {', '.join(RESULT_KINDS)}")
        for key in ("title", "command", "set"):
            values[key] = str(values.get(key) or "")
        values.setdefault("task", None)
        for key in (
            "rate_curves",
            "bd_rate",
            "bd_rate_ci",
            "uncompressed",
            "unavailable",
            "people_metrics",
        ):
            _check(
                values.get(key) is None or isinstance(values[key], Mapping),
                where,
                f"'{key}' is not an object",
            )
        for key in ("table1", "tradeoff"):
            _check(
                values.get(key) is None or isinstance(values[key], list),
                where,
                f"'{key}' is not a list",
            )
        values["unavailable"] = dict(values.get("unavailable") or {})
        return cls(kind=kind, codecs=codecs, extra=extra, schema=SCHEMA_VERSION, **values)

    @classmethod
    def read(cls, path: str | Path) -> Results:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read {str(path)!r}: {exc}") from exc
        return cls.from_dict(data, str(path))


def _upgrade_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """An unversioned file in today's shape: ``evaluate``'s old top-level ``images``/``mean``
    become one codec, and the writer is told from the keys each command wrote."""
    data = dict(data)
    if "codecs" not in data and isinstance(data.get("mean"), Mapping):
        model = str(data.get("model") or "model")
        data["codecs"] = {
            model: {
                "kind": "ours",
                "description": model,
                **{k: data.pop(k) for k in ("mean", "ci", "images") if k in data},
            }
        }
        data.setdefault("kind", "evaluate")
        data.setdefault("base", model)
    if "kind" not in data:
        if data.get("table1") is not None:
            data["kind"] = "ablation"
        elif data.get("rate_curves") is not None and not data.get("codecs"):
            data["kind"] = "curves"
        elif str(data.get("title", "")).startswith("icmbridge demo"):
            data["kind"] = "demo"
        elif str(data.get("command", "")).startswith("icmbridge compare"):
            data["kind"] = "compare"
    return data


def _jsonable(obj: Any) -> Any:
    """numpy scalars and arrays, tuples: as JSON values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def codec_result(label_kind: str, description: str, scored: Mapping[str, Any]) -> CodecResult:
    """A :class:`CodecResult` from a :func:`~icmbridge.evaluation.core.score` result."""
    return CodecResult(
        kind=label_kind,
        description=description,
        mean=dict(scored["mean"]),
        ci={k: None if v is None else list(v) for k, v in (scored.get("ci") or {}).items()},
        images=list(scored["images"]),
        vs=dict(scored["vs"]) if scored.get("vs") else None,
    )
