"""Machine tasks: MTCNN face task on the planted-face benchmark, torchvision detectors, scoring."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from icmbridge.data.faces import face_benchmark
from icmbridge.errors import InputError
from icmbridge.tasks import (
    available_tasks,
    build_task,
    coco_score,
    feature_distance,
    pseudo_ground_truth,
)
from icmbridge.tasks.base import MachineTask


def _to_tensor(samples) -> torch.Tensor:
    return torch.stack([torch.from_numpy(s.image.copy()).permute(2, 0, 1) for s in samples]) / 255.0


@pytest.fixture(scope="module")
def face_task():
    return build_task("face")


@pytest.fixture(scope="module")
def face_batch():
    samples = face_benchmark("test", n_images=4)
    return samples, _to_tensor(samples)


# -- scoring ---------------------------------------------------------------------------------------
def test_score_perfect_disjoint_and_empty():
    gt = [
        {"boxes": torch.tensor([[10.0, 10, 50, 50], [60, 60, 90, 100]])},
        {"boxes": torch.tensor([[0.0, 0, 20, 30]])},
    ]
    perfect = [
        {
            "boxes": g["boxes"],
            "scores": torch.ones(len(g["boxes"])),
            "labels": torch.ones(len(g["boxes"]), dtype=torch.int64),
        }
        for g in gt
    ]
    r = coco_score(perfect, gt)
    assert r["ap"] == pytest.approx(1.0) and r["ap50"] == pytest.approx(1.0)
    assert r["n_pred"] == 3 and r["n_gt"] == 3
    disjoint = [{"boxes": g["boxes"] + 200, "scores": torch.ones(len(g["boxes"]))} for g in gt]
    assert coco_score(disjoint, gt)["ap50"] == 0.0
    nothing = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)} for _ in gt]
    r = coco_score(nothing, gt)
    assert r["ap"] == 0.0 and r["n_pred"] == 0
    r = coco_score(perfect, [{"boxes": torch.zeros(0, 4)} for _ in gt])
    assert math.isnan(r["ap"]) and r["n_gt"] == 0 and "note" in r
    with pytest.raises(ValueError):
        coco_score(perfect, gt[:1])


def test_registry():
    assert {"face", "torchvision-detection"} <= set(available_tasks())
    with pytest.raises(InputError):
        build_task("nope")


# -- face task -------------------------------------------------------------------------------------
def test_face_task_is_frozen(face_task):
    assert isinstance(face_task, MachineTask) and face_task.name == "face"
    params = list(face_task.mtcnn.parameters())
    assert params and not any(p.requires_grad for p in params)
    assert not face_task.mtcnn.training
    assert face_task.to("cpu") is face_task


def test_face_loss_zero_on_identity_grows_with_noise(face_task, face_batch):
    _, x = face_batch
    crops = x[:, :, 64:192, 64:192]
    assert face_task.loss(crops.clone(), crops).item() == pytest.approx(0.0, abs=1e-10)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(crops.shape, generator=g)
    losses = []
    for sigma in (0.02, 0.08, 0.25):
        x_hat = (crops + sigma * noise).clamp(0, 1).requires_grad_()
        loss = face_task.loss(x_hat, crops)
        loss.backward()
        assert loss.dim() == 0 and x_hat.grad is not None
        assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
        losses.append(loss.item())
    assert losses[0] < losses[1] < losses[2]


def test_face_supervised_loss_prefers_the_true_image(face_task, face_batch):
    samples, x = face_batch
    targets = [s.target() for s in samples]
    x_hat = x.clone().requires_grad_()
    loss = face_task.loss(x_hat, x, targets)
    loss.backward()
    assert torch.isfinite(loss) and x_hat.grad.abs().sum() > 0
    blurred = torch.nn.functional.avg_pool2d(x, 9, stride=1, padding=4)
    assert face_task.loss(blurred, x, targets) > loss.detach()
    empty = face_task.loss(x, x, [{"boxes": torch.zeros(0, 4)} for _ in samples])
    assert torch.isfinite(empty)


def test_face_predict_finds_planted_faces(face_task, face_batch):
    samples, x = face_batch
    preds = face_task.predict(x)
    assert len(preds) == len(samples)
    for p in preds:
        assert p["boxes"].shape[1] == 4 and p["boxes"].dtype == torch.float32
        assert p["labels"].dtype == torch.int64 and len(p["scores"]) == len(p["boxes"])
    r = face_task.score(preds, [s.target() for s in samples])
    assert r["ap50"] >= 0.8, r
    # Heavy blur destroys the small faces: the benchmark discriminates.
    blurred = torch.nn.functional.avg_pool2d(x, 7, stride=1, padding=3)
    assert face_task.score(face_task.predict(blurred), [s.target() for s in samples])["ap50"] < 0.6
    pseudo = pseudo_ground_truth(face_task, x, score_threshold=0.9)
    assert all((p["scores"] >= 0.9).all() for p in pseudo)
    assert face_task.score(face_task.predict(x), pseudo)["ap50"] == pytest.approx(1.0)


def test_face_predict_on_image_without_faces(face_task):
    preds = face_task.predict(torch.full((1, 3, 96, 96), 0.5))
    assert preds[0]["boxes"].shape == (0, 4)


@pytest.mark.parametrize("hw", [(1, 64), (13, 13), (14, 200)])
def test_face_predict_on_images_smaller_than_its_window(face_task, hw):
    """Below MTCNN's smallest face there is nothing to find: empty results, not an exception."""
    out = face_task.predict(torch.rand(2, 3, *hw))
    assert [len(o["boxes"]) for o in out] == [0, 0]
    assert out[0]["boxes"].shape == (0, 4) and out[0]["labels"].dtype == torch.int64


def test_feature_distance(face_task, face_batch):
    _, x = face_batch
    assert feature_distance(face_task, x, x) == 0.0
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    d = feature_distance(face_task, x, noisy)
    assert 0 < d < 10
    with pytest.raises(InputError):
        feature_distance(face_task, x[0], x[0])


# -- torchvision detectors (random weights; never downloads) ---------------------------------------
def _tv_task(arch: str, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = build_task(
            "torchvision-detection", arch=arch, num_classes=3, min_size=128, max_size=128, **kw
        )
    return task, caught


@pytest.mark.parametrize("arch", ["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn"])
def test_torchvision_task_random_weights(arch):
    torch.manual_seed(0)
    task, caught = _tv_task(arch, pseudo_threshold=0.0)
    assert any("RANDOMLY INITIALISED" in str(w.message) for w in caught)
    assert not any(p.requires_grad for p in task.model.parameters())
    x = torch.rand(2, 3, 128, 128)
    x_hat = (x + 0.05 * torch.randn_like(x)).clamp(0, 1).requires_grad_()
    targets = [
        {"boxes": torch.tensor([[10.0, 10, 60, 70]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[30.0, 40, 90, 100], [5, 5, 25, 30]]),
            "labels": torch.tensor([2, 1]),
        },
    ]
    loss = task.loss(x_hat, x, targets)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss) and x_hat.grad.abs().sum() > 0
    assert not task.model.training
    distill = task.loss(x_hat, x)  # pseudo targets from x
    assert torch.isfinite(distill)
    preds = task.predict(x)
    assert len(preds) == 2 and preds[0]["boxes"].shape[1] == 4
    if arch.startswith("mask"):
        assert "masks" in preds[0]
        gt = [
            dict(t, masks=torch.zeros(len(t["boxes"]), 128, 128, dtype=torch.uint8))
            for t in targets
        ]
        for g in gt:
            for k, b in enumerate(g["boxes"].long().tolist()):
                g["masks"][k, b[1] : b[3], b[0] : b[2]] = 1
        r = task.score(preds, gt)
        assert 0.0 <= r["mask_ap"] <= 1.0
        # mask AP scores the masks, not the boxes: perfect boxes with perfect masks score 1,
        # the same boxes with empty masks score 0 on masks and still 1 on boxes
        perfect = [dict(g, scores=torch.ones(len(g["boxes"]))) for g in gt]
        right = task.score(perfect, gt)
        assert right["mask_ap"] == pytest.approx(1.0) and right["ap"] == pytest.approx(1.0)
        empty = [dict(p, masks=torch.zeros_like(p["masks"])) for p in perfect]
        wrong = task.score(empty, gt)
        assert wrong["mask_ap"] == pytest.approx(0.0) and wrong["ap"] == pytest.approx(1.0)
    else:
        r = task.score(preds, targets)
    assert r["n_gt"] == 3 and 0.0 <= r["ap"] <= 1.0
    fd = feature_distance(task, x, x_hat.detach())
    assert fd > 0 and len(task.features(x)) == 5


def test_torchvision_task_loads_local_weights(tmp_path):
    torch.manual_seed(1)
    source, _ = _tv_task("fasterrcnn_resnet50_fpn")
    path = tmp_path / "frcnn.pth"
    torch.save({"model": source.model.state_dict()}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading weights must not warn about random init
        loaded = build_task("fasterrcnn", weights_path=path, min_size=128, max_size=128)
    assert loaded.weights_path == str(path)
    assert loaded.model.roi_heads.box_predictor.cls_score.out_features == 3
    for k, v in source.model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    x = torch.rand(1, 3, 128, 128)
    a, b = source.predict(x)[0], loaded.predict(x)[0]
    assert torch.allclose(a["boxes"], b["boxes"]) and torch.allclose(a["scores"], b["scores"])
    with pytest.raises(InputError):
        build_task("fasterrcnn", weights_path=tmp_path / "missing.pth")
    with pytest.raises(InputError):
        build_task("maskrcnn", weights_path=path, min_size=128, max_size=128)
