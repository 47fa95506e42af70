"""Natural photos that ship inside installed packages, so the demo and tests run with no download.

Sources: scikit-image ``skimage.data`` (files bundled in the wheel; the pooch-fetched ones are
skipped), scikit-learn ``load_sample_images`` (china, flower) and matplotlib's sample data
(grace_hopper). Any photo whose package or file is missing is skipped, never fetched.

Split (fixed, by name, so results are comparable across machines):

* ``test``: astronaut (has a face, so the face task has something to find), coffee, china — three
  held-out photos of different content (portrait, close-up still life, landscape/architecture).
* ``train``: every other photo.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from icmbridge.data.images import Sample, _read_rgb, to_rgb
from icmbridge.errors import InputError

TEST_PHOTOS = ("astronaut", "coffee", "china")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return _read_rgb(f)


# name -> loader; order is the listing order.
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "coffee": _skimage("coffee"),
    "china": _sklearn(0),
    "chelsea": _skimage("chelsea"),
    "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "camera": _skimage("camera"),
    "flower": _sklearn(1),
    "grace_hopper": _grace_hopper,
}


@cache
def _cached(name: str) -> np.ndarray | None:
    try:
        image = to_rgb(PHOTOS[name]())
    except (ImportError, OSError, AttributeError, ValueError):
        return None
    image.setflags(write=False)
    return image


def load_photo(name: str) -> np.ndarray | None:
    """One packaged photo as HxWx3 uint8 (a fresh copy), or None when it is not installed."""
    if name not in PHOTOS:
        raise InputError(f"unknown packaged photo {name!r}; known: {', '.join(PHOTOS)}")
    image = _cached(name)
    return None if image is None else image.copy()


def packaged_photos(split: str = "all") -> list[Sample]:
    """Packaged photos of ``split`` ("train", "test" or "all"), without annotations."""
    if split not in ("train", "test", "all"):
        raise InputError(f"split must be train, test or all, not {split!r}")
    names = [n for n in PHOTOS if split == "all" or (n in TEST_PHOTOS) == (split == "test")]
    samples = []
    for name in names:
        image = load_photo(name)
        if image is not None:
            samples.append(Sample(name, image))
    return samples
