"""Image sets by name: packaged photos, the planted-face benchmark, and the user's own data.

``get_set(name, split)`` returns a list of :class:`~icmbridge.data.images.Sample`:

* ``photos`` — natural photos shipped inside installed packages (no annotations);
* ``faces`` — the deterministic small-face benchmark with exact boxes;
* ``folder:PATH`` — every jpg/jpeg/png/webp below PATH (no annotations; ``split`` ignored);
* ``coco:JSON`` — COCO instance annotations, images next to the json (``split`` ignored).
"""

from __future__ import annotations

from icmbridge.data.images import Sample, TrainCrops, list_images, load_coco, load_folder
from icmbridge.errors import InputError

_SETS = {
    "photos": "natural photos from scikit-image/scikit-learn/matplotlib (test: astronaut, coffee, "
    "china); no boxes",
    "faces": "planted small faces (20-80 px, LFW crops on packaged photos), 256x256, exact boxes; "
    "train 48 / test 24 images, disjoint faces and backgrounds",
    "folder:PATH": "your images below PATH (jpg/jpeg/png/webp, recursive); no boxes",
    "coco:JSON": "your COCO instance annotations (images next to JSON)",
}


def available_sets() -> dict[str, str]:
    """Set names (``folder:``/``coco:`` take a path) and one-line descriptions."""
    return dict(_SETS)


def get_set(name: str, split: str = "test") -> list[Sample]:
    """The samples of set ``name`` and ``split`` ("train" or "test"; "all" for photos)."""
    if name.startswith("folder:"):
        return load_folder(name.removeprefix("folder:"))
    if name.startswith("coco:"):
        return load_coco(name.removeprefix("coco:"))
    if name == "photos":
        from icmbridge.data.packaged import packaged_photos

        return packaged_photos(split)
    if name == "faces":
        from icmbridge.data.faces import face_benchmark

        return face_benchmark(split)
    raise InputError(f"unknown image set {name!r}; available: {', '.join(_SETS)}")


__all__ = [
    "Sample",
    "TrainCrops",
    "available_sets",
    "get_set",
    "list_images",
    "load_coco",
    "load_folder",
]
