"""Loaders for public data sets laid out as they are distributed: Kodak, BSDS500, YOLO-format
detection sets (coco128) and WIDER FACE ground truth.

Every loader returns :class:`~icmbridge.data.images.Sample` objects and reads image files only
through :func:`icmbridge.data.images._read_rgb` (gray and alpha become RGB). The sets are small
(24 to 500 images), so they are decoded eagerly; the listing order is sorted, never the file
system's.

Expected layouts (as in the project's shared data folder):

* Kodak: ``ROOT/*.png`` (24 images).
* BSDS500: ``ROOT/{train,val,test}/*.jpg`` (200 / 100 / 200; train + val is the usual training
  corpus).
* YOLO (coco128): ``ROOT/images/<sub>/*.jpg`` and ``ROOT/labels/<sub>/<stem>.txt``, one line
  ``class xc yc w h`` per box, normalised to [0, 1]; class names one per line in
  ``ROOT/classes.txt``, or the ``names`` of a ``ROOT/*.yaml``.
* WIDER FACE: ``ROOT/images/<event>/<name>.jpg`` and a ground-truth file in the official format
  (``*gt*.txt`` in ROOT or ``ROOT/wider_face_split/``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np

from icmbridge.data.images import IMAGE_SUFFIXES, Sample, _read_rgb
from icmbridge.errors import InputError

BSDS_SPLITS = {
    "train": ("train",),
    "val": ("val",),
    "test": ("test",),
    "trainval": ("train", "val"),
    "all": ("train", "val", "test"),
}
WIDER_ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
WIDER_MIN_SIZE = 20.0


def _folder(path: str | Path, what: str) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{what}: not a folder: {root}")
    return root


def _images_in(folder: Path, recursive: bool = False) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# --------------------------------------------------------------------------------------------
# Kodak, BSDS500: images only


def load_kodak(root: str | Path) -> list[Sample]:
    """The Kodak PNGs in ``root`` (sorted by name), without boxes."""
    root = _folder(root, "kodak")
    paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    if not paths:
        raise InputError(f"kodak: no .png images in {root}")
    return [Sample(p.name, _read_rgb(p)) for p in paths]


def bsds_paths(root: str | Path, split: str = "test") -> list[Path]:
    """The BSDS500 image files of ``split`` (train, val, test, trainval or all), sorted by
    split folder then name."""
    if split not in BSDS_SPLITS:
        raise InputError(f"bsds split must be one of {', '.join(BSDS_SPLITS)}, not {split!r}")
    root = _folder(root, "bsds")
    paths = []
    for sub in BSDS_SPLITS[split]:
        folder = root / sub
        if not folder.is_dir():
            raise InputError(f"bsds: no {sub}/ folder in {root} (expected train/, val/, test/)")
        found = _images_in(folder)
        if not found:
            raise InputError(f"bsds: no images in {folder}")
        paths += found
    return paths


def load_bsds(root: str | Path, split: str = "test") -> list[Sample]:
    """BSDS500 images of ``split``, without boxes; names are ``<split>/<file>``."""
    root = Path(root)
    return [Sample(p.relative_to(root).as_posix(), _read_rgb(p)) for p in bsds_paths(root, split)]


# --------------------------------------------------------------------------------------------
# YOLO-format detection sets (coco128)


def _yaml_names(path: Path) -> list[str] | None:
    """The ``names`` of a YOLO data yaml: a flow list, a block list or an id -> name mapping
    (read with PyYAML when installed, else with a small reader of just these forms)."""
    text = path.read_text()
    try:
        import yaml  # optional
    except ImportError:
        names = _names_without_yaml(text)
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{path} is not valid YAML: {exc}") from exc
        names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names] if names else None


def _names_without_yaml(text: str) -> list | dict | None:
    m = re.search(r"^names:[ \t]*(\S.*)?$", text, re.MULTILINE)
    if m is None:
        return None
    if m.group(1):  # flow style: names: ['person', 'bicycle']
        try:
            return ast.literal_eval(m.group(1).strip())
        except (ValueError, SyntaxError):
            return None
    block: dict[int, str] = {}
    for line in text[m.end() :].splitlines()[1:]:
        item = re.fullmatch(r"[ \t]+(?:-[ \t]*|(\d+):[ \t]*)(.+?)[ \t]*", line)
        if item is None:
            if line.strip() and not line[0].isspace():
                break  # the next top-level key
            continue
        key, value = item.groups()
        block[int(key) if key else len(block)] = value.strip("'\"")
    return block or None


def yolo_class_names(root: str | Path) -> list[str] | None:
    """Class names of a YOLO set: ``classes.txt`` (one per line, line i = class i), else the
    ``names`` of a ``*.yaml`` in ``root``; None when there is neither."""
    root = Path(root)
    classes = root / "classes.txt"
    if classes.is_file():
        return [line.strip() for line in classes.read_text().splitlines() if line.strip()]
    for path in sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml")):
        names = _yaml_names(path)
        if names:
            return names
    return None


def read_yolo_labels(path: str | Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """One YOLO label file as (xyxy float32 pixel boxes (K, 4), int64 class ids (K,)).

    Lines are ``class xc yc w h`` normalised to [0, 1]; a segment line ``class x1 y1 x2 y2 ...``
    becomes the box around its polygon. Boxes are clipped to the image.
    """
    boxes, labels = [], []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls, values = int(parts[0]), [float(v) for v in parts[1:]]
        except ValueError:
            raise InputError(f"{path}:{n}: not a YOLO label line: {line!r}") from None
        if len(values) == 4:
            xc, yc, w, h = values
            box = [xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2]
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
        else:
            raise InputError(f"{path}:{n}: expected 'class xc yc w h', got {line!r}")
        if cls < 0:
            raise InputError(f"{path}:{n}: negative class id {cls}")
        boxes.append(box)
        labels.append(cls)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * [width, height, width, height]
    b = np.clip(b, 0, [width, height, width, height])
    return b.astype(np.float32), np.asarray(labels, dtype=np.int64)


def load_yolo(root: str | Path) -> list[Sample]:
    """A YOLO-format detection set (coco128 layout) with xyxy pixel boxes and YOLO class ids.

    Images are every image below ``root/images`` (sorted; names relative to it, e.g.
    ``train2017/000000000009.jpg``); each one's labels come from the same relative path below
    ``root/labels`` with a ``.txt`` suffix. An image without a label file is a background image:
    it keeps an empty (0, 4) box array, so detections on it count as false positives.
    ``meta["class_names"]`` holds the class names (index = class id), or None.
    """
    root = _folder(root, "yolo")
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        raise InputError(f"yolo: no images/ folder in {root} (expected images/ and labels/)")
    paths = _images_in(images_dir, recursive=True)
    if not paths:
        raise InputError(f"yolo: no images below {images_dir}")
    names = yolo_class_names(root)
    samples = []
    for p in paths:
        rel = p.relative_to(images_dir)
        image = _read_rgb(p)
        h, w = image.shape[:2]
        label_file = (labels_dir / rel).with_suffix(".txt")
        if label_file.is_file():
            boxes, labels = read_yolo_labels(label_file, w, h)
        else:
            boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        if names is not None and len(labels) and labels.max() >= len(names):
            raise InputError(
                f"{label_file}: class id {labels.max()} but only {len(names)} class names"
            )
        samples.append(Sample(rel.as_posix(), image, boxes, labels, meta={"class_names": names}))
    return samples


# --------------------------------------------------------------------------------------------
# WIDER FACE


def parse_wider_gt(text: str, source: str = "ground truth") -> list[tuple[str, np.ndarray]]:
    """The official WIDER FACE ground-truth format as ``[(image name, (K, 10) float array)]``.

    Each image is a name line, a count line, then ``count`` lines ``x y w h blur expression
    illumination invalid occlusion pose``. An image with count 0 is followed by one line of
    zeros in the official files (and by nothing in some re-exports): both are read as no faces.
    """
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    out: list[tuple[str, np.ndarray]] = []
    i = 0

    def numbers(j: int) -> list[float] | None:
        try:
            return [float(v) for v in lines[j].split()]
        except (ValueError, IndexError):
            return None

    while i < len(lines):
        name = lines[i]
        try:
            count = int(lines[i + 1])
        except (IndexError, ValueError):
            raise InputError(
                f"{source}: line after image {name!r} must be its face count"
            ) from None
        i += 2
        rows = []
        for _ in range(count):
            row = numbers(i)
            if row is None or len(row) < 4:
                raise InputError(f"{source}: bad face line for {name!r}: {lines[i : i + 1]}")
            rows.append((row + [0.0] * 10)[:10])
            i += 1
        if count == 0:
            row = numbers(i)
            if row is not None and len(row) >= 4 and not any(row):
                i += 1  # the official placeholder line of an image without faces
        out.append((name, np.asarray(rows, dtype=np.float64).reshape(-1, 10)))
    return out


def find_wider_gt(root: Path) -> Path:
    """The ground-truth file of a WIDER folder: the one ``*gt*.txt`` (in ``root`` or its
    ``wider_face_split/``) whose images are all present below ``root/images``."""
    candidates = sorted(root.glob("*gt*.txt")) + sorted(root.glob("wider_face_split/*gt*.txt"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"widerface: no ground-truth file (*gt*.txt) in {root}")
    complete = []
    for path in candidates:
        names = [name for name, _ in parse_wider_gt(path.read_text(), str(path))]
        if names and all((root / "images" / n).is_file() for n in names):
            complete.append(path)
    if len(complete) != 1:
        listed = ", ".join(p.name for p in candidates)
        raise InputError(
            f"widerface: several ground-truth files in {root} ({listed}); "
            "name one with widerface:PATH?gt=FILE"
        )
    return complete[0]


def load_widerface(
    root: str | Path,
    min_size: float = WIDER_MIN_SIZE,
    invalid: str = "ignore",
    small: str = "ignore",
    gt: str | Path | None = None,
) -> list[Sample]:
    """WIDER FACE images with their official face boxes (xyxy pixels, label 1).

    A face is *scored* when it is valid (``invalid == 0``) and ``min(w, h) >= min_size`` pixels
    (default 20, on the shorter side, so a face must be at least 20×20; both sides must be > 0).
    The others are never dropped silently: by default they stay in ``boxes`` with
    ``Sample.ignore`` True, as ignore regions (a detection on them is neither a true nor a false
    positive). ``small`` = "ignore" | "drop" and ``invalid`` = "ignore" | "drop" | "keep" (keep:
    scored like valid faces, still subject to the size) change that. ``meta["attributes"]`` is
    the (K, 6) int array of WIDER attributes aligned with the boxes (``WIDER_ATTRIBUTES``).

    ``root`` is the folder with ``images/`` (or the ground-truth file itself, with ``images/``
    next to it); ``gt`` names the ground-truth file when the folder holds several.
    """
    if invalid not in ("ignore", "drop", "keep"):
        raise InputError(f"widerface invalid= must be ignore, drop or keep, not {invalid!r}")
    if small not in ("ignore", "drop"):
        raise InputError(f"widerface small= must be ignore or drop, not {small!r}")
    if not min_size >= 0:
        raise InputError(f"widerface min_size must be ≥ 0, got {min_size}")
    root = Path(root)
    if root.is_file():
        gt_path, root = root, root.parent
    else:
        root = _folder(root, "widerface")
        gt_path = root / gt if gt is not None else find_wider_gt(root)
        if not gt_path.is_file():
            raise InputError(f"widerface: no ground-truth file {gt_path}")
    samples = []
    for name, rows in parse_wider_gt(gt_path.read_text(), str(gt_path)):
        path = root / "images" / name
        if not path.is_file():
            raise InputError(f"widerface: {gt_path.name} lists {name} but {path} is missing")
        x, y, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        attributes = rows[:, 4:10].astype(np.int64)
        is_invalid = attributes[:, 3] != 0
        too_small = ~((np.minimum(w, h) >= min_size) & (w > 0) & (h > 0))
        drop = (too_small & (small == "drop")) | (is_invalid & (invalid == "drop"))
        ignore = (too_small | (is_invalid & (invalid == "ignore")))[~drop]
        boxes = np.stack([x, y, x + w, y + h], axis=1)[~drop].astype(np.float32)
        samples.append(
            Sample(
                name,
                _read_rgb(path),
                boxes.reshape(-1, 4),
                np.ones(len(boxes), dtype=np.int64),
                meta={"attributes": attributes[~drop]},
                ignore=ignore,
            )
        )
    if not samples:
        raise InputError(f"widerface: {gt_path} lists no images")
    return samples
