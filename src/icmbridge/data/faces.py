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
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from icmbridge.data.images import Sample
from icmbridge.data.packaged import load_photo
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


def face_benchmark(
    split: str = "test",
    n_images: int | None = None,
    size: int = 256,
    faces_per_image: tuple[int, int] = (3, 5),
    face_sizes: tuple[int, int] = (20, 80),
    seed: int = 0,
) -> list[Sample]:
    """The planted-face benchmark: ``n_images`` RGB images of ``size``² with exact xyxy face boxes.

    Defaults: 24 test images, 48 train images, 3–5 faces each, face sides drawn log-uniformly in
    ``face_sizes`` (so half the faces are below ~40 px, where low-rate coding hurts detection).
    """
    if split not in FACE_INDICES:
        raise InputError(f"face benchmark split must be train or test, not {split!r}")
    if size < 2 * face_sizes[1]:
        raise InputError(f"image size {size} too small for faces up to {face_sizes[1]} px")
    n_images = n_images if n_images is not None else (24 if split == "test" else 48)
    faces = _lfw_faces()
    face_ids = np.array(list(FACE_INDICES[split]))
    photos = [(n, load_photo(n)) for n in BACKGROUNDS[split]]
    photos = [(n, p) for n, p in photos if p is not None]
    if not photos:
        raise InputError("no packaged background photo is installed (scikit-image/scikit-learn)")
    rng = np.random.default_rng([_SPLIT_SEED[split], seed])
    samples = []
    for i in range(n_images):
        bg_name, photo = photos[i % len(photos)]
        canvas = _background(photo, size, rng)
        k = int(rng.integers(faces_per_image[0], faces_per_image[1] + 1))
        lo, hi = np.log(face_sizes[0]), np.log(face_sizes[1])
        sizes = [int(round(np.exp(rng.uniform(lo, hi)))) for _ in range(k)]
        boxes = []
        for x, y, s in _place(sizes, size, rng):
            face = faces[int(rng.choice(face_ids))]
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
                name=f"faces-{split}-{i:03d}",
                image=image,
                boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                labels=np.ones(len(boxes), dtype=np.int64),
                meta={"background": bg_name},
            )
        )
    return samples
