"""Image sets by spec: packaged photos, planted-face benchmarks, public data sets, your own data.

``get_set(spec, split=None)`` returns a list of :class:`~icmbridge.data.images.Sample`. A *set
spec* is one string::

    NAME[:PATH][:SPLIT][?KEY=VALUE[,KEY=VALUE...]]

* ``photos[:train|test|all]`` — natural photos shipped inside installed packages (no boxes);
* ``faces[:train|test]`` — the deterministic small-face benchmark on packaged photos (offline);
* ``bsdsfaces[:PATH][:train|test]`` — the same benchmark on BSDS500 backgrounds (PATH: BSDS500);
* ``kodak[:PATH]`` — the 24 Kodak PNGs (no boxes);
* ``bsds[:PATH][:train|val|test|trainval|all]`` — BSDS500 JPEGs (no boxes);
* ``yolo:PATH`` — a YOLO-format detection set (coco128 layout); ``coco128`` is the bare name;
* ``widerface[:PATH]`` — WIDER FACE official ground truth, with ignore regions;
* ``folder:PATH`` — every jpg/jpeg/png/webp below PATH (no boxes);
* ``coco:JSON`` — COCO instance annotations, images next to the json (read lazily: a json of 100k
  images loads without decoding one).

Without a PATH (a *bare name*: ``kodak``, ``bsds:test``, ``coco128``, ``widerface``,
``bsdsfaces``) the set is looked up below the folder named by the environment variable
``ICMBRIDGE_DATA`` (``kodak/``, ``bsds500/``, ``coco128/``, ``widerface-val200/``). A split
word after the last ``:`` is a split only for sets that have splits, so ``bsds:/data/bsds500:test``
is the test split and ``kodak:/data/test`` is a folder (write ``bsds:./test`` for a BSDS folder
called ``test``). Options after ``?`` (paths cannot contain ``?``):

* widerface: ``min_size=PX`` (default 20, on min(w, h)), ``invalid=ignore|drop|keep``,
  ``small=ignore|drop``, ``gt=FILE`` — e.g. ``widerface:/data/wider?min_size=30,invalid=drop``;
* faces, bsdsfaces: ``n_images=N``, ``seed=S``;
* coco: ``crowd=ignore|drop`` (default ignore: crowds are ignore regions, as in ``COCOeval``),
  ``masks=true`` (instance masks for mask AP, e.g. with ``--task maskrcnn``);
* every set: ``take=START:STOP`` keeps the images START..STOP-1 of the set's fixed order (Python
  slice rules), e.g. ``coco128?take=0:32`` for a validation part to tune on and
  ``coco128?take=32:`` for the rest, to report on.

A split inside the spec wins over the ``split`` argument, which is only a default (callers such
as training pass "train"); sets without splits ignore the argument.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icmbridge.data.images import Sample, TrainCrops, list_images, load_coco, load_folder
from icmbridge.errors import InputError

DATA_ENV = "ICMBRIDGE_DATA"
SPLIT_WORDS = ("train", "val", "test", "trainval", "all")


def _int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"option {key}= must be an integer, not {value!r}") from None


def _float(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InputError(f"option {key}= must be a number, not {value!r}") from None


def _text(key: str, value: str) -> str:
    return value


def _slice(key: str, value: str) -> slice:
    start, colon, stop = value.partition(":")
    if not colon:
        raise InputError(f"option {key}= must be START:STOP (either may be empty), not {value!r}")
    try:
        return slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    except ValueError:
        raise InputError(f"option {key}= must be START:STOP of integers, not {value!r}") from None


#: Options every set takes (applied to the loaded list, after the set's own options).
_COMMON_OPTIONS: dict[str, Any] = {"take": _slice}


def _bool(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise InputError(f"option {key}= must be true or false, not {value!r}")


@dataclass(frozen=True)
class _Kind:
    description: str
    splits: tuple[str, ...] = ()  # empty: the set has no splits
    folder: str | None = None  # folder below ICMBRIDGE_DATA for the bare name
    path_name: str = "PATH"  # what the path is, for messages
    options: dict[str, Any] = field(default_factory=dict)  # key -> converter(key, value)
    packaged: bool = False  # needs no path at all

    @property
    def default_split(self) -> str | None:
        return "test" if "test" in self.splits else None


_KINDS: dict[str, _Kind] = {
    "photos": _Kind(
        "natural photos from scikit-image/scikit-learn/matplotlib (test: astronaut, coffee, "
        "china); no boxes",
        splits=("train", "test", "all"),
        packaged=True,
    ),
    "faces": _Kind(
        "planted small faces (20-80 px, LFW crops on packaged photos), 256x256, exact boxes; "
        "train 48 / test 24 images, disjoint faces and backgrounds; options n_images, seed",
        splits=("train", "test"),
        packaged=True,
        options={"n_images": _int, "seed": _int},
    ),
    "bsdsfaces": _Kind(
        "bsdsfaces[:PATH][:train|test] planted small faces on BSDS500 backgrounds (PATH: the "
        "BSDS500 folder), 256x256; test 300 images / ~1,200 faces (BSDS test photos, faces "
        "60-99), train 600 (train+val photos, faces 0-59); options n_images, seed",
        splits=("train", "test"),
        folder="bsds500",
        options={"n_images": _int, "seed": _int},
    ),
    "kodak": _Kind("kodak[:PATH] the 24 Kodak PhotoCD PNGs (768x512); no boxes", folder="kodak"),
    "bsds": _Kind(
        "bsds[:PATH][:train|val|test|trainval|all] BSDS500 JPEGs (481x321; 200/100/200; "
        "trainval = the training corpus); no boxes",
        splits=("train", "val", "test", "trainval", "all"),
        folder="bsds500",
    ),
    "yolo": _Kind(
        "yolo:PATH a YOLO-format detection set (images/<sub>/*.jpg, labels/<sub>/*.txt, "
        "classes.txt or data.yaml); labels = YOLO class ids",
    ),
    "widerface": _Kind(
        "widerface[:PATH][?min_size=20,invalid=ignore|drop|keep,small=ignore|drop,gt=FILE] "
        "WIDER FACE images + official boxes; faces invalid or under min_size px (on min(w,h)) "
        "are ignore regions",
        folder="widerface-val200",
        options={"min_size": _float, "invalid": _text, "small": _text, "gt": _text},
    ),
    "folder": _Kind("folder:PATH your images below PATH (jpg/jpeg/png/webp, recursive); no boxes"),
    "coco": _Kind(
        "coco:JSON[?crowd=ignore|drop,masks=true] your COCO instance annotations (images next "
        "to JSON, read lazily; crowds are ignore regions; masks for mask AP)",
        path_name="JSON",
        options={"crowd": _text, "masks": _bool},
    ),
}
# Bare names that stand for another kind with its own folder below ICMBRIDGE_DATA.
_ALIASES = {"coco128": ("yolo", "coco128")}
# The names `available_sets` and `icmbridge data list` show, in order.
_LISTED = {
    "photos": "photos",
    "faces": "faces",
    "bsdsfaces": "bsdsfaces",
    "kodak": "kodak",
    "bsds": "bsds",
    "coco128": "yolo",
    "widerface": "widerface",
    "yolo:PATH": "yolo",
    "folder:PATH": "folder",
    "coco:JSON": "coco",
}


@dataclass(frozen=True)
class SetSpec:
    """A parsed set spec: the loader ``kind``, an explicit ``path`` (None: a bare name, found
    below ``ICMBRIDGE_DATA`` at ``folder``), the ``split`` written in the spec (None: none) and
    the ``options`` after ``?`` (converted)."""

    kind: str
    path: str | None = None
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    folder: str | None = None
    text: str = ""


def parse_spec(spec: str) -> SetSpec:
    """Parse ``NAME[:PATH][:SPLIT][?KEY=VALUE,...]`` (see the module docstring)."""
    text = str(spec).strip()
    if not text:
        raise InputError("empty image set spec; see `icmbridge data list`")
    head, query = text, ""
    if "?" in text:
        head, _, query = text.rpartition("?")
    name, sep, rest = head.partition(":")
    kind_name, folder = _ALIASES.get(name, (name, None))
    kind = _KINDS.get(kind_name)
    if kind is None:
        raise InputError(f"unknown image set {name!r} in {text!r}; available: {', '.join(_LISTED)}")
    folder = folder or kind.folder
    path, split = (rest or None), None
    if kind.splits and rest:
        if rest in SPLIT_WORDS:
            path, split = None, rest
        elif ":" in rest and rest.rsplit(":", 1)[1] in SPLIT_WORDS:
            path, split = rest.rsplit(":", 1)
            path = path or None
    if split is not None and split not in kind.splits:
        raise InputError(f"{name} has no split {split!r}; its splits: {', '.join(kind.splits)}")
    if path is not None and kind.packaged:
        raise InputError(f"{name} is built from packaged data and takes no path (got {path!r})")
    if path is None and not kind.packaged and folder is None:
        raise InputError(f"{name} needs a {kind.path_name}: write {name}:{kind.path_name}")
    return SetSpec(kind_name, path, split, _parse_options(kind_name, kind, query), folder, text)


def _parse_options(name: str, kind: _Kind, query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in filter(None, (q.strip() for q in query.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise InputError(f"bad set option {item!r}: write KEY=VALUE after '?'")
        allowed = {**kind.options, **_COMMON_OPTIONS}
        if key not in allowed:
            known = ", ".join(allowed)
            raise InputError(f"unknown option {key!r} for {name}; its options: {known}")
        options[key] = allowed[key](key, value.strip())
    return options


def data_root() -> Path:
    """The folder of ``ICMBRIDGE_DATA`` (where bare set names are found)."""
    value = os.environ.get(DATA_ENV, "").strip()
    if not value:
        raise InputError(
            f"{DATA_ENV} is not set: set it to the folder holding kodak/, bsds500/, coco128/, "
            f"widerface-val200/ (e.g. export {DATA_ENV}=../shared/data), or give the set a path "
            "(e.g. kodak:/path/to/kodak)"
        )
    return Path(value).expanduser()


def resolve_path(spec: SetSpec | str) -> Path | None:
    """The folder or file a spec reads: its explicit path, or ``$ICMBRIDGE_DATA/<folder>`` for a
    bare name (InputError when unset or missing); None for packaged sets."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.path is not None:
        path = Path(spec.path).expanduser()
        if not path.exists():
            hint = ""
            if spec.path in SPLIT_WORDS:
                hint = f" ({spec.kind} has no splits; write {spec.kind}:./{spec.path} for a folder)"
            raise InputError(f"{spec.kind}: no such file or folder: {path}{hint}")
        return path
    if spec.folder is None:
        return None
    root = data_root()
    path = root / spec.folder
    if not path.is_dir():
        raise InputError(
            f"no {spec.folder}/ folder in {DATA_ENV}={root}: set {DATA_ENV} to the folder that "
            f"holds {spec.folder}/, or give the path ({spec.kind}:{_KINDS[spec.kind].path_name})"
        )
    return path


_ALIAS_DESCRIPTIONS = {
    "coco128": "coco128 = yolo:$ICMBRIDGE_DATA/coco128: 128 COCO train2017 images, 929 boxes, "
    "80 classes (labels = YOLO ids 0-79)",
}


def available_sets() -> dict[str, str]:
    """Set names and one-line descriptions (with their spec syntax)."""
    return {
        name: _ALIAS_DESCRIPTIONS.get(name, _KINDS[kind].description)
        for name, kind in _LISTED.items()
    }


def set_status() -> dict[str, str]:
    """For each listed set: "packaged", "needs a path", or, for the sets with a bare name,
    "found" / "missing" (its folder below ICMBRIDGE_DATA) or "ICMBRIDGE_DATA not set"."""
    value = os.environ.get(DATA_ENV, "").strip()
    out = {}
    for name, kind_name in _LISTED.items():
        kind = _KINDS[kind_name]
        folder = _ALIASES.get(name, (None, kind.folder))[1]
        if kind.packaged:
            out[name] = "packaged"
        elif ":" in name or folder is None:
            out[name] = "needs a path"
        elif not value:
            out[name] = f"{DATA_ENV} not set"
        else:
            out[name] = "found" if (Path(value).expanduser() / folder).is_dir() else "missing"
    return out


def train_split(spec: str) -> str | None:
    """The spec of the training split of the set ``spec`` (``faces:test`` → ``faces:train``),
    or None when the set has no training split."""
    parsed = parse_spec(spec)
    if "train" not in _KINDS[parsed.kind].splits:
        return None
    head, sep, query = parsed.text.partition("?")
    name = head.partition(":")[0]
    path = f":{parsed.path}" if parsed.path is not None else ""
    return f"{name}{path}:train" + (f"?{query}" if sep else "")


def get_set(spec: str, split: str | None = None) -> list[Sample]:
    """The samples of the set ``spec`` (``NAME[:PATH][:SPLIT][?OPTIONS]``, see the module doc).

    ``split`` is the default split for sets that have splits when the spec names none (else
    "test"); a split in the spec wins; sets without splits ignore it.
    """
    parsed = parse_spec(spec)
    samples = _load(parsed, split)
    if "take" in parsed.options:
        samples = samples[parsed.options["take"]]
        if not samples:
            raise InputError(f"{parsed.text}: take= leaves no image")
    return samples


def _load(parsed: SetSpec, split: str | None) -> list[Sample]:
    kind = _KINDS[parsed.kind]
    if kind.splits:
        split = parsed.split or split or kind.default_split
        if split not in kind.splits:
            raise InputError(
                f"{parsed.kind} has no split {split!r}; its splits: {', '.join(kind.splits)}"
            )
    path = resolve_path(parsed)
    opts = {k: v for k, v in parsed.options.items() if k not in _COMMON_OPTIONS}
    if parsed.kind == "photos":
        from icmbridge.data.packaged import packaged_photos

        return packaged_photos(split)
    if parsed.kind == "faces":
        from icmbridge.data.faces import face_benchmark

        return face_benchmark(split, **opts)
    if parsed.kind == "bsdsfaces":
        from icmbridge.data.faces import bsds_face_benchmark

        return bsds_face_benchmark(path, split, **opts)
    if parsed.kind == "folder":
        return load_folder(path)
    if parsed.kind == "coco":
        opts = dict(opts)
        return load_coco(path, with_masks=opts.pop("masks", False), **opts)

    from icmbridge.data import public

    if parsed.kind == "kodak":
        return public.load_kodak(path)
    if parsed.kind == "bsds":
        return public.load_bsds(path, split)
    if parsed.kind == "yolo":
        return public.load_yolo(path)
    if parsed.kind == "widerface":
        return public.load_widerface(path, **opts)
    raise AssertionError(parsed.kind)  # every kind is handled above


def load_samples(images: str | None, set_spec: str, limit: int | None = None) -> list[Sample]:
    """The samples of a folder ``images`` (``--images``) or else of the set spec ``set_spec``
    (``--set``; test split unless the spec names one), the first ``limit`` of them."""
    samples = load_folder(images) if images else get_set(set_spec, "test")
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be ≥ 1, got {limit}")
        samples = samples[:limit]
    if not samples:
        raise InputError("no images to evaluate")
    return samples


__all__ = [
    "DATA_ENV",
    "Sample",
    "SetSpec",
    "TrainCrops",
    "available_sets",
    "data_root",
    "get_set",
    "list_images",
    "load_samples",
    "load_coco",
    "load_folder",
    "parse_spec",
    "resolve_path",
    "set_status",
    "train_split",
]
