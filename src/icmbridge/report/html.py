"""``build_report``: one static, self-contained HTML page from a results folder.

The page is rendered from the Jinja2 template ``templates/report.html.j2`` with autoescape on: a
label, description, set or task name from ``results.json`` is always text, never markup (the
functions here only build plain data for it). The page needs no network: its CSS and JS are
package files (``static/``) copied to ``assets/`` next to ``index.html``, images are files there
too (so the page stays small and the images can be opened on their own). The page renders from a
validated :class:`~icmbridge.evaluation.results.Results`; anything in it may be null or absent, and
the page shows what exists and says what is missing. Every metric's title, format and better
direction come from the metric catalogue (:mod:`icmbridge.metrics.catalogue`).

The page's script records on ``<body>`` how many images loaded (``data-images-loaded``,
``data-images-failed``, ``data-images-total``) so a headless browser can check the page.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image, ImageDraw

from icmbridge.errors import InputError
from icmbridge.evaluation.results import CodecResult, Results
from icmbridge.metrics import catalogue
from icmbridge.report import crops, plots
from icmbridge.report.plots import num
from icmbridge.utils.atomic import atomic_directory

#: Written into every report folder; only folders holding it (or empty ones) may be replaced.
MARKER = ".icmbridge-report"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: The order the comparisons show codecs in; ``base+…`` post-filters follow ``base``.
PREFERRED = ("base", "base+*", "human", "human-li", "jpeg")


@dataclass
class Codec:
    """One codec of the results as the page shows it: finite means of every catalogue metric,
    the per-image rows by image name (without suffix), intervals and paired differences."""

    label: str
    kind: str
    description: str
    mean: dict[str, float | None]
    images: dict[str, Mapping[str, Any]]
    params: Any = None
    #: 95 % interval over images of each mean, ``{key: (lo, hi)}``
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: paired differences to a reference codec: ``{"reference": label, "diff": {key: {...}}}``
    vs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Shown:
    """One image of the comparisons: its crop and the asset paths per codec label."""

    name: str
    box: crops.Box
    picked_by: str | None
    where: str
    crop: dict[str, str] = field(default_factory=dict)
    full: dict[str, str] = field(default_factory=dict)
    caption: dict[str, tuple[float | None, float | None, float | None]] = field(
        default_factory=dict
    )


# ------------------------------------------------------------------------------------- reading
def load_results(results_dir: Path) -> Results:
    """results.json, validated against the results schema (:mod:`icmbridge.evaluation.results`);
    a missing, unreadable or malformed file is the user's error, in one line."""
    path = results_dir / "results.json"
    if not results_dir.is_dir():
        raise InputError(f"results folder {str(results_dir)!r} does not exist")
    if not path.is_file():
        raise InputError(
            f"no results.json in {str(results_dir)!r} (write one with `icmbridge demo`, "
            "`icmbridge ablate`, `icmbridge curves` or `icmbridge compare`)"
        )
    return Results.read(path)


def _image_key(name: str) -> str:
    p = Path(name)
    return (p.with_suffix("") if p.suffix.lower() in IMAGE_SUFFIXES else p).as_posix()


def codec_view(label: str, entry: CodecResult) -> Codec:
    """A codec of validated results; means come from 'mean' as the scorer wrote them (never
    re-derived from the per-image rows: set-level AP is not a mean of images)."""
    keys = catalogue.select(per_image=None, table=True)
    return Codec(
        label=label,
        kind=entry.kind,
        description=entry.description,
        mean={key: num(entry.mean.get(key)) for key in keys},
        images={_image_key(row["name"]): row for row in entry.images},
        params=entry.params,
        ci=parse_intervals(entry.ci),
        vs=entry.vs or {},
    )


def parse_codecs(results: Results) -> dict[str, Codec]:
    """Every codec of ``results``, by label, in the file's order."""
    return {label: codec_view(label, entry) for label, entry in results.codecs.items()}


def parse_intervals(raw: Any) -> dict[str, tuple[float, float]]:
    """``{key: [lo, hi]}`` from results, keeping only well-formed numeric pairs."""
    out: dict[str, tuple[float, float]] = {}
    for key, pair in raw.items() if isinstance(raw, Mapping) else []:
        if isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2:
            lo, hi = num(pair[0]), num(pair[1])
            if lo is not None and hi is not None:
                out[str(key)] = (lo, hi)
    return out


def fmt_ci(key: str, pair: tuple[float, float] | None) -> str:
    """An interval under a table value: ``[lo, hi]`` in the metric's own format."""
    if pair is None:
        return ""
    return f'<br><small class="ci">[{fmt(key, pair[0])}, {fmt(key, pair[1])}]</small>'


def order_labels(labels: Sequence[str]) -> list[str]:
    """base, base+post-filters, human, human-li, jpeg, then the rest in their given order."""
    rest = list(dict.fromkeys(labels))
    ordered: list[str] = []
    for want in PREFERRED:
        if want == "base+*":
            picked = sorted(x for x in rest if x.startswith("base+"))
        else:
            picked = [x for x in rest if x == want]
        ordered += picked
        rest = [x for x in rest if x not in picked]
    return ordered + rest


def find_originals(results_dir: Path) -> list[tuple[str, Path]]:
    """(name without suffix, path) of every image under originals/, sorted by name."""
    folder = results_dir / "originals"
    if not folder.is_dir():
        return []
    found = [
        (p.relative_to(folder).with_suffix("").as_posix(), p)
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    return sorted(found)


def find_decoded(results_dir: Path, label: str, name: str) -> Path | None:
    """decoded/LABEL/NAME.png (or another image suffix), if it exists inside the results."""
    if "/" in label or "\\" in label or label in ("", ".", ".."):
        return None
    folder = results_dir / "decoded" / label
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def decoded_labels(results_dir: Path) -> list[str]:
    folder = results_dir / "decoded"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


# ---------------------------------------------------------------------------------- formatting
def fmt(key: str, value: Any) -> str:
    """A value in its metric's page format (the catalogue's ``short``), with a real minus sign."""
    metric = catalogue.get(key)
    return metric.text(num(value), metric.short_fmt).replace("-", "−")


def rel_pct(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return (value - reference) / abs(reference) * 100.0


def url(rel: str) -> str:
    return quote(rel, safe="/")


def slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"
    out, i = base, 1
    while out in taken:
        i += 1
        out = f"{base}-{i}"
    taken.add(out)
    return out


def _best(values: Sequence[float | None], better: int) -> float | None:
    vals = [v for v in values if v is not None]
    if better == 0 or len(vals) < 2 or max(vals) == min(vals):
        return None
    return max(vals) if better > 0 else min(vals)


def table(
    columns: Sequence[str],
    rows: Sequence[tuple[str, str, Mapping[str, Any]]],
    first: str,
    foot: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
    caption: str = "",
) -> dict[str, Any]:
    """A sortable table for the template: a label column (with a colour chip), one column per
    metric key.

    ``rows`` are (label, colour or "", values); the best value of each column is marked. A
    ``values["_ci"]`` mapping adds each value's 95 % interval under it.
    """
    metrics = {k: catalogue.get(k) for k in columns}
    best = {k: _best([num(r[2].get(k)) for r in rows], metrics[k].better) for k in columns}
    head = [{"key": k, "title": m.title, "arrow": m.arrow} for k, m in metrics.items()]

    def row(label: str, color: str, values: Mapping[str, Any]) -> dict[str, Any]:
        cis = parse_intervals(values.get("_ci"))
        cells = []
        for k in columns:
            v = num(values.get(k))
            pair = cis.get(k) if v is not None else None
            cells.append(
                {
                    "v": "" if v is None else repr(v),
                    "best": v is not None and best[k] is not None and v == best[k],
                    "text": fmt(k, v),
                    "ci": (fmt(k, pair[0]), fmt(k, pair[1])) if pair else None,
                }
            )
        return {"label": label, "color": color, "cells": cells}

    return {
        "first": first,
        "head": head,
        "rows": [row(*r) for r in rows],
        "foot": [row(*r) for r in foot],
        "caption": caption,
    }


def _present(keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [k for k in keys if any(num(r.get(k)) is not None for r in rows)]


# ---------------------------------------------------------------------------------- the images
def _thumb(image: np.ndarray, box: crops.Box, width: int = 256) -> Image.Image:
    """The whole original, small, with the zoomed box outlined: where the crop comes from."""
    pil = Image.fromarray(image)
    scale = min(1.0, width / max(pil.width, 1), width / max(pil.height, 1))
    if scale < 1.0:
        pil = pil.resize(
            (max(1, round(pil.width * scale)), max(1, round(pil.height * scale))),
            Image.Resampling.LANCZOS,
        )
    draw = ImageDraw.Draw(pil)
    x0, y0 = box.left * scale, box.top * scale
    x1, y1 = (box.left + box.width) * scale - 1, (box.top + box.height) * scale - 1
    for d, color in ((1, "white"), (0, "#e4002b")):
        draw.rectangle((x0 - d, y0 - d, x1 + d, y1 + d), outline=color, width=2)
    return pil


def prepare_images(
    results_dir: Path,
    assets: Path,
    labels: Sequence[str],
    codecs: Mapping[str, Codec],
    max_images: int,
    crop_size: int,
    zoom: int,
) -> tuple[list[Shown], int]:
    """Write crops, thumbnails and full images for the first ``max_images`` originals."""
    originals = find_originals(results_dir)
    shown: list[Shown] = []
    (assets / "crops").mkdir(parents=True, exist_ok=True)
    (assets / "full").mkdir(parents=True, exist_ok=True)
    for i, (name, path) in enumerate(originals[: max(0, max_images)]):
        original = crops.read_rgb(path)
        decoded: dict[str, np.ndarray] = {}
        paths: dict[str, Path] = {}
        for label in labels:
            p = find_decoded(results_dir, label, name)
            if p is not None:
                decoded[label] = crops.read_rgb(p)
                paths[label] = p
        # the crop follows the base decoder's grid; without it, the first decoded codec's
        picked_by = next((lb for lb in ("base", *labels) if lb in decoded), None)
        box = crops.pick_crop(original, decoded.get(picked_by) if picked_by else None, crop_size)
        taken: set[str] = set()
        stem = f"{i:02d}-{slug(Path(name).name, set())}"
        where = f"assets/crops/{stem}-where.png"
        _thumb(original, box, 3 * crop_size).save(assets.parent / where)
        item = Shown(name=name, box=box, picked_by=picked_by, where=where)
        for label, image, source in [("original", original, path)] + [
            (lb, decoded[lb], paths[lb]) for lb in labels if lb in decoded
        ]:
            s = slug(label, taken)
            rel = f"assets/crops/{stem}-{s}.png"
            crops.cut(image, box, zoom).save(assets.parent / rel)
            item.crop[label] = rel
            full = f"assets/full/{stem}-{s}{source.suffix.lower()}"
            shutil.copyfile(source, assets.parent / full)
            item.full[label] = full
            if label != "original":
                entry = codecs[label].images.get(name) if label in codecs else None
                entry = entry or {}
                item.caption[label] = (
                    num(entry.get("bpp")),
                    num(entry.get("psnr")),
                    crops.crop_psnr(original, image, box),
                )
        shown.append(item)
    return shown, len(originals)


# ------------------------------------------------------------------------------------ sections
# Each builds the plain data one section of templates/report.html.j2 shows (None: no section);
# the template does all the markup, with autoescape.
def _unit(text: str, unit: str) -> str:
    return text if text == "—" else text + unit


def _signed(spec: str, value: float, unit: str = "") -> str:
    return (format(value, spec) + unit).replace("-", "−")  # a real minus sign


def _paired(codec: Codec, key: str, spec: str, rel: bool) -> tuple[str, str, bool] | None:
    """(lo, hi, covers 0) of the codec's paired difference to base, or None."""
    d = (codec.vs.get("diff") or {}).get(key) if codec.vs.get("reference") == "base" else None
    pair = parse_intervals({"x": d.get("rel_ci" if rel else "ci")}).get("x") if d else None
    if pair is None:
        return None
    unit = "%" if rel else ""
    return _signed(spec, pair[0], unit), _signed(spec, pair[1], unit), pair[0] <= 0 <= pair[1]


def _lede(codecs: Mapping[str, Codec]) -> dict[str, Any] | None:
    """The headline sentence: the human decoder's differences to base on the catalogue's
    headline metrics, then AP50 relative, at the rate of the bitstream."""
    b, h = codecs.get("base"), codecs.get("human")
    if not (b and h):
        return None
    bits = []
    for key, words in catalogue.HEADLINE.items():
        hv, bv = h.mean.get(key), b.mean.get(key)
        if hv is not None and bv is not None:
            spec = catalogue.signed(catalogue.get(key).short_fmt)
            bits.append(
                {
                    "value": _signed(spec, hv - bv),
                    "unit": f" {words}",
                    "ci": _paired(h, key, spec, rel=False),
                }
            )
    ap = rel_pct(h.mean.get("task_ap50"), b.mean.get("task_ap50"))
    if ap is not None:
        bits.append(
            {
                "value": fmt("rel_task_ap50", ap),
                "unit": f" {catalogue.get('task_ap50').label} (relative)",
                "ci": _paired(h, "task_ap50", catalogue.REL_FMT, rel=True),
            }
        )
    rate = ""
    hb, bb = h.mean.get("bpp"), b.mean.get("bpp")
    if hb is not None and bb is not None:
        rate = f" at {fmt('bpp', hb)} bpp" + (" (same bitstream)" if abs(hb - bb) < 1e-9 else "")
    return {"rate": rate, "bits": bits} if bits else None


#: The metrics of a codec's card: always, or where measured (``people`` / ``mask``).
_CARD = (("bpp", ""), ("psnr", ""), ("ssim", ""), ("cvvdp_jod", "people"),
         ("ssimulacra2", "people"), ("artifact_db", ""), ("task_ap50", ""),
         ("rel_task_ap50", ""), ("task_mask_ap", "mask"))  # fmt: skip


def _card(codec: Codec, color: str, unc_ap50: float | None) -> dict[str, Any]:
    """One codec's card: its means in the catalogue's formats and units."""
    m = {**codec.mean, "rel_task_ap50": rel_pct(codec.mean.get("task_ap50"), unc_ap50)}
    shown = {
        "people": m.get("cvvdp_jod") is not None or m.get("ssimulacra2") is not None,
        "mask": m.get("task_mask_ap") is not None,
        "": True,
    }
    kvs = []
    for key, when in _CARD:
        if shown[when]:
            metric = catalogue.get(key)
            value = metric.with_unit(num(m.get(key)), metric.short_fmt).replace("-", "−")
            label = "Δ AP50 vs uncompr." if key == "rel_task_ap50" else metric.full
            kvs.append({"label": label, "value": value, "cls": "big" if key == "bpp" else ""})
    return {
        "label": codec.label,
        "ref": False,
        "kind": codec.kind,
        "description": codec.description,
        "color": color,
        "kvs": kvs,
    }


def summary_section(
    labels: Sequence[str], codecs: Mapping[str, Codec], colors: Mapping[str, str], unc: Mapping
) -> dict[str, Any]:
    """Headline sentence (human vs base) and one card per codec."""
    unc_ap50 = num(unc.get("task_ap50"))
    cards = [_card(codecs[label], colors.get(label, "#777"), unc_ap50) for label in labels]
    if unc_ap50 is not None or num(unc.get("task_ap")) is not None:
        cards.append(
            {
                "label": "uncompressed",
                "ref": True,
                "kind": "",
                "description": "the task on the original images",
                "color": "#444",
                "kvs": [
                    {"label": catalogue.title(k), "value": fmt(k, unc.get(k)), "cls": ""}
                    for k in ("task_ap", "task_ap50")
                ],
            }
        )
    return {"lede": _lede(codecs), "cards": cards}


def codec_table_section(
    labels: Sequence[str], codecs: Mapping[str, Codec], colors: Mapping[str, str], unc: Mapping
) -> dict[str, Any] | None:
    if not labels:
        return None
    unc_ap50 = num(unc.get("task_ap50"))
    rows = []
    for label in labels:
        values = dict(codecs[label].mean)
        values["rel_task_ap50"] = rel_pct(values.get("task_ap50"), unc_ap50)
        values["_ci"] = codecs[label].ci
        rows.append((label, colors.get(label, ""), values))
    cols = _present(catalogue.select(per_image=None, table=True), [r[2] for r in rows])
    foot = []
    if unc_ap50 is not None or num(unc.get("task_ap")) is not None:
        foot.append(
            (
                "uncompressed",
                "",
                {"task_ap": unc.get("task_ap"), "task_ap50": unc_ap50, "_ci": unc.get("ci")},
            )
        )
    return {
        "n": max((len(codecs[lb].images) for lb in labels), default=0),
        "with_ci": any(codecs[lb].ci for lb in labels),
        "table": table(cols, rows, "codec", foot),
        "params": [
            {"label": lb, "json": json.dumps(codecs[lb].params, sort_keys=True)}
            for lb in labels
            if codecs[lb].params
        ],
    }


def table1_section(rows: Any, note: Any = None) -> dict[str, Any] | None:
    if not isinstance(rows, list) or not any(isinstance(r, Mapping) for r in rows):
        return None
    rows = [r for r in rows if isinstance(r, Mapping)]
    # a row that is another row's experiment under a second name says so
    rows = [
        {**r, "config": f"{r.get('config') or '?'} (= {r['same_as']})"} if r.get("same_as") else r
        for r in rows
    ]
    order = list(catalogue.TABLE1_COLUMNS)
    skip = {"config", "rel_task_ap50", "part", "same_as", "ci", "vs_base"}
    extra = sorted({k for r in rows for k in r} - set(order) - skip)
    cols = _present(order + extra, rows)
    cols.append("rel_task_ap50")  # always shown, like the paper (— for the base row)
    data = []
    for r in rows:
        values = {**r, "_ci": r.get("ci")}
        paired = (r.get("vs_base") or {}).get("task_ap50")
        if isinstance(paired, Mapping) and num(paired.get("rel")) is not None:
            # the row's Δ AP50 rel. with its paired interval against the base
            values["rel_task_ap50"] = paired["rel"]
            values["_ci"] = {**(r.get("ci") or {}), "rel_task_ap50": paired.get("rel_ci")}
        data.append((str(r.get("config") or "?"), "", values))
    return {
        "table": table(cols, data, "configuration"),
        "note": note if isinstance(note, str) and note else None,
    }


def _diff_column(key: str) -> tuple[str, str, str, bool]:
    """(key, title, format, relative) of a column of the "vs base" table."""
    metric = catalogue.get(key)
    if metric.relative:
        return key, f"Δ {metric.label} rel.", catalogue.REL_FMT, True
    return key, f"Δ {metric.title}", metric.diff_fmt, False


def _diff_cell(d: Any, form: str, rel: bool) -> dict[str, Any] | None:
    value = num(d.get("rel" if rel else "diff")) if isinstance(d, Mapping) else None
    if value is None:
        return None
    unit = "%" if rel else ""
    ci = parse_intervals({"x": d.get("rel_ci" if rel else "ci")}).get("x")
    return {
        "text": _signed(form, value, unit),
        "ci": (_signed(form, ci[0], unit), _signed(form, ci[1], unit)) if ci else None,
        "zero": ci is not None and ci[0] <= 0 <= ci[1],
    }


def differences_section(labels: Sequence[str], codecs: Mapping[str, Codec]) -> dict | None:
    """Each codec against the reference (base) on the same images, with paired intervals.

    A difference whose 95 % paired interval covers 0 is greyed and marked ≈: on these images
    it cannot be told from chance.
    """
    rows = [lb for lb in labels if isinstance(codecs[lb].vs.get("diff"), Mapping)]
    if not rows:
        return None
    diffs = {lb: codecs[lb].vs["diff"] for lb in rows}
    cols = [
        _diff_column(k)
        for k in catalogue.REPORT_DIFF
        if any(isinstance(d.get(k), Mapping) for d in diffs.values())
    ]
    body = [
        {
            "label": lb,
            "cells": [_diff_cell(diffs[lb].get(k), form, rel) for k, _, form, rel in cols],
        }
        for lb in rows
    ]
    return {
        "ref": str(codecs[rows[0]].vs.get("reference") or "base"),
        "head": [title for _, title, _, _ in cols],
        "rows": body,
    }


def bd_section(bd: Any, colors: Mapping[str, str], cis: Any = None) -> dict[str, Any] | None:
    """BD-rate table rows; each cell with its 95 % interval where the results carry one."""
    if not isinstance(bd, Mapping) or not bd:
        return None
    cis = cis if isinstance(cis, Mapping) else {}
    rows = [(str(k), colors.get(str(k), ""), v) for k, v in bd.items() if isinstance(v, Mapping)]
    if not rows:
        return None
    keys = sorted({k for _, _, v in rows for k in v}, key=lambda k: (k not in catalogue.METRICS, k))
    body = []
    for label, color, v in rows:
        cells = []
        ci_row = parse_intervals(cis.get(label))
        for k in keys:
            x = num(v.get(k))
            pair = ci_row.get(k)
            form = catalogue.BD_FMT
            span = "" if pair is None else f" [{_signed(form, pair[0])}, {_signed(form, pair[1])}]"
            cells.append(
                {
                    "text": "—" if x is None else _signed(form, x, "%") + span,
                    "cls": "" if x is None else ("good" if x < 0 else "bad"),
                }
            )
        body.append({"label": label, "color": color, "cells": cells})
    return {"head": [catalogue.title(k) for k in keys], "rows": body}


def _half_size(path: Path) -> tuple[int, int] | None:
    """(width, height) at half the PNG's pixels: the plots are drawn at 2× DPI."""
    try:
        with Image.open(path) as im:
            return im.width // 2, im.height // 2
    except OSError:
        return None


def figures_section(figs: Sequence[tuple[str, str, str]], folder: Path) -> list[dict[str, Any]]:
    out = []
    for src, title, text in figs:
        size = _half_size(folder / src)
        out.append(
            {
                "src": url(src),
                "title": title,
                "text": text,
                "svg": url(src[:-4]) + ".svg",
                "width": size[0] if size else None,
                "height": size[1] if size else None,
            }
        )
    return out


def _caption(vals: tuple[float | None, float | None, float | None]) -> dict[str, str]:
    bpp, psnr, cp = vals
    top = " · ".join(
        _unit(fmt(key, value), f" {catalogue.get(key).unit}")
        for key, value in (("bpp", bpp), ("psnr", psnr))
    )
    crop = "—" if cp is None else ("∞" if math.isinf(cp) else f"{cp:.1f}")
    return {"top": top, "crop": crop}


def crops_section(shown: Sequence[Shown], total: int, crop_size: int, zoom: int) -> dict:
    blocks = []
    for item in shown:
        blocks.append(
            {
                "name": item.name,
                "picked_by": item.picked_by,
                "where": url(item.where),
                "box": item.box,
                "tiles": [
                    {
                        "label": label,
                        "src": url(src),
                        "cap": None if label == "original" else _caption(item.caption[label]),
                    }
                    for label, src in item.crop.items()
                ],
            }
        )
    return {
        "blocks": blocks,
        "total": total,
        "crop_size": crop_size,
        "zoom": zoom,
        "tile": crop_size * 3,
    }


def slider_section(shown: Sequence[Shown]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Two stacked images; a full-size transparent range input moves the split between them."""
    usable = [s for s in shown if len(s.crop) >= 2]
    if not usable:
        return None, {}
    first = usable[0]
    names = list(first.crop)
    left = "base" if "base" in names else names[0]
    right = "human" if "human" in names else next(n for n in names if n != left)
    data = {
        "images": [{"name": s.name, "crop": s.crop, "full": s.full} for s in usable],
        "left": left,
        "right": right,
    }
    view = {
        "names": [s.name for s in usable],
        "labels": list(dict.fromkeys(lb for s in usable for lb in s.crop)),
        "left": left,
        "right": right,
        "left_src": url(first.crop[left]),
        "right_src": url(first.crop[right]),
    }
    return view, data


_PEOPLE_INFO = ("cvvdp", "display", "display_description", "ssimulacra2")


def notes_section(results: Results, report_command: str | None) -> dict[str, Any]:
    more = results.extra.get("commands")
    cmds = [c for c in [results.command, *(more if isinstance(more, list) else [])] if c]
    if report_command:
        cmds.append(report_command)
    people = results.people_metrics
    return {
        "gt": results.ground_truth,
        "people": {k: str(people.get(k) or "") for k in _PEOPLE_INFO}
        if isinstance(people, Mapping)
        else None,
        "commands": [str(c) for c in dict.fromkeys(c for c in cmds if isinstance(c, str))],
    }


# ------------------------------------------------------------------------------------- the page
#: Where the page's template and its CSS / JS live (package files, copied next to the page).
TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value is text; markup comes only from the template
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(
    results: Results,
    sections: Mapping[str, Any],
    nav: Sequence[tuple[str, str]],
    slider_data: Mapping[str, Any],
) -> str:
    """The page from templates/report.html.j2 (autoescaped)."""
    meta = [
        {"label": key, "value": getattr(results, key)}
        for key in ("set", "task", "created")
        if getattr(results, key)
    ]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=results.title or "icmbridge report",
            meta=meta,
            annotations=results.ground_truth == "annotations",
            nav=list(nav),
            sections=sections,
            slider_data=dict(slider_data) if slider_data else None,
        )
    )


def _check_output(results_dir: Path, report_dir: Path) -> None:
    """Refuse outputs that would replace the results or a folder that is not an old report."""
    res, rep = results_dir.resolve(), report_dir.resolve()
    if rep == res or rep in res.parents:
        raise InputError(
            f"report folder {str(report_dir)!r} would replace the results folder; choose another"
        )
    if report_dir.exists():
        if not report_dir.is_dir():
            raise InputError(f"report output {str(report_dir)!r} exists and is not a folder")
        if any(report_dir.iterdir()) and not (report_dir / MARKER).exists():
            raise InputError(
                f"{str(report_dir)!r} exists and is not an icmbridge report; refusing to replace "
                "it (choose a new folder or delete it)"
            )


def build_report(
    results_dir: str | os.PathLike[str],
    report_dir: str | os.PathLike[str],
    *,
    max_images: int = 8,
    crop_size: int = 64,
    zoom: int = 4,
    command: str | None = None,
) -> Path:
    """Write REPORT_DIR/index.html with its assets; return the page's path.

    The folder is built under a temporary name next to ``report_dir`` and renamed into place,
    so an interrupted run leaves the previous report (or nothing), never half a page.
    """
    results_dir, report_dir = Path(results_dir), Path(report_dir)
    if max_images < 0 or crop_size < 16 or zoom < 1:
        raise InputError("need max_images ≥ 0, crop_size ≥ 16 and zoom ≥ 1")
    results = load_results(results_dir)
    _check_output(results_dir, report_dir)
    codecs = parse_codecs(results)
    labels = order_labels(list(codecs))
    all_labels = order_labels(labels + decoded_labels(results_dir))
    colors = plots.codec_colors(all_labels)
    unc = results.uncompressed or {}
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(report_dir) as tmp:
        (tmp / MARKER).write_text("written by icmbridge report\n")
        assets = tmp / "assets"
        (assets / "plots").mkdir(parents=True)
        figs = _figures(results, codecs, labels, colors, unc, assets / "plots")
        shown, total = prepare_images(
            results_dir, assets, all_labels, codecs, max_images, crop_size, zoom
        )
        slider, slider_data = slider_section(shown)
        sections = {
            "summary": summary_section(labels, codecs, colors, unc),
            "codecs": codec_table_section(labels, codecs, colors, unc),
            "differences": differences_section(labels, codecs),
            "plots": figures_section(figs, tmp),
            "table1": table1_section(results.table1, results.table1_note),
            "bdrate": bd_section(results.bd_rate, colors, results.bd_rate_ci),
            "slider": slider,
            "crops": crops_section(shown, total, crop_size, zoom),
            "notes": notes_section(results, command),
        }
        titles = {"summary": "Summary", "codecs": "Codecs", "differences": "vs base",
                  "plots": "Plots", "table1": "Table 1", "bdrate": "BD-rate",
                  "slider": "Slider", "crops": "Crops", "notes": "Notes"}  # fmt: skip
        anchors = {"slider": "compare"}
        nav = [(anchors.get(k, k), titles[k]) for k, v in sections.items() if v is not None]
        page = render_page(results, sections, nav, slider_data)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        for name in ("report.css", "report.js"):
            shutil.copyfile(STATIC / name, assets / name)
    return report_dir / "index.html"


def _figures(
    results: Results,
    codecs: Mapping[str, Codec],
    labels: Sequence[str],
    colors: Mapping[str, str],
    unc: Mapping[str, Any],
    folder: Path,
) -> list[tuple[str, str, str]]:
    """(asset path, title, caption) of every figure the results allow."""
    out: list[tuple[str, str, str]] = []
    curves = results.rate_curves
    means = {lb: codecs[lb].mean for lb in labels}
    rates = [r for r in (num(m.get("bpp")) for m in means.values()) if r is not None]
    one_rate = not rates or max(rates) - min(rates) <= 0.01 * max(rates)
    # every codec at one rate (an ablation of decoders of one bitstream): nothing to plot over bpp
    name = (
        None
        if one_rate and not curves
        else plots.rate_plot(means, curves, colors, num(unc.get("task_ap50")), folder)
    )
    if name:
        text = "Dots: each codec's mean over the set"
        text += "; lines: rate curves." if curves else " (no rate curves in the results)."
        shown = [
            catalogue.get(k).label
            for k in catalogue.RATE_AXES
            if any(num(m.get(k)) is not None for m in means.values())
        ]
        axes = ", ".join(shown[:-1]) + f" and {shown[-1]}" if len(shown) > 1 else "PSNR"
        title = f"Rate: {axes} against bits per pixel"
        out.append((f"assets/plots/{name}", title, text))
    name = plots.artifact_bars({lb: codecs[lb].mean.get("artifact_db") for lb in labels}, colors,
                               folder)  # fmt: skip
    if name:
        out.append((f"assets/plots/{name}", "Checkerboard artifacts per codec",
                    "artifact dB, mean over the images; ≈ 0 dB means no added grid."))  # fmt: skip
    sweep = results.tradeoff
    if isinstance(sweep, list) and sweep:
        base = codecs["base"].mean if "base" in codecs else None
        name = plots.tradeoff_plot(sweep, base, folder)
        if name:
            out.append((f"assets/plots/{name}", "λ_a trade-off",
                        "Task AP50 against PSNR and artifact dB for each adversarial weight λ_a "
                        "of the human decoder's finetuning."))  # fmt: skip
    return out
