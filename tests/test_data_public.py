"""Set specs, the public-set loaders (Kodak, BSDS500, YOLO/coco128, WIDER FACE) and the planted-face
benchmark on BSDS500 backgrounds.

Tests on tiny files written to tmp_path always run; tests on the real files skip with a clear
reason where ``../shared/data`` (or ``$ICMBRIDGE_DATA``) lacks the set.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from shared_data import data_root, need, requires

from icmbridge.data import available_sets, get_set, parse_spec, set_status
from icmbridge.data.faces import BSDS_WITH_FACES, FACE_INDICES, bsds_face_benchmark, face_benchmark
from icmbridge.data.images import Sample, load_coco
from icmbridge.data.public import load_widerface, load_yolo, parse_wider_gt, read_yolo_labels
from icmbridge.errors import InputError


def _digest(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(s.name.encode())
        h.update(s.image.tobytes())
        h.update(np.asarray(s.boxes, np.float32).tobytes())
    return h.hexdigest()


def _jpg(path, w=40, h=30, value=128, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------------------------
# Set specs (no data needed)


@pytest.mark.parametrize(
    "spec, kind, path, split, options",
    [
        ("faces", "faces", None, None, {}),
        ("faces:test", "faces", None, "test", {}),
        ("faces:train?n_images=3,seed=2", "faces", None, "train", {"n_images": 3, "seed": 2}),
        ("kodak", "kodak", None, None, {}),
        ("kodak:/data/kodak", "kodak", "/data/kodak", None, {}),
        ("kodak:/data/test", "kodak", "/data/test", None, {}),  # kodak has no splits
        ("bsds", "bsds", None, None, {}),
        ("bsds:val", "bsds", None, "val", {}),
        ("bsds:/a:b/bsds500:trainval", "bsds", "/a:b/bsds500", "trainval", {}),
        ("bsds:/a/bsds500", "bsds", "/a/bsds500", None, {}),
        ("coco128", "yolo", None, None, {}),
        ("yolo:/x/coco128", "yolo", "/x/coco128", None, {}),
        ("widerface", "widerface", None, None, {}),
        (
            "widerface:/w?min_size=30,invalid=drop",
            "widerface",
            "/w",
            None,
            {"min_size": 30.0, "invalid": "drop"},
        ),
        ("bsdsfaces:/b:train", "bsdsfaces", "/b", "train", {}),
        ("folder:/x:train", "folder", "/x:train", None, {}),
        ("coco:/a/ann.json?crowd=ignore", "coco", "/a/ann.json", None, {"crowd": "ignore"}),
    ],
)
def test_parse_spec(spec, kind, path, split, options):
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.path, parsed.split, parsed.options) == (kind, path, split, options)


def test_parse_spec_folders_for_bare_names():
    assert parse_spec("coco128").folder == "coco128"
    assert parse_spec("bsds:test").folder == "bsds500"
    assert parse_spec("bsdsfaces").folder == "bsds500"
    assert parse_spec("widerface").folder == "widerface-val200"
    assert parse_spec("kodak").folder == "kodak"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty"),
        ("nope", "unknown image set 'nope'"),
        ("nope:/x", "unknown image set"),
        ("faces:val", "faces has no split 'val'"),
        ("photos:trainval", "photos has no split"),
        ("faces:/some/path", "takes no path"),
        ("yolo", "yolo needs a PATH"),
        ("folder", "folder needs a PATH"),
        ("coco", "coco needs a JSON"),
        ("widerface?min_size=abc", "must be a number"),
        ("widerface?min_size", "KEY=VALUE"),
        ("widerface?colour=red", "unknown option 'colour' for widerface"),
        ("kodak?n_images=2", "its options: take"),
        ("faces?take=3", "START:STOP"),
        ("faces?take=a:b", "START:STOP of integers"),
    ],
)
def test_parse_spec_errors(spec, message):
    with pytest.raises(InputError, match=message):
        parse_spec(spec)


def test_bare_names_need_icmbridge_data(monkeypatch, tmp_path):
    monkeypatch.delenv("ICMBRIDGE_DATA", raising=False)
    for spec in ("kodak", "bsds:test", "coco128", "widerface", "bsdsfaces"):
        with pytest.raises(InputError, match="ICMBRIDGE_DATA is not set"):
            get_set(spec)
    monkeypatch.setenv("ICMBRIDGE_DATA", str(tmp_path))
    with pytest.raises(InputError, match=r"no kodak/ folder in ICMBRIDGE_DATA=.*kodak:PATH"):
        get_set("kodak")
    with pytest.raises(InputError, match="no such file or folder"):
        get_set(f"kodak:{tmp_path / 'elsewhere'}")
    with pytest.raises(InputError, match="kodak has no splits"):
        get_set("kodak:test")


def test_bare_names_resolve_below_icmbridge_data(monkeypatch, tmp_path):
    for i in (2, 1):
        _jpg(tmp_path / "kodak" / f"kodim{i:02d}.png", value=10 * i)
    for split, n in (("train", 2), ("val", 1), ("test", 3)):
        for i in range(n):
            _jpg(tmp_path / "bsds500" / split / f"{100 + i}.jpg")
    monkeypatch.setenv("ICMBRIDGE_DATA", str(tmp_path))
    kodak = get_set("kodak")
    assert [s.name for s in kodak] == ["kodim01.png", "kodim02.png"]
    assert kodak[0].boxes is None and kodak[0].image.shape == (30, 40, 3)
    assert len(get_set("bsds")) == 3  # default split: test
    assert len(get_set("bsds", "train")) == 2
    assert len(get_set("bsds:trainval", "test")) == 3  # the spec's split wins
    assert [s.name for s in get_set("bsds:val")] == ["val/100.jpg"]
    assert len(get_set(f"bsds:{tmp_path / 'bsds500'}:all")) == 6
    with pytest.raises(InputError, match="bsds has no split 'bogus'"):
        get_set("bsds", "bogus")
    status = set_status()
    assert status["kodak"] == "found" and status["bsds"] == "found"
    assert status["coco128"] == "missing" and status["faces"] == "packaged"
    assert status["yolo:PATH"] == "needs a path"


def test_available_sets_and_cli_list(monkeypatch, tmp_path, capsys):
    from icmbridge.commands import main

    sets = available_sets()
    assert {"photos", "faces", "bsdsfaces", "kodak", "bsds", "coco128", "widerface"} <= set(sets)
    assert "min_size" in sets["widerface"] and "invalid" in sets["widerface"]
    (tmp_path / "kodak").mkdir()
    monkeypatch.setenv("ICMBRIDGE_DATA", str(tmp_path))
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[0]: line for line in lines if line.strip()}
    assert "[found]" in row["kodak"] and "[missing]" in row["widerface"]
    assert "[packaged]" in row["faces"] and f"ICMBRIDGE_DATA={tmp_path}" in lines[-1]
    monkeypatch.delenv("ICMBRIDGE_DATA")
    assert main(["data", "list"]) == 0
    assert "ICMBRIDGE_DATA not set" in capsys.readouterr().out


def test_load_samples_reads_a_whole_spec():
    from icmbridge.data import load_samples

    samples = load_samples(None, "faces:train?n_images=3")
    assert [s.name for s in samples] == [f"faces-train-{i:03d}" for i in range(3)]
    assert [s.name for s in load_samples(None, "faces?n_images=4", limit=2)] == [
        "faces-test-000",
        "faces-test-001",
    ]


# --------------------------------------------------------------------------------------------
# WIDER FACE format on a tiny file

WIDER_GT = """\
0--Parade/a.jpg
3
10 20 30 40 0 0 0 0 0 0
50 60 8 25 2 0 0 0 1 0
100 100 30 30 0 1 0 1 0 1
1--Handshaking/empty.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/b.jpg
1
5 5 20 20 0 0 0 0 0 0
2--Other/none.jpg
0
"""


@pytest.fixture()
def tiny_wider(tmp_path):
    root = tmp_path / "wider"
    root.mkdir()
    (root / "tiny_gt.txt").write_text(WIDER_GT)
    for name in ("0--Parade/a.jpg", "1--Handshaking/empty.jpg", "1--Handshaking/b.jpg"):
        _jpg(root / "images" / name, 160, 160)
    _jpg(root / "images" / "2--Other/none.jpg", 160, 160)
    return root


def test_parse_wider_gt_handles_zero_face_images():
    parsed = parse_wider_gt(WIDER_GT)
    assert [n for n, _ in parsed] == [
        "0--Parade/a.jpg",
        "1--Handshaking/empty.jpg",
        "1--Handshaking/b.jpg",
        "2--Other/none.jpg",
    ]
    assert [len(rows) for _, rows in parsed] == [3, 0, 1, 0]
    assert parsed[0][1].shape == (3, 10) and parsed[0][1][2, 7] == 1  # invalid flag
    with pytest.raises(InputError, match="face count"):
        parse_wider_gt("x.jpg\nthree\n")
    with pytest.raises(InputError, match="bad face line"):
        parse_wider_gt("x.jpg\n2\n1 2 3 4 0 0 0 0 0 0\nnext.jpg\n")


def test_widerface_small_and_invalid_faces_become_ignore_regions(tiny_wider):
    samples = load_widerface(tiny_wider)
    assert [len(s.boxes) for s in samples] == [3, 0, 1, 0]
    a = samples[0]
    np.testing.assert_allclose(a.boxes[0], [10, 20, 40, 60])  # x y w h -> xyxy
    assert a.ignore.tolist() == [False, True, True]  # 8 px wide; invalid
    assert a.labels.tolist() == [1, 1, 1] and a.labels.dtype == np.int64
    assert a.meta["attributes"].shape == (3, 6) and a.meta["attributes"][1, 0] == 2
    target = a.target()
    assert target["ignore"].dtype == torch.bool and target["ignore"].tolist() == [0, 1, 1]
    assert samples[1].boxes.shape == (0, 4) and samples[1].target()["ignore"].shape == (0,)
    assert samples[2].ignore.tolist() == [False]  # exactly 20 px: scored
    scored = a.scored()
    assert len(scored.boxes) == 1 and scored.ignore is None and len(scored.meta["attributes"]) == 1
    # options
    assert load_widerface(tiny_wider, min_size=25)[2].ignore.tolist() == [True]
    drop = load_widerface(tiny_wider, invalid="drop", small="drop")
    assert [len(s.boxes) for s in drop] == [1, 0, 1, 0] and not drop[0].ignore.any()
    assert load_widerface(tiny_wider, invalid="keep")[0].ignore.tolist() == [False, True, False]
    same = get_set(f"widerface:{tiny_wider}?invalid=keep,min_size=5")
    assert same[0].ignore.tolist() == [False, False, False]
    with pytest.raises(InputError, match="invalid= must be"):
        get_set(f"widerface:{tiny_wider}?invalid=maybe")


def test_widerface_ground_truth_file_choice(tiny_wider):
    (tiny_wider / "other_gt.txt").write_text("0--Parade/missing.jpg\n1\n1 1 30 30 0 0 0 0 0 0\n")
    assert len(load_widerface(tiny_wider)) == 4  # the file whose images are all there
    with pytest.raises(InputError, match="missing"):
        get_set(f"widerface:{tiny_wider}?gt=other_gt.txt")
    assert len(load_widerface(tiny_wider / "tiny_gt.txt")) == 4  # the file itself
    (tiny_wider / "third_gt.txt").write_text(WIDER_GT)
    with pytest.raises(InputError, match=r"several ground-truth files.*gt=FILE"):
        load_widerface(tiny_wider)


def test_ignore_regions_round_trip_through_coco_export(tiny_wider, tmp_path):
    from icmbridge.data.export import export_coco

    samples = load_widerface(tiny_wider)
    export_coco(samples, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [a["iscrowd"] for a in data["annotations"]] == [0, 1, 1, 0]
    dropped = load_coco(tmp_path / "out" / "annotations.json", crowd="drop")
    assert [len(s.boxes) for s in dropped] == [1, 0, 1, 0] and dropped[0].ignore is None
    kept = get_set(f"coco:{tmp_path / 'out' / 'annotations.json'}?crowd=ignore")
    assert [s.ignore.tolist() for s in kept] == [s.ignore.tolist() for s in samples]
    np.testing.assert_allclose(kept[0].boxes, samples[0].boxes, atol=1e-4)


# --------------------------------------------------------------------------------------------
# YOLO format on a tiny set


@pytest.fixture()
def tiny_yolo(tmp_path):
    root = tmp_path / "yolo"
    _jpg(root / "images" / "train" / "a.jpg", 100, 50)
    _jpg(root / "images" / "train" / "b.png", 20, 10, mode="L")  # gray, no label file
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("2 0.5 0.5 0.2 0.4\n0 0.1 0.2 0.2 0.4\n\n")
    (root / "classes.txt").write_text("person\nbicycle\ncar\n")
    return root


def test_yolo_loader(tiny_yolo):
    a, b = load_yolo(tiny_yolo)
    assert (a.name, b.name) == ("train/a.jpg", "train/b.png")
    np.testing.assert_allclose(a.boxes, [[40, 15, 60, 35], [0, 0, 20, 20]], atol=1e-4)
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    assert a.labels.tolist() == [2, 0] and a.meta["class_names"] == ["person", "bicycle", "car"]
    assert b.image.shape == (10, 20, 3) and b.boxes.shape == (0, 4) and len(b.labels) == 0
    assert b.target()["boxes"].shape == (0, 4) and "ignore" not in b.target()
    assert len(get_set(f"yolo:{tiny_yolo}")) == 2
    (tiny_yolo / "labels" / "train" / "a.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(InputError, match="class id 7 but only 3 class names"):
        load_yolo(tiny_yolo)
    (tiny_yolo / "labels" / "train" / "a.txt").write_text("1 0.5 0.5\n")
    with pytest.raises(InputError, match=r"a.txt:1: expected 'class xc yc w h'"):
        load_yolo(tiny_yolo)


def test_yolo_labels_segments_and_clipping(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("3 0.1 0.2 0.5 0.2 0.3 0.6\n1 0.95 0.5 0.2 0.2\n")
    boxes, labels = read_yolo_labels(path, 200, 100)
    np.testing.assert_allclose(boxes, [[20, 20, 100, 60], [170, 40, 200, 60]], atol=1e-4)
    assert labels.tolist() == [3, 1]


@pytest.mark.parametrize(
    "yaml_text",
    [
        "path: ../x\nnames: ['person', 'bicycle', 'car']\n",
        "names:\n  - person\n  - bicycle\n  - car\ndownload: |\n  - not a name\n",
        "train: images\nnames:\n  0: person\n  1: bicycle\n  2: 'car'\n",
    ],
)
def test_yolo_class_names_from_a_data_yaml(tiny_yolo, yaml_text):
    (tiny_yolo / "classes.txt").unlink()
    (tiny_yolo / "data.yaml").write_text(yaml_text)
    assert load_yolo(tiny_yolo)[0].meta["class_names"] == ["person", "bicycle", "car"]


# --------------------------------------------------------------------------------------------
# The face benchmark builder with given backgrounds (no data needed)


def test_face_benchmark_on_given_backgrounds():
    rng = np.random.default_rng(5)
    photos = [(f"bg{i}", rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)) for i in range(3)]
    a = face_benchmark("test", 5, backgrounds=photos, set_name="mine")
    b = face_benchmark("test", 5, backgrounds=photos, set_name="mine")
    assert _digest(a) == _digest(b)
    assert [s.name for s in a] == [f"mine-test-{i:03d}" for i in range(5)]
    assert [s.meta["background"] for s in a] == ["bg0", "bg1", "bg2", "bg0", "bg1"]
    assert a[0].image.tobytes() != a[3].image.tobytes()  # the same background, another crop
    for s in a:
        assert len(s.meta["face_ids"]) == len(s.boxes)
        assert set(s.meta["face_ids"]) <= set(FACE_INDICES["test"])
    with pytest.raises(InputError, match="at least one background"):
        face_benchmark("test", 2, backgrounds=[])


def test_packaged_face_benchmark_bytes_are_unchanged():
    """The offline default ``faces`` (test split) is the same benchmark as before BSDS faces."""
    samples = get_set("faces", "test")
    assert len(samples) == 24 and sum(len(s.boxes) for s in samples) == 98
    h = hashlib.sha256()
    for s in samples:
        h.update(s.image.tobytes())
        h.update(s.boxes.tobytes())
    assert h.hexdigest() == "0a8947197db7f2816a775c173b5672af2e17f21dfbd810245c83f43b212fcafa"


# --------------------------------------------------------------------------------------------
# The real files (skip where ../shared/data or $ICMBRIDGE_DATA lacks them)


@pytest.fixture(scope="module")
def bsds_all():
    return get_set(f"bsds:{need('bsds500')}:all")


@pytest.fixture(scope="module")
def coco128():
    return get_set(f"yolo:{need('coco128')}")


@pytest.fixture(scope="module")
def wider():
    return get_set(f"widerface:{need('widerface-val200')}")


@pytest.fixture(scope="module")
def bsdsfaces_test():
    return bsds_face_benchmark(need("bsds500"), "test")


@requires("kodak")
def test_kodak_real():
    samples = get_set(f"kodak:{data_root() / 'kodak'}")
    assert [s.name for s in samples] == [f"kodim{i:02d}.png" for i in range(1, 25)]
    shapes = [s.image.shape for s in samples]
    assert shapes.count((512, 768, 3)) == 18 and shapes.count((768, 512, 3)) == 6
    assert all(s.boxes is None for s in samples)


def test_bsds_real(bsds_all):
    splits = [s.name.split("/")[0] for s in bsds_all]
    assert [splits.count(k) for k in ("train", "val", "test")] == [200, 100, 200]
    assert {s.image.shape for s in bsds_all} == {(321, 481, 3), (481, 321, 3)}
    root = data_root() / "bsds500"
    assert [s.name for s in get_set(f"bsds:{root}:val")] == [
        s.name for s in bsds_all if s.name.startswith("val/")
    ]
    assert len(get_set(f"bsds:{root}", "train")) == 200


@requires("bsds500", "kodak", "coco128", "widerface-val200")
def test_bare_names_on_the_real_root(monkeypatch):
    monkeypatch.setenv("ICMBRIDGE_DATA", str(data_root()))
    assert len(get_set("kodak")) == 24
    assert len(get_set("bsds:trainval")) == 300
    assert len(get_set("coco128")) == 128
    assert len(get_set("widerface?small=drop,invalid=drop")) == 200
    assert all(v in ("found", "packaged", "needs a path") for v in set_status().values())


def test_coco128_real(coco128):
    assert len(coco128) == 128
    assert sum(len(s.boxes) for s in coco128) == 929
    names = coco128[0].meta["class_names"]
    assert len(names) == 80 and names[0] == "person" and names[45] == "bowl"
    empty = [s.name for s in coco128 if len(s.boxes) == 0]
    assert empty == ["train2017/000000000250.jpg", "train2017/000000000508.jpg"]
    assert all(s.boxes.shape == (0, 4) for s in coco128 if s.name in empty)
    assert all(s.image.ndim == 3 and s.image.shape[2] == 3 for s in coco128)
    labels = np.concatenate([s.labels for s in coco128])
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() <= 79
    assert (labels == 0).sum() == 254  # persons, as SOURCE.txt says
    for s in coco128:
        h, w = s.image.shape[:2]
        b = s.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    # COCO train2017 image 9: its first box (a bowl) is COCO bbox [1.08, 187.69, 611.59, 285.84]
    first = coco128[0]
    assert first.name == "train2017/000000000009.jpg" and first.image.shape == (480, 640, 3)
    assert first.labels[0] == 45
    np.testing.assert_allclose(first.boxes[0], [1.08, 187.69, 612.67, 473.53], atol=0.05)


def test_widerface_real(wider):
    assert len(wider) == 200
    assert {s.image.shape for s in wider} == {(416, 416, 3)}
    assert sum(len(s.boxes) for s in wider) == 4372
    scored = [int((~s.ignore).sum()) for s in wider]
    assert sum(scored) == 346 and sum(n > 0 for n in scored) == 129
    for s in wider:
        keep = ~s.ignore
        w, h = (s.boxes[:, 2] - s.boxes[:, 0]), (s.boxes[:, 3] - s.boxes[:, 1])
        assert (np.minimum(w, h)[keep] >= 20 - 1e-3).all()
        assert (s.meta["attributes"][keep, 3] == 0).all()  # valid
    first = wider[0]
    assert first.name == "0--Parade/0_Parade_Parade_0_102.jpg" and len(first.boxes) == 39
    np.testing.assert_allclose(first.boxes[0], [327.44, 224.51, 337.19, 240.76], atol=1e-3)
    assert first.ignore[0]  # 9.75 px wide


@requires("widerface-val200")
def test_widerface_real_options():
    root = data_root() / "widerface-val200"
    no_invalid = get_set(f"widerface:{root}?invalid=drop")
    assert sum(len(s.boxes) for s in no_invalid) == 4372 - 39
    only_scored = get_set(f"widerface:{root}?invalid=drop,small=drop")
    assert sum(len(s.boxes) for s in only_scored) == 346
    assert not any(s.ignore.any() for s in only_scored)
    bigger = get_set(f"widerface:{root}?min_size=30")
    assert 0 < sum(int((~s.ignore).sum()) for s in bigger) < 346


def test_bsdsfaces_test_split(bsdsfaces_test):
    assert len(bsdsfaces_test) >= 300
    assert sum(len(s.boxes) for s in bsdsfaces_test) >= 1000
    assert [s.name for s in bsdsfaces_test[:2]] == ["bsdsfaces-test-000", "bsdsfaces-test-001"]
    backgrounds = {s.meta["background"] for s in bsdsfaces_test}
    assert len(backgrounds) == 200 - len(BSDS_WITH_FACES["test"])  # every clean test photo
    assert all(b.startswith("test/") for b in backgrounds)
    assert not {b.split("/")[1] for b in backgrounds} & BSDS_WITH_FACES["test"]
    assert {s.image.shape for s in bsdsfaces_test} == {(256, 256, 3)}
    again = bsds_face_benchmark(data_root() / "bsds500", "test")
    assert _digest(again) == _digest(bsdsfaces_test)


def test_bsdsfaces_splits_are_disjoint(bsdsfaces_test, monkeypatch):
    monkeypatch.setenv("ICMBRIDGE_DATA", str(data_root()))
    train = get_set("bsdsfaces:train?n_images=60")
    assert len(train) == 60 and train[0].name == "bsdsfaces-train-000"
    train_bg = {s.meta["background"] for s in train}
    test_bg = {s.meta["background"] for s in bsdsfaces_test}
    assert train_bg.isdisjoint(test_bg)
    assert all(b.split("/")[0] in ("train", "val") for b in train_bg)
    train_faces = {i for s in train for i in s.meta["face_ids"]}
    test_faces = {i for s in bsdsfaces_test for i in s.meta["face_ids"]}
    assert train_faces <= set(range(60)) and test_faces <= set(range(60, 100))
    assert len(test_faces) == 40  # every test face is used
    # the bare name gives the same images as the explicit path
    head = get_set("bsdsfaces?n_images=3")
    assert _digest(head) == _digest(bsdsfaces_test[:3])
