"""COCO done the way COCO users expect, and the paper's Table 1 on a COCO set with a torchvision
detector: lazy images, crowds as ignore regions, instance masks, AP equal to ``COCOeval`` on the
original file, supervised training, and ``ablate`` end to end with its report."""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from coco_fixture import make_coco
from report_fixtures import CHROMIUM, page_in_browser

from icmbridge.commands import main
from icmbridge.data import get_set
from icmbridge.tasks.scoring import _STAT_NAMES, coco_score


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    return make_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def frcnn_weights(tmp_path_factory) -> Path:
    """Faster R-CNN with random weights (background + 2 classes), saved as a local state dict."""
    from icmbridge.tasks import build_task

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = build_task("fasterrcnn", num_classes=3, min_size=128, max_size=128)
    path = tmp_path_factory.mktemp("weights") / "frcnn.pth"
    torch.save(task.model.state_dict(), path)
    return path


def test_coco_images_are_read_lazily(coco, monkeypatch) -> None:
    from icmbridge.data import images

    reads = []
    real = images._read_rgb
    monkeypatch.setattr(images, "_read_rgb", lambda p: reads.append(p) or real(p))
    images._read_rgb_cached.cache_clear()
    samples = get_set(f"coco:{coco}")
    assert len(samples) == 3 and reads == []  # the json is parsed, no image decoded
    assert samples[0].image.shape == (128, 128, 3) and len(reads) == 1
    samples[0].image[:] = 0  # a caller's edit does not reach the next reader
    assert samples[0].image.any() and len(reads) == 1  # cached, and a copy each time


def test_coco_crowds_areas_and_masks_as_given(coco) -> None:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCO(str(coco))
    samples = get_set(f"coco:{coco}?masks=true")
    for s in samples:
        anns = ref.imgToAnns[s.meta["coco_id"]]
        t = s.target()
        assert t["ignore"].tolist() == [bool(a["iscrowd"]) for a in anns]
        assert t["area"].tolist() == [a["area"] for a in anns]
        assert t["labels"].tolist() == [a["category_id"] for a in anns]
        for k, a in enumerate(anns):
            assert np.array_equal(t["masks"][k].numpy(), ref.annToMask(a))
        if anns:  # the annotation's area is the polygon's, not the box's
            assert t["area"][0] < (t["boxes"][0, 2:] - t["boxes"][0, :2]).prod()
    dropped = get_set(f"coco:{coco}?crowd=drop")
    assert [len(s.boxes) for s in dropped] == [
        sum(not a["iscrowd"] for a in ref.imgToAnns[s.meta["coco_id"]]) for s in samples
    ]


def _detections(samples, rng) -> list[dict]:
    """Jittered ground truth with random scores, a detection on each crowd and false positives."""
    preds = []
    for s in samples:
        b = np.asarray(s.boxes, np.float32).reshape(-1, 4)
        jit = b + rng.normal(0, 3, b.shape).astype(np.float32)
        extra = np.array([[60, 60, 90, 100], [5, 70, 40, 120]], np.float32)
        boxes = np.concatenate([jit, extra]).clip(0, 128)
        n = len(boxes)
        masks = np.zeros((n, 128, 128), bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.round().astype(int)):
            masks[k, y0 + 2 : y1, x0 : x1 - 2] = True
        labels = np.concatenate([np.asarray(s.labels), [1, 2]]).astype(np.int64)
        preds.append(
            {
                "boxes": torch.from_numpy(boxes),
                "scores": torch.from_numpy(rng.uniform(0.05, 1, n).astype(np.float32)),
                "labels": torch.from_numpy(labels),
                "masks": torch.from_numpy(masks),
            }
        )
    return preds


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ap_equals_cocoeval_on_the_original_file(coco, iou_type) -> None:
    """The AP a user gets here is the AP pycocotools reports on their own json."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    samples = get_set(f"coco:{coco}?masks=true")
    preds = _detections(samples, np.random.default_rng(0))
    ours = coco_score(preds, [s.target() for s in samples], iou_type)
    results = []
    for s, p in zip(samples, preds, strict=True):
        for k, (b, c, sc) in enumerate(zip(p["boxes"], p["labels"], p["scores"], strict=True)):
            b = b.double().tolist()
            det = {"image_id": s.meta["coco_id"], "category_id": int(c), "score": float(sc)}
            det["bbox"] = [b[0], b[1], b[2] - b[0], b[3] - b[1]]
            if iou_type == "segm":
                rle = mask_utils.encode(np.asfortranarray(p["masks"][k].numpy().astype(np.uint8)))
                det["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            results.append(det)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco))
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(_STAT_NAMES, ev.stats, strict=True):
        want = float(value) if value >= 0 else math.nan
        assert ours[name] == pytest.approx(want, abs=1e-6, nan_ok=True), name
    assert 0 < ours["ap"] < 1  # a real test: neither all hits nor all misses


def test_train_with_supervised_detection_loss(coco, frcnn_weights, tmp_path, tiny_model_dir):
    """train --task-loss supervised: the detector's own loss against the crops' annotations."""
    from icmbridge.data.images import TrainCrops

    crops = TrainCrops(get_set(f"coco:{coco}?masks=true"), crop=64, samples_per_epoch=8)
    for i in range(8):
        t, x = crops.target(i), crops[i]
        assert x.shape == (3, 64, 64) and t["boxes"].shape[1] == 4
        assert (t["boxes"] >= 0).all() and (t["boxes"] <= 64).all()
        if "masks" in t:  # (the image without objects has neither boxes nor masks)
            assert t["masks"].shape[1:] == (64, 64) and len(t["masks"]) == len(t["boxes"])
    assert any(len(crops.target(i)["boxes"]) for i in range(8))
    assert any("masks" in crops.target(i) for i in range(8))
    run = tmp_path / "run"
    args = ["train", "--init", str(tiny_model_dir), "--out", str(run), "--steps", "2"]
    args += ["--data", f"coco:{coco}", "--task", "fasterrcnn", "--task-weights", str(frcnn_weights)]
    args += ["--task-option", "min_size=64", "--task-option", "max_size=64"]
    args += ["--task-loss", "supervised", "--crop", "64", "--batch-size", "2", "--threads", "1"]
    args += ["--no-tensorboard", "--checkpoint-every", "2"]
    assert main(args) == 0
    saved = json.loads((run / "run.json").read_text())
    assert saved["task_loss"] == "supervised" and saved["task_options"] == [
        "min_size=64",
        "max_size=64",
    ]
    # finetuning takes the same option (the task term of the generator's loss)
    ft = ["finetune", "--base", str(tiny_model_dir), "--out", str(tmp_path / "ft"), "--steps", "1"]
    ft += ["--data", f"coco:{coco}", "--task", "fasterrcnn", "--task-weights", str(frcnn_weights)]
    ft += ["--task-option", "min_size=64", "--task-option", "max_size=64", "--lambda-task", "1"]
    ft += ["--task-loss", "supervised", "--crop", "64", "--batch-size", "2", "--patch-size", "32"]
    ft += ["--no-tensorboard", "--threads", "1", "--ndf", "8"]
    assert main(ft) == 0
    assert json.loads((tmp_path / "ft" / "run.json").read_text())["task_loss"] == "supervised"
    # supervised needs annotations: a set without any is refused, in one line
    unannotated = ["photos" if a == f"coco:{coco}" else a for a in args]
    assert main([*unannotated, "--out", str(tmp_path / "r2")]) == 2


def test_ablate_on_coco_with_a_torchvision_detector(coco, frcnn_weights, tmp_path, capsys):
    """The paper's Table 1 for the user's task and set, end to end, with its report."""
    out = tmp_path / "abl"
    args = ["ablate", "--task", "fasterrcnn", "--task-weights", str(frcnn_weights)]
    args += ["--task-option", "min_size=128", "--task-option", "max_size=128"]
    args += ["--set", f"coco:{coco}", "--base", "base", "-o", str(out), "--steps", "1"]
    args += ["--images", "3", "--only", "layers", "--data", "photos", "--threads", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # local weights: no random-init warning
        assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == 2 and results["kind"] == "ablation"
    assert results["task"] == "fasterrcnn_resnet50_fpn"
    assert results["ground_truth"] == "annotations" and results["set"].startswith("coco:")
    assert [r["config"] for r in results["table1"]] == ["Base codec", *(f"K = {k}" for k in "1234")]
    base = results["codecs"]["base"]
    assert base["mean"]["n_gt"] == 4  # the crowds are ignore regions, not objects
    assert all(c["mean"]["bpp"] == base["mean"]["bpp"] for c in results["codecs"].values())
    assert "--task fasterrcnn" in results["command"]
    table = (out / "table1.md").read_text()
    assert "task `fasterrcnn_resnet50_fpn`" in table and "| K = 4 |" in table

    report = tmp_path / "page"
    assert main(["report", str(out), "-o", str(report)]) == 0
    page = (report / "index.html").read_text(encoding="utf-8")
    assert 'id="table1"' in page and "K = 4" in page and "fasterrcnn_resnet50_fpn" in page
    if CHROMIUM is not None:
        dom, attrs = page_in_browser(report / "index.html", tmp_path / "profile")
        assert int(attrs["images-loaded"]) > 3 and "K = 3" in dom


def _detector_args(weights: Path) -> list[str]:
    return ["--task", "fasterrcnn", "--task-weights", str(weights), "--task-option",
            "min_size=128", "--task-option", "max_size=128"]  # fmt: skip


def test_demo_on_coco_with_a_torchvision_detector(coco, frcnn_weights, tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--quick", "-o", str(out), "--set", f"coco:{coco}", "--images", "3"]
    args += [*_detector_args(frcnn_weights), "--finetune-steps", "1", "--threads", "1"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "demo" and results["task"] == "fasterrcnn_resnet50_fpn"
    assert results["set"].startswith(f"coco:{coco}") and results["ground_truth"] == "annotations"
    assert "--task fasterrcnn" in results["command"]
    assert {"base", "live-finetune", "jpeg", "base+gaussian", "base+bilateral"} <= set(
        results["codecs"]
    )
    assert "photos:train" in results["codecs"]["base+gaussian"]["description"]  # no train split
    assert len(list((out / "bitstreams").glob("*.icmb"))) == 3
    if CHROMIUM is not None:
        dom, attrs = page_in_browser(out / "report" / "index.html", tmp_path / "profile")
        assert int(attrs["images-loaded"]) > 3 and "live-finetune" in dom


def test_curves_on_coco_with_a_torchvision_detector(coco, frcnn_weights, tmp_path, capsys):
    from icmbridge.codec.store import available_models

    models = [m for m in ("base-low", "base", "base-high") if m in available_models()]
    if len(models) < 2:
        pytest.skip("fewer than two shipped rate points")
    out = tmp_path / "curves"
    args = ["curves", "--models", ",".join(models[:2]), "--codecs", "jpeg"]
    args += ["--set", f"coco:{coco}", *_detector_args(frcnn_weights), "-o", str(out)]
    assert main([*args, "--threads", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "curves" and results["task"] == "fasterrcnn_resnet50_fpn"
    assert [p["model"] for p in results["rate_curves"]["ours"]] == models[:2]
    assert len(results["rate_curves"]["jpeg"]) == 2 and "jpeg" in results["bd_rate"]
    assert main(["report", str(out), "-o", str(tmp_path / "page")]) == 0
    page = tmp_path / "page" / "index.html"
    assert "BD-rate" in page.read_text(encoding="utf-8")
    if CHROMIUM is not None:
        dom, _ = page_in_browser(page, tmp_path / "profile")
        assert "fasterrcnn_resnet50_fpn" in dom
