"""``build_report``: one static, self-contained HTML page from a results folder.

The page needs no network: CSS and JS are inline, images are files under ``assets/`` next to
``index.html`` (so the page stays small and the images can be opened on their own). Anything in
``results.json`` may be null or absent; the page shows what exists and says what is missing.

The page's script records on ``<body>`` how many images loaded (``data-images-loaded``,
``data-images-failed``, ``data-images-total``) so a headless browser can check the page.
"""

from __future__ import annotations

import html
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
from icmbridge.report import crops, plots
from icmbridge.report.plots import num
from icmbridge.utils.atomic import atomic_directory

#: Written into every report folder; only folders holding it (or empty ones) may be replaced.
MARKER = ".icmbridge-report"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: The order the comparisons show codecs in; ``base+…`` post-filters follow ``base``.
PREFERRED = ("base", "base+*", "human", "human-li", "jpeg")

# key: (column title, format, better: +1 higher, -1 lower, 0 neither)
METRICS: dict[str, tuple[str, str, int]] = {
    "bpp": ("bpp", "{:.3f}", 0),
    "psnr": ("PSNR dB", "{:.2f}", 1),
    "ssim": ("SSIM", "{:.3f}", 1),
    "ms_ssim": ("MS-SSIM", "{:.3f}", 1),
    "artifact_db": ("artifact dB", "{:+.1f}", -1),
    "residual_grid_db": ("residual grid dB", "{:+.1f}", -1),
    "phase_variance": ("phase var.", "{:.3g}", -1),
    "lattice": ("lattice", "{:.2f}", -1),
    "task_ap": ("AP", "{:.3f}", 1),
    "task_ap50": ("AP50", "{:.3f}", 1),
    "task_mask_ap": ("mask AP", "{:.3f}", 1),
    "task_mask_ap50": ("mask AP50", "{:.3f}", 1),
    "rel_task_ap50": ("Δ AP50 rel.", "{:+.1f}%", 1),
    "feature_distance": ("feature dist.", "{:.3f}", -1),
    "vgg_distance": ("VGG dist.", "{:.3f}", -1),
    "encode_s": ("encode s", "{:.3f}", -1),
    "decode_s": ("decode s", "{:.3f}", -1),
}
_SET_LEVEL = {
    "task_ap",
    "task_ap50",
    "task_mask_ap",
    "task_mask_ap50",
}  # COCO AP over the whole set: not a mean of images


@dataclass
class Codec:
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
def load_results(results_dir: Path) -> dict[str, Any]:
    """results.json, validated against the results schema (:mod:`icmbridge.evaluation.results`),
    as a dict; a missing, unreadable or malformed file is the user's error, in one line."""
    from icmbridge.evaluation.results import Results

    path = results_dir / "results.json"
    if not results_dir.is_dir():
        raise InputError(f"results folder {str(results_dir)!r} does not exist")
    if not path.is_file():
        raise InputError(
            f"no results.json in {str(results_dir)!r} (write one with `icmbridge demo`, "
            "`icmbridge ablate`, `icmbridge curves` or `icmbridge compare`)"
        )
    return Results.read(path).to_dict()


def _image_key(name: str) -> str:
    p = Path(name)
    return (p.with_suffix("") if p.suffix.lower() in IMAGE_SUFFIXES else p).as_posix()


def parse_codecs(data: Mapping[str, Any]) -> dict[str, Codec]:
    """The codecs of validated results; means come from 'mean' as the scorer wrote them (never
    re-derived from the per-image rows: set-level AP is not a mean of images)."""
    raw = data.get("codecs")
    out: dict[str, Codec] = {}
    if not isinstance(raw, Mapping):
        return out
    for label, entry in raw.items():
        if not isinstance(entry, Mapping):
            continue
        images: dict[str, Mapping[str, Any]] = {}
        rows = entry.get("images")
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, Mapping) and isinstance(row.get("name"), str):
                images[_image_key(row["name"])] = row
        given = entry.get("mean") if isinstance(entry.get("mean"), Mapping) else {}
        mean: dict[str, float | None] = {key: num(given.get(key)) for key in METRICS}
        out[str(label)] = Codec(
            label=str(label),
            kind=str(entry.get("kind") or ""),
            description=str(entry.get("description") or ""),
            mean=mean,
            images=images,
            params=entry.get("params"),
            ci=parse_intervals(entry.get("ci")),
            vs=entry.get("vs") if isinstance(entry.get("vs"), Mapping) else {},
        )
    return out


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
def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(key: str, value: Any) -> str:
    v = num(value)
    if v is None:
        return "—"
    text = METRICS.get(key, ("", "{:.4g}", 0))[1].format(v)
    return text.replace("-", "−")  # a real minus sign


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
) -> str:
    """A sortable table: a label column (with a colour chip), one column per metric key.

    ``rows`` are (label, colour or "", values); the best value of each column is bold. A
    ``values["_ci"]`` mapping adds each value's 95 % interval under it.
    """
    best = {
        k: _best([num(r[2].get(k)) for r in rows], METRICS.get(k, ("", "", 0))[2]) for k in columns
    }
    head = [f'<th data-sort="text">{esc(first)}</th>']
    for k in columns:
        title, _, better = METRICS.get(k, (k, "", 0))
        arrow = {1: " ↑", -1: " ↓"}.get(better, "")
        head.append(f'<th data-sort="num" title="{esc(k)}">{esc(title)}<small>{arrow}</small></th>')

    def row(label: str, color: str, values: Mapping[str, Any]) -> str:
        chip = f'<span class="chip" style="background:{esc(color)}"></span>' if color else ""
        cells = [f'<td class="lbl" data-v="{esc(label)}">{chip}{esc(label)}</td>']
        cis = parse_intervals(values.get("_ci"))
        for k in columns:
            v = num(values.get(k))
            cls = ' class="best"' if v is not None and best[k] is not None and v == best[k] else ""
            dv = "" if v is None else repr(v)
            interval = fmt_ci(k, cis.get(k)) if v is not None else ""
            cells.append(f'<td data-v="{dv}"{cls}>{fmt(k, v)}{interval}</td>')
        return "<tr>" + "".join(cells) + "</tr>"

    body = "".join(row(*r) for r in rows)
    tfoot = "".join(row(*r) for r in foot)
    cap = f"<caption>{caption}</caption>" if caption else ""
    return (
        f'<div class="tablewrap"><table class="sortable">{cap}<thead><tr>{"".join(head)}</tr>'
        f"</thead><tbody>{body}</tbody>"
        + (f'<tfoot class="ref">{tfoot}</tfoot>' if tfoot else "")
        + "</table></div>"
    )


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
def _unit(text: str, unit: str) -> str:
    return text if text == "—" else text + unit


def _kv(label: str, value: str, cls: str = "") -> str:
    return f'<div class="kv {cls}"><span>{esc(label)}</span><b>{value}</b></div>'


def _paired(codec: Codec, key: str, form: str, rel: bool) -> str:
    """`` [lo, hi]`` of the codec's paired difference to base, with a note if it covers 0."""
    d = (codec.vs.get("diff") or {}).get(key) if codec.vs.get("reference") == "base" else None
    pair = parse_intervals({"x": d.get("rel_ci" if rel else "ci")}).get("x") if d else None
    if pair is None:
        return ""
    lo, hi = (form.format(v).replace("-", "−") for v in pair)
    zero = " ≈ no difference" if pair[0] <= 0 <= pair[1] else ""
    return f' <small class="ci">[{lo}, {hi}]{zero}</small>'


def summary_section(
    labels: Sequence[str], codecs: Mapping[str, Codec], colors: Mapping[str, str], unc: Mapping
) -> str:
    """Headline sentence (human vs base) and one card per codec."""
    parts = ['<section id="summary"><h2>Summary</h2>']
    b, h = codecs.get("base"), codecs.get("human")
    if b and h:
        bits = []
        for key, unit, form in (
            ("psnr", " dB PSNR", "{:+.2f}"),
            ("ssim", " SSIM", "{:+.3f}"),
            ("artifact_db", " dB artifacts", "{:+.1f}"),
        ):
            hv, bv = h.mean.get(key), b.mean.get(key)
            if hv is not None and bv is not None:
                bits.append(f"<b>{form.format(hv - bv).replace('-', '−')}</b>{unit}"
                            + _paired(h, key, form, rel=False))  # fmt: skip
        ap = rel_pct(h.mean.get("task_ap50"), b.mean.get("task_ap50"))
        if ap is not None:
            bits.append(f"<b>{fmt('rel_task_ap50', ap)}</b> AP50 (relative)"
                        + _paired(h, "task_ap50", "{:+.1f}%", rel=True))  # fmt: skip
        rate = ""
        hb, bb = h.mean.get("bpp"), b.mean.get("bpp")
        if hb is not None and bb is not None:
            rate = f" at {fmt('bpp', hb)} bpp" + (
                " (same bitstream)" if abs(hb - bb) < 1e-9 else ""
            )
        if bits:
            parts.append(
                f'<p class="lede">Human decoder vs machine (base) decoder{esc(rate)}: '
                + ", ".join(bits)
                + ".</p>"
            )
    cards = []
    unc_ap50 = num(unc.get("task_ap50"))
    for label in labels:
        c = codecs[label]
        m = c.mean
        rel = rel_pct(m.get("task_ap50"), unc_ap50)
        kind = f'<span class="kind">{esc(c.kind)}</span>' if c.kind else ""
        desc = f'<p class="desc">{esc(c.description)}</p>' if c.description else ""
        cards.append(
            f'<div class="card" style="--c:{esc(colors.get(label, "#777"))}">'
            f"<h3>{esc(label)} {kind}</h3>{desc}"
            + _kv("bpp", fmt("bpp", m.get("bpp")), "big")
            + _kv("PSNR", _unit(fmt("psnr", m.get("psnr")), " dB"))
            + _kv("SSIM", fmt("ssim", m.get("ssim")))
            + _kv("artifact", _unit(fmt("artifact_db", m.get("artifact_db")), " dB"))
            + _kv("AP50", fmt("task_ap50", m.get("task_ap50")))
            + _kv("Δ AP50 vs uncompr.", fmt("rel_task_ap50", rel))
            + "</div>"
        )
    if unc_ap50 is not None or num(unc.get("task_ap")) is not None:
        cards.append(
            '<div class="card ref" style="--c:#444"><h3>uncompressed</h3>'
            '<p class="desc">the task on the original images</p>'
            + _kv("AP", fmt("task_ap", unc.get("task_ap")))
            + _kv("AP50", fmt("task_ap50", unc_ap50))
            + "</div>"
        )
    if not cards:
        parts.append('<p class="missing">results.json lists no codecs.</p>')
    parts.append(f'<div class="cards">{"".join(cards)}</div></section>')
    return "".join(parts)


def codec_table_section(
    labels: Sequence[str], codecs: Mapping[str, Codec], colors: Mapping[str, str], unc: Mapping
) -> str:
    if not labels:
        return ""
    unc_ap50 = num(unc.get("task_ap50"))
    rows = []
    for label in labels:
        values = dict(codecs[label].mean)
        values["rel_task_ap50"] = rel_pct(values.get("task_ap50"), unc_ap50)
        values["_ci"] = codecs[label].ci
        rows.append((label, colors.get(label, ""), values))
    cols = _present(list(METRICS), [r[2] for r in rows])
    foot = []
    if unc_ap50 is not None or num(unc.get("task_ap")) is not None:
        foot.append(
            (
                "uncompressed",
                "",
                {"task_ap": unc.get("task_ap"), "task_ap50": unc_ap50, "_ci": unc.get("ci")},
            )
        )
    n = max((len(codecs[lb].images) for lb in labels), default=0)
    with_ci = any(codecs[lb].ci for lb in labels)
    return (
        '<section id="codecs"><h2>Every codec</h2>'
        f'<p class="hint">Means over {n} image(s); AP and AP50 are COCO AP over the whole set. '
        + (
            "Under each value: its 95 % bootstrap interval over images (AP resampled as a set). "
            if with_ci
            else ""
        )
        + "Click a column title to sort; the best value of each column is bold. Δ AP50 rel. is "
        "relative to the uncompressed images.</p>"
        + table(cols, rows, "codec", foot)
        + _params(labels, codecs)
        + "</section>"
    )


def _params(labels: Sequence[str], codecs: Mapping[str, Codec]) -> str:
    items = [
        f"<li><b>{esc(lb)}</b>: <code>{esc(json.dumps(codecs[lb].params, sort_keys=True))}"
        "</code></li>"
        for lb in labels
        if codecs[lb].params
    ]
    return f'<ul class="params">{"".join(items)}</ul>' if items else ""


def table1_section(rows: Any, note: Any = None) -> str:
    if not isinstance(rows, list) or not any(isinstance(r, Mapping) for r in rows):
        return ""
    rows = [r for r in rows if isinstance(r, Mapping)]
    # a row that is another row's experiment under a second name says so
    rows = [
        {**r, "config": f"{r.get('config') or '?'} (= {r['same_as']})"} if r.get("same_as") else r
        for r in rows
    ]
    order = ["task_ap", "task_ap50", "psnr", "ssim", "ms_ssim", "feature_distance",
             "vgg_distance", "artifact_db"]  # fmt: skip
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
    return (
        '<section id="table1"><h2>Table 1: patch sampling ablation</h2>'
        '<p class="hint">Shaped like the paper\'s Table 1. Δ AP50 rel. is the relative change of '
        "task AP50 against the base codec (the paper's ΔmAP rel.); intervals under the values are "
        "95 % bootstrap intervals over images, paired with the base for Δ AP50 rel.</p>"
        + table(cols, data, "configuration")
        + (f'<p class="hint">{esc(note)}</p>' if isinstance(note, str) and note else "")
        + "</section>"
    )


_DIFF_COLUMNS = (
    ("psnr", "Δ PSNR dB", "{:+.2f}", False),
    ("ssim", "Δ SSIM", "{:+.3f}", False),
    ("artifact_db", "Δ artifact dB", "{:+.2f}", False),
    ("lattice", "Δ lattice", "{:+.2f}", False),
    ("task_ap50", "Δ AP50 rel.", "{:+.1f}%", True),
    ("task_ap", "Δ AP rel.", "{:+.1f}%", True),
    ("feature_distance", "Δ feature dist.", "{:+.3f}", False),
    ("bpp", "Δ bpp", "{:+.4f}", False),
)


def differences_section(labels: Sequence[str], codecs: Mapping[str, Codec]) -> str:
    """Each codec against the reference (base) on the same images, with paired intervals.

    A difference whose 95 % paired interval covers 0 is greyed and marked ≈: on these images
    it cannot be told from chance.
    """
    rows = [lb for lb in labels if isinstance(codecs[lb].vs.get("diff"), Mapping)]
    if not rows:
        return ""
    diffs = {lb: codecs[lb].vs["diff"] for lb in rows}
    cols = [
        c for c in _DIFF_COLUMNS if any(isinstance(d.get(c[0]), Mapping) for d in diffs.values())
    ]
    ref = str(codecs[rows[0]].vs.get("reference") or "base")
    head = "".join(f"<th>{esc(title)}</th>" for _, title, _, _ in cols)
    body = []
    for lb in rows:
        cells = [f'<td class="lbl">{esc(lb)}</td>']
        for key, _, form, rel in cols:
            d = diffs[lb].get(key)
            value = num(d.get("rel" if rel else "diff")) if isinstance(d, Mapping) else None
            if value is None:
                cells.append("<td>—</td>")
                continue
            ci = parse_intervals({"x": d.get("rel_ci" if rel else "ci")}).get("x")
            zero = ci is not None and ci[0] <= 0 <= ci[1]
            text = form.format(value).replace("-", "−")
            if ci is not None:
                lo, hi = (form.format(v).replace("-", "−") for v in ci)
                text += f'<br><small class="ci">[{lo}, {hi}]</small>'
            cls = ' class="zero" title="the 95 % interval covers 0"' if zero else ""
            cells.append(f"<td{cls}>{'≈ ' if zero else ''}{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<section id="differences"><h2>Against {esc(ref)}, image by image</h2>'
        f'<p class="hint">Each codec minus {esc(ref)} on the same images: the difference of the '
        "means and its 95 % paired bootstrap interval (both codecs scored on the same image "
        "draws, so what the images share cancels). Greyed and marked ≈: the interval covers 0, "
        "so the difference cannot be told from chance on these images. Relative AP changes are "
        f"in per cent of {esc(ref)}'s AP.</p>"
        f'<div class="tablewrap"><table><thead><tr><th>codec</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


def bd_section(bd: Any, colors: Mapping[str, str]) -> str:
    if not isinstance(bd, Mapping) or not bd:
        return ""
    rows = [(str(k), colors.get(str(k), ""), v) for k, v in bd.items() if isinstance(v, Mapping)]
    if not rows:
        return ""
    keys = sorted({k for _, _, v in rows for k in v}, key=lambda k: (k not in METRICS, k))
    cells_head = "".join(f"<th>BD-rate, {esc(METRICS.get(k, (k,))[0])}</th>" for k in keys)
    body = []
    for label, color, v in rows:
        chip = f'<span class="chip" style="background:{esc(color)}"></span>' if color else ""
        tds = []
        for k in keys:
            x = num(v.get(k))
            cls = "" if x is None else (' class="good"' if x < 0 else ' class="bad"')
            tds.append(f"<td{cls}>{'—' if x is None else f'{x:+.1f}%'.replace('-', '−')}</td>")
        body.append(f'<tr><td class="lbl">{chip}{esc(label)}</td>{"".join(tds)}</tr>')
    return (
        '<section id="bdrate"><h2>BD-rate</h2>'
        '<p class="hint">Average bitrate change of our codec against each codec at equal quality '
        "(Bjøntegaard, piecewise cubic), in percent, over the rate curves above: negative (green) "
        "means ours needs fewer bits; — means the two curves share no quality range (e.g. the "
        "classical codec cannot reach our lowest rate), so no such average exists.</p>"
        f'<div class="tablewrap"><table><thead><tr><th>against</th>{cells_head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


def _half_size(path: Path) -> str:
    """width/height attributes at half the PNG's pixels: the plots are drawn at 2× DPI."""
    try:
        with Image.open(path) as im:
            return f' width="{im.width // 2}" height="{im.height // 2}"'
    except OSError:
        return ""


def figures_section(figs: Sequence[tuple[str, str, str]], folder: Path) -> str:
    if not figs:
        return (
            '<section id="plots"><h2>Plots</h2><p class="missing">Nothing to plot: no bpp, PSNR, '
            "AP50 or artifact values.</p></section>"
        )
    items = "".join(
        f'<figure class="plot"><img src="{url(src)}" alt="{esc(title)}"{_half_size(folder / src)}>'
        f'<figcaption><b>{esc(title)}.</b> {text} <a href="{url(src[:-4])}.svg">SVG</a>'
        "</figcaption></figure>"
        for src, title, text in figs
    )
    return f'<section id="plots"><h2>Plots</h2><div class="plots">{items}</div></section>'


def _caption(vals: tuple[float | None, float | None, float | None]) -> str:
    bpp, psnr, cp = vals
    top = f"{_unit(fmt('bpp', bpp), ' bpp')} · {_unit(fmt('psnr', psnr), ' dB')}"
    crop = "—" if cp is None else ("∞" if math.isinf(cp) else f"{cp:.1f}")
    return f'{top}<br><span class="sub">crop PSNR {crop} dB</span>'


def crops_section(shown: Sequence[Shown], total: int, crop_size: int, zoom: int) -> str:
    if not shown:
        return (
            '<section id="crops"><h2>Zoomed crops</h2><p class="missing">No images under '
            "originals/ in the results folder.</p></section>"
        )
    blocks = []
    for item in shown:
        b = item.box
        how = (
            f"strongest 16-px grid pattern of <b>{esc(item.picked_by)}</b>"
            if item.picked_by
            else "centre (no decoded image)"
        )
        tiles = [
            f'<figure class="tile where"><img src="{url(item.where)}" '
            f'alt="where: {esc(item.name)}"><figcaption><b>where</b><br>'
            f"x {b.left}, y {b.top}, {b.width}×{b.height} px</figcaption>"
            "</figure>"
        ]
        for label, src in item.crop.items():
            cap = "uncompressed" if label == "original" else _caption(item.caption[label])
            tiles.append(
                f'<figure class="tile"><a href="{url(src)}"><img class="px" src="{url(src)}" '
                f'alt="{esc(label)}: {esc(item.name)}"></a><figcaption><b>{esc(label)}</b><br>'
                f"{cap}</figcaption></figure>"
            )
        blocks.append(
            f'<div class="cropset"><h3>{esc(item.name)} <small>crop at the {how}</small></h3>'
            f'<div class="tiles">{"".join(tiles)}</div></div>'
        )
    more = (
        f'<p class="hint">Showing the first {len(shown)} of {total} images '
        "(<code>--max-images</code>).</p>"
        if total > len(shown)
        else ""
    )
    return (
        f'<section id="crops" style="--tile:{crop_size * 3}px"><h2>Zoomed crops</h2>'
        f'<p class="hint">{crop_size}×{crop_size} px at the same place in every decoded image, '
        f"enlarged without smoothing so the checkerboard is visible pixel for pixel (shown ×3; "
        f"click a crop for its ×{zoom} PNG). Under each: whole-image bpp and PSNR, and the PSNR "
        "of the crop alone.</p>" + more + "".join(blocks) + "</section>"
    )


def slider_section(shown: Sequence[Shown]) -> tuple[str, dict[str, Any]]:
    """Two stacked images; a full-size transparent range input moves the split between them."""
    usable = [s for s in shown if len(s.crop) >= 2]
    if not usable:
        return "", {}
    first = usable[0]
    names = list(first.crop)
    left = "base" if "base" in names else names[0]
    right = "human" if "human" in names else next(n for n in names if n != left)
    labels = list(dict.fromkeys(lb for s in usable for lb in s.crop))
    data = {
        "images": [{"name": s.name, "crop": s.crop, "full": s.full} for s in usable],
        "left": left,
        "right": right,
    }
    opts_img = "".join(f'<option value="{i}">{esc(s.name)}</option>' for i, s in enumerate(usable))

    def opts(sel: str) -> str:
        return "".join(
            f'<option value="{esc(lb)}"{" selected" if lb == sel else ""}>{esc(lb)}</option>'
            for lb in labels
        )

    body = (
        '<section id="compare"><h2>Compare: drag the slider</h2>'
        '<div class="cmp-controls">'
        f'<label>image <select id="cmp-image">{opts_img}</select></label>'
        f'<label>left <select id="cmp-left">{opts(left)}</select></label>'
        f'<label>right <select id="cmp-right">{opts(right)}</select></label>'
        '<span class="seg"><label><input type="radio" name="cmp-view" value="crop" checked> '
        'zoomed crop</label><label><input type="radio" name="cmp-view" value="full"> full image'
        "</label></span></div>"
        '<div class="cmp-stage crop" id="cmp-stage" style="--pos:50%">'
        f'<img id="cmp-right-img" src="{url(first.crop[right])}" alt="right">'
        f'<img id="cmp-left-img" class="top" src="{url(first.crop[left])}" alt="left">'
        '<div class="cmp-line"><span></span></div>'
        f'<span class="tag l" id="cmp-tag-l">{esc(left)}</span>'
        f'<span class="tag r" id="cmp-tag-r">{esc(right)}</span>'
        '<input type="range" id="cmp-range" min="0" max="100" step="0.1" value="50" '
        'aria-label="split position"></div>'
        '<p class="hint">Left image on the left of the line, right image on its right. Arrow '
        "keys move the line too.</p></section>"
    )
    return body, data


def notes_section(data: Mapping[str, Any], report_command: str | None) -> str:
    gt = data.get("ground_truth")
    if gt == "annotations":
        gt_note = "<p>Task AP is scored against the set's own annotations.</p>"
    else:
        gt_note = (
            '<p class="warn"><b>Pseudo ground truth</b>'
            + (f" (<code>{esc(gt)}</code>)" if gt else " (ground truth not stated)")
            + ": task AP is scored against the task network's predictions on the uncompressed "
            "images, so it measures agreement with the uncompressed result, not accuracy.</p>"
        )
    cmds = []
    for c in [data.get("command"), *(data.get("commands") or [])]:
        if isinstance(c, str) and c:
            cmds.append(c)
    if report_command:
        cmds.append(report_command)
    cmd_html = "".join(f"<pre><code>{esc(c)}</code></pre>" for c in dict.fromkeys(cmds))
    return (
        '<section id="notes"><h2>Notes</h2>' + gt_note + "<dl>"
        "<dt>artifact dB</dt><dd>Energy of the decoded image x̂ over that of the original x at the "
        "decoder's grid frequencies (period 16 px and its divisors, ≥ 1/8 cycle/px), in dB, on "
        "luma. ≈ 0 dB: no added grid; higher: a visible checkerboard; blur reads below 0.</dd>"
        "<dt>residual grid dB</dt><dd>How periodic the error x̂ − x is: its power at the grid "
        "frequencies over the other frequencies, in dB. A diagnostic, not a ranking.</dd>"
        "<dt>phase variance</dt><dd>Variance over the 16×16 grid phases of the mean residual, "
        "in (8-bit levels)².</dd>"
        "<dt>lattice</dt><dd>The block lattice on the 16-px latent grid: the luma residual "
        "averaged over all pixels of the same phase (i mod 16, j mod 16), RMS of those 256 means, "
        "in grey levels (the square root of the phase variance). JPEG at low rates reads "
        "≈ 0.4–0.9.</dd>"
        "<dt>feature / VGG distance</dt><dd>Distance between features of x and x̂ (task "
        "network / VGG-16); lower is closer.</dd>"
        "<dt>crop choice</dt><dd>For each image the zoom window (aligned to the 16-px grid) where "
        "the base decoder's residual, high-passed by removing its 16×16 box mean, has the most "
        "energy in its phase-averaged 16×16 tile: where the checkerboard is strongest. Every "
        "codec is shown at that same place.</dd>"
        "</dl><h3>Commands</h3>"
        + (cmd_html or '<p class="missing">not recorded</p>')
        + "</section>"
    )


# ------------------------------------------------------------------------------------- the page
CSS = """
:root{--fg:#1d2330;--mut:#5f6b7a;--bg:#f6f7f9;--card:#fff;--line:#e3e6eb;--acc:#1f77b4}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--fg);background:var(--bg)}
header{background:linear-gradient(120deg,#14213d,#1f4e79);color:#fff;padding:28px 32px 18px}
header h1{margin:0 0 4px;font-size:26px;font-weight:650}
header .meta{opacity:.85;font-size:14px}
header .badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;
margin-left:6px;background:#ffffff26}
header .badge.warn{background:#f4a261;color:#111}
nav{position:sticky;top:0;z-index:5;background:#14213df2;padding:6px 32px;display:flex;gap:18px;
flex-wrap:wrap}
nav a{color:#cfe3ff;text-decoration:none;font-size:13px}nav a:hover{color:#fff}
main{max-width:1520px;margin:0 auto;padding:8px 28px 48px}
section{margin-top:30px}
h2{font-size:20px;margin:0 0 10px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:12px 0 6px}
h3 small{font-weight:400;color:var(--mut)}
.hint{color:var(--mut);font-size:13px;margin:4px 0 10px}
.missing{color:var(--mut);font-style:italic}
.lede{font-size:17px;background:#e8f1fb;border-left:4px solid var(--acc);padding:10px 14px;
border-radius:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-top:4px solid var(--c);
border-radius:8px;padding:10px 14px 12px}
.card h3{margin:0 0 2px;font-size:16px}
.card.ref{background:#fbfbfb}
.kind{font-size:11px;font-weight:500;color:var(--mut);border:1px solid var(--line);
border-radius:8px;padding:0 6px;margin-left:4px;vertical-align:2px}
.desc{margin:0 0 6px;color:var(--mut);font-size:12px}
.kv{display:flex;justify-content:space-between;font-size:13px;padding:1px 0}
.kv span{color:var(--mut)}.kv b{font-variant-numeric:tabular-nums;font-weight:600}
.kv.big b{font-size:18px}
.tablewrap{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:8px}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;text-align:right;white-space:nowrap;border-bottom:1px solid var(--line)}
th{background:#f0f2f5;font-weight:600;position:relative}
th small{color:var(--mut)}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:hover{background:#e4e8ee}
th.asc::after{content:" ▲";font-size:10px}th.desc::after{content:" ▼";font-size:10px}
td.lbl,th:first-child{text-align:left}
td.best{font-weight:700;color:#0b5394}
small.ci{color:var(--mut);font-weight:400;font-size:11px}
td.zero{color:var(--mut)}
tfoot.ref td{color:var(--mut);font-style:italic;background:#fafafa}
td.good{color:#1a7f37;font-weight:600}td.bad{color:#b42318;font-weight:600}
tbody tr:hover{background:#f7fafd}
.chip{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:7px}
.params{font-size:12px;color:var(--mut)}
.plots{display:flex;flex-wrap:wrap;gap:14px}
.plot{margin:0;flex:1 1 auto;background:var(--card);border:1px solid var(--line);
border-radius:8px;padding:10px}
.plot img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:12.5px;color:var(--mut);margin-top:4px}
.cropset{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:4px 14px 14px;margin-bottom:14px}
.tiles{display:flex;flex-wrap:wrap;gap:8px}
.tile{margin:0;width:var(--tile)}
.tile img{width:var(--tile);height:auto;display:block;border-radius:3px;background:#ddd}
.tile figcaption{text-align:center;font-variant-numeric:tabular-nums}
.tile .sub{font-size:11px}
img.px{image-rendering:pixelated;image-rendering:crisp-edges}
.cmp-controls{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin-bottom:10px;
font-size:14px}
.cmp-controls select{font:inherit;padding:2px 4px}
.seg label{margin-right:10px}
.cmp-stage{position:relative;display:inline-block;line-height:0;border-radius:6px;overflow:hidden;
box-shadow:0 2px 10px #0002;background:#222;max-width:100%;touch-action:none}
.cmp-stage img{display:block;max-width:100%;height:auto}
.cmp-stage.crop img{width:512px;image-rendering:pixelated}
.cmp-stage.full img{width:768px}
.cmp-stage.full img.up{image-rendering:pixelated}
.cmp-stage img.top{position:absolute;left:0;top:0;height:100%;
clip-path:inset(0 calc(100% - var(--pos)) 0 0)}
.cmp-line{position:absolute;top:0;bottom:0;left:var(--pos);width:2px;margin-left:-1px;
background:#fff;box-shadow:0 0 4px #000a;pointer-events:none}
.cmp-line span{position:absolute;top:50%;left:50%;width:30px;height:30px;margin:-15px 0 0 -15px;
border-radius:50%;background:#fff;box-shadow:0 1px 6px #0008}
.cmp-line span::before{content:"◀ ▶";position:absolute;inset:0;display:flex;align-items:center;
justify-content:center;font-size:9px;line-height:1;color:#333;letter-spacing:-1px}
.tag{position:absolute;top:8px;padding:2px 8px;border-radius:4px;background:#000a;color:#fff;
font-size:12px;line-height:1.5;pointer-events:none}
.tag.l{left:8px}.tag.r{right:8px}
#cmp-range{position:absolute;inset:0;width:100%;height:100%;margin:0;opacity:0;cursor:ew-resize;
-webkit-appearance:none;appearance:none}
.warn{background:#fff4e5;border-left:4px solid #f4a261;padding:8px 12px;border-radius:4px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:14px}
dt{font-weight:600}dd{margin:0;color:#333}
pre{background:#1d2330;color:#e6edf3;padding:8px 12px;border-radius:6px;overflow-x:auto;
font-size:13px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
footer{color:var(--mut);font-size:12px;text-align:center;padding:20px}
"""

JS = r"""
(function(){
function countImages(){
  var imgs=Array.prototype.slice.call(document.images),ok=0,bad=[];
  imgs.forEach(function(i){
    if(i.complete&&i.naturalWidth>0)ok++;else bad.push(i.getAttribute('src'));});
  var d=document.body.dataset;d.imagesTotal=imgs.length;d.imagesLoaded=ok;d.imagesFailed=bad.length;
  if(bad.length)d.imagesFailedSrc=bad.slice(0,5).join(' ');else delete d.imagesFailedSrc;
}
window.addEventListener('load',function(){countImages();document.body.dataset.ready='1';});
// sortable tables: numbers by data-v, empty cells last
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('thead th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('thead th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),num=th.dataset.sort==='num';
      rows.sort(function(a,b){
        var x=a.cells[col].dataset.v,y=b.cells[col].dataset.v;
        if(x===''&&y==='')return 0;if(x==='')return 1;if(y==='')return -1;
        var r=num?parseFloat(x)-parseFloat(y):x.localeCompare(y);return asc?r:-r;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
// comparison slider
var dataEl=document.getElementById('cmp-data');if(!dataEl)return;
var D=JSON.parse(dataEl.textContent),stage=document.getElementById('cmp-stage');
var L=document.getElementById('cmp-left-img'),R=document.getElementById('cmp-right-img');
var selI=document.getElementById('cmp-image'),selL=document.getElementById('cmp-left'),
    selR=document.getElementById('cmp-right'),range=document.getElementById('cmp-range');
function view(){
  var v=document.querySelector('input[name=cmp-view]:checked');return v?v.value:'crop';}
function pick(set,label){return set[label]||set.original||set[Object.keys(set)[0]];}
function update(){
  var im=D.images[+selI.value||0],v=view(),set=im[v];
  L.src=pick(set,selL.value);R.src=pick(set,selR.value);
  stage.className='cmp-stage '+v;
  document.getElementById('cmp-tag-l').textContent=set[selL.value]?selL.value:'(none)';
  document.getElementById('cmp-tag-r').textContent=set[selR.value]?selR.value:'(none)';
}
// full images shown larger than they are keep their pixels sharp (the grid stays visible)
function sharp(){[L,R].forEach(function(i){
  i.classList.toggle('up',i.naturalWidth>0&&i.naturalWidth<i.clientWidth);});}
[L,R].forEach(function(i){i.addEventListener('load',function(){countImages();sharp();});
  i.addEventListener('error',countImages);});
[selI,selL,selR].forEach(function(s){s.addEventListener('change',update);});
document.querySelectorAll('input[name=cmp-view]').forEach(function(r){r.addEventListener('change',update);});
range.addEventListener('input',function(){stage.style.setProperty('--pos',range.value+'%');});
})();
"""


def render_page(
    data: Mapping[str, Any],
    sections: Sequence[str],
    nav: Sequence[tuple[str, str]],
    slider_data: Mapping[str, Any],
) -> str:
    title = str(data.get("title") or "icmbridge report")
    meta = []
    for key, label in (("set", "set"), ("task", "task"), ("created", "created")):
        if data.get(key):
            meta.append(f"{label} <b>{esc(data[key])}</b>")
    gt = data.get("ground_truth")
    badge = (
        '<span class="badge">annotations</span>'
        if gt == "annotations"
        else '<span class="badge warn">pseudo ground truth</span>'
    )
    nav_html = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in nav)
    blob = json.dumps(slider_data).replace("<", "\\u003c") if slider_data else ""
    script_data = (
        f'<script type="application/json" id="cmp-data">{blob}</script>' if slider_data else ""
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><div class="meta">{" · ".join(meta)} {badge}</div></header>'
        f"<nav>{nav_html}</nav><main>{''.join(s for s in sections if s)}</main>"
        "<footer>Static report written by <code>icmbridge report</code>; works offline.</footer>"
        f"{script_data}<script>{JS}</script></body></html>"
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
    data = load_results(results_dir)
    _check_output(results_dir, report_dir)
    codecs = parse_codecs(data)
    labels = order_labels(list(codecs))
    all_labels = order_labels(labels + decoded_labels(results_dir))
    colors = plots.codec_colors(all_labels)
    unc = data.get("uncompressed") if isinstance(data.get("uncompressed"), Mapping) else {}
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(report_dir) as tmp:
        (tmp / MARKER).write_text("written by icmbridge report\n")
        assets = tmp / "assets"
        (assets / "plots").mkdir(parents=True)
        figs = _figures(data, codecs, labels, colors, unc, assets / "plots")
        shown, total = prepare_images(
            results_dir, assets, all_labels, codecs, max_images, crop_size, zoom
        )
        slider, slider_data = slider_section(shown)
        sections = [
            ("summary", "Summary", summary_section(labels, codecs, colors, unc)),
            ("codecs", "Codecs", codec_table_section(labels, codecs, colors, unc)),
            ("differences", "vs base", differences_section(labels, codecs)),
            ("plots", "Plots", figures_section(figs, tmp)),
            ("table1", "Table 1", table1_section(data.get("table1"), data.get("table1_note"))),
            ("bdrate", "BD-rate", bd_section(data.get("bd_rate"), colors)),
            ("compare", "Slider", slider),
            ("crops", "Crops", crops_section(shown, total, crop_size, zoom)),
            ("notes", "Notes", notes_section(data, command)),
        ]
        nav = [(a, t) for a, t, s in sections if s]
        page = render_page(data, [s for _, _, s in sections], nav, slider_data)
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return report_dir / "index.html"


def _figures(
    data: Mapping[str, Any],
    codecs: Mapping[str, Codec],
    labels: Sequence[str],
    colors: Mapping[str, str],
    unc: Mapping[str, Any],
    folder: Path,
) -> list[tuple[str, str, str]]:
    """(asset path, title, caption) of every figure the results allow."""
    out: list[tuple[str, str, str]] = []
    curves = data.get("rate_curves") if isinstance(data.get("rate_curves"), Mapping) else None
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
        out.append((f"assets/plots/{name}", "Rate: PSNR and AP50 against bits per pixel", text))
    name = plots.artifact_bars({lb: codecs[lb].mean.get("artifact_db") for lb in labels}, colors,
                               folder)  # fmt: skip
    if name:
        out.append((f"assets/plots/{name}", "Checkerboard artifacts per codec",
                    "artifact dB, mean over the images; ≈ 0 dB means no added grid."))  # fmt: skip
    sweep = data.get("tradeoff")
    if isinstance(sweep, list) and sweep:
        base = codecs["base"].mean if "base" in codecs else None
        name = plots.tradeoff_plot(sweep, base, folder)
        if name:
            out.append((f"assets/plots/{name}", "λ_a trade-off",
                        "Task AP50 against PSNR and artifact dB for each adversarial weight λ_a "
                        "of the human decoder's finetuning."))  # fmt: skip
    return out
