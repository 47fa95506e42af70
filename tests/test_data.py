"""Data: packaged photos, the planted-face benchmark, folders/COCO json, training crops, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from icmbridge.data import available_sets, get_set, list_images, load_coco, load_folder
from icmbridge.data.faces import face_benchmark
from icmbridge.data.images import TrainCrops
from icmbridge.data.packaged import TEST_PHOTOS, packaged_photos
from icmbridge.errors import InputError


@pytest.fixture(scope="module")
def faces_test():
    return face_benchmark("test", n_images=6)


def test_packaged_photos_split_is_disjoint_and_rgb():
    test, train = packaged_photos("test"), packaged_photos("train")
    assert [s.name for s in test] == list(TEST_PHOTOS)
    assert {s.name for s in test}.isdisjoint(s.name for s in train)
    assert len(train) >= 5
    for s in test + train:
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3
        assert s.boxes is None


def test_face_benchmark_is_deterministic(faces_test):
    again = face_benchmark("test", n_images=6)
    for a, b in zip(faces_test, again, strict=True):
        assert a.name == b.name
        assert a.image.tobytes() == b.image.tobytes()
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_face_benchmark_boxes_are_valid_and_sized(faces_test):
    for s in faces_test:
        assert s.image.shape == (256, 256, 3)
        assert 1 <= len(s.boxes) <= 5
        b = s.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 3] <= 256).all() and (b[:, 2] > b[:, 0]).all()
        heights = b[:, 3] - b[:, 1]
        assert heights.min() >= 19 and heights.max() <= 80
        # faces never overlap
        for i in range(len(b)):
            for j in range(i + 1, len(b)):
                ix = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0])
                iy = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1])
                assert ix <= 0 or iy <= 0


def test_face_benchmark_splits_use_disjoint_faces_and_backgrounds():
    from icmbridge.data import faces

    assert set(faces.FACE_INDICES["train"]).isdisjoint(faces.FACE_INDICES["test"])
    assert set(faces.BACKGROUNDS["train"]).isdisjoint(faces.BACKGROUNDS["test"])
    assert set(faces.BACKGROUNDS["test"]) <= set(TEST_PHOTOS)
    train = face_benchmark("train", n_images=4)
    assert {s.meta["background"] for s in train} <= set(faces.BACKGROUNDS["train"])
    with pytest.raises(InputError):
        face_benchmark("val")


def test_train_crops_reproducible_per_epoch():
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 255, (100, 90, 3), dtype=np.uint8),
        rng.integers(0, 255, (300, 200, 3), dtype=np.uint8),
    ]
    a = TrainCrops(images, crop=128, samples_per_epoch=6, seed=3)
    b = TrainCrops(images, crop=128, samples_per_epoch=6, seed=3)
    assert len(a) == 6
    first = torch.stack([a[i] for i in range(6)])
    assert first.shape == (6, 3, 128, 128) and first.dtype == torch.float32
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, torch.stack([b[i] for i in reversed(range(6))]).flip(0))
    a.set_epoch(1)
    assert not torch.equal(first, torch.stack([a[i] for i in range(6)]))
    a.set_epoch(0)
    assert torch.equal(first, torch.stack([a[i] for i in range(6)]))
    with pytest.raises(IndexError):
        a[6]


def test_folder_and_coco_round_trip(tmp_path, faces_test):
    from icmbridge.data.export import export_coco

    export_coco(faces_test[:3], tmp_path / "set")
    (tmp_path / "set" / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "set" / "sub" / "gray.webp")
    paths = list_images(tmp_path / "set")
    assert paths == sorted(paths) and len(paths) == 4 and paths[-1].name == "gray.webp"
    folder = load_folder(tmp_path / "set")
    assert folder[-1].image.shape == (8, 8, 3)
    coco = load_coco(tmp_path / "set" / "annotations.json")
    assert [s.image.tobytes() for s in coco] == [s.image.tobytes() for s in faces_test[:3]]
    for got, want in zip(coco, faces_test[:3], strict=True):
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-4)
    same = get_set(f"coco:{tmp_path / 'set' / 'annotations.json'}")
    assert len(same) == 3
    data = json.loads((tmp_path / "set" / "annotations.json").read_text())
    assert data["categories"][0]["name"] == "face"


def test_get_set_errors(tmp_path):
    assert {"photos", "faces"} <= set(available_sets())
    with pytest.raises(InputError):
        get_set("nope")
    with pytest.raises(InputError):
        get_set(f"folder:{tmp_path}")  # empty folder


def test_cli_data_list_and_export(tmp_path, capsys):
    from icmbridge.commands import main

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "photos" in out and "faces" in out and "folder:PATH" in out
    assert main(["data", "export", "photos", "--split", "test", "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(f"{n}.png" for n in TEST_PHOTOS)
    assert main(["data", "export", "bogus", "-o", str(tmp_path)]) == 2
    assert "error: unknown image set" in capsys.readouterr().err


def test_take_keeps_a_fixed_part_of_any_set():
    """take=START:STOP slices the set's fixed order: disjoint parts for tuning and reporting."""
    from icmbridge.data import get_set
    from icmbridge.errors import InputError

    full = [s.name for s in get_set("faces:test")]
    head = [s.name for s in get_set("faces:test?take=0:5")]
    rest = [s.name for s in get_set("faces:test?take=5:")]
    assert head == full[:5] and rest == full[5:] and len(full) == 24
    assert [s.name for s in get_set("photos:test?take=-1:")] == [get_set("photos:test")[-1].name]
    with pytest.raises(InputError, match="leaves no image"):
        get_set("faces:test?take=30:")
