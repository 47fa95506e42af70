"""YOLOX task: the PyTorch network reproduces the ONNX export and the coco128 reference AP."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from icmbridge.errors import InputError
from icmbridge.tasks import available_tasks, build_task
from icmbridge.tasks.yolox import YOLOX, YoloxTask


def _data_root() -> Path:
    env = os.environ.get("ICMBRIDGE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


ONNX = _data_root() / "weights" / "yolox-nano" / "yolox_nano.onnx"
COCO128 = _data_root() / "coco128"
needs_onnx = pytest.mark.skipif(
    not ONNX.is_file(), reason=f"YOLOX-Nano ONNX not found at {ONNX} (set ICMBRIDGE_DATA)"
)


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def task() -> YoloxTask:
    if not ONNX.is_file():
        pytest.skip(f"YOLOX-Nano ONNX not found at {ONNX} (set ICMBRIDGE_DATA)")
    return build_task("yolox", weights_path=str(ONNX))


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    from skimage import data

    return _tensor(data.astronaut())


# -- no shared data needed -------------------------------------------------------------------------
def test_registered_and_refuses_bad_weights(tmp_path):
    assert "yolox" in available_tasks()
    with pytest.raises(InputError, match="needs weights_path"):
        build_task("yolox")
    with pytest.raises(InputError, match="not found"):
        build_task("yolox", weights_path=str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(InputError):
        build_task("yolox", weights_path=str(junk))
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(InputError, match="not a YOLOX state dict"):
        build_task("yolox", weights_path=str(other))


def test_official_state_dict_loads_and_fuses(tmp_path):
    """An unfused (BatchNorm) checkpoint under "model" loads; fusing keeps the outputs."""
    torch.manual_seed(0)
    net = YOLOX(width=8, depth=1, depthwise=False, num_classes=3).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "yolox_tiny.pth"
    torch.save({"model": net.state_dict(), "start_epoch": 1}, path)
    task = YoloxTask(path)
    assert task.model.width == 8 and task.model.num_classes == 3 and not task.model.depthwise
    assert task.model.fused
    x = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        ref = torch.cat([r.flatten(2) for r in net(x)[1]], 2)
        got = torch.cat([r.flatten(2) for r in task.model(x)[1]], 2)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


# -- with the shared YOLOX-Nano ONNX ---------------------------------------------------------------
@needs_onnx
def test_matches_onnxruntime(task):
    ort = pytest.importorskip("onnxruntime")
    x = torch.rand(1, 3, 416, 416, generator=torch.Generator().manual_seed(0)) * 255
    sess = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    ref = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
    with torch.no_grad():
        got = task.raw_outputs(x)
    assert got.shape == ref.shape == (1, 3549, 85)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


@needs_onnx
def test_state_dict_round_trip(task, tmp_path, astronaut):
    path = tmp_path / "yolox_nano.safetensors"
    task.save(path)
    again = build_task("yolox", weights_path=str(path))
    x = astronaut[..., :256, :256] * 255
    with torch.no_grad():
        torch.testing.assert_close(again.raw_outputs(x), task.raw_outputs(x))


def _coco128() -> tuple[list[torch.Tensor], list[dict]]:
    """coco128 images and YOLO labels (class cx cy w h, normalised) as xyxy pixel boxes."""
    images, gts = [], []
    for path in sorted((COCO128 / "images" / "train2017").glob("*.jpg")):
        img = np.asarray(Image.open(path).convert("RGB"))
        h, w = img.shape[:2]
        label_file = COCO128 / "labels" / "train2017" / f"{path.stem}.txt"
        rows = np.loadtxt(label_file, ndmin=2) if label_file.is_file() else np.zeros((0, 5))
        centre, size = rows[:, 1:3] * [w, h], rows[:, 3:5] * [w, h]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        images.append(_tensor(img))
        gts.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(rows[:, 0])})
    return images, gts


@needs_onnx
@pytest.mark.skipif(not COCO128.is_dir(), reason=f"coco128 not found at {COCO128}")
def test_reproduces_reference_ap_on_coco128(task):
    """../shared/data/README.md: AP 0.331, AP50 0.506 over 929 boxes (Pillow letterbox)."""
    images, gts = _coco128()
    assert len(images) == 128
    preds = [task.predict(x)[0] for x in images]
    assert set(preds[0]) == {"boxes", "scores", "labels"}
    r = task.score(preds, gts)
    assert r["n_gt"] == 929
    assert r["ap"] == pytest.approx(0.331, abs=0.005)
    assert r["ap50"] == pytest.approx(0.506, abs=0.005)


@needs_onnx
def test_predict_finds_the_astronaut(task, astronaut):
    pred = task.predict(astronaut)[0]
    assert pred["labels"][0] == 0 and pred["scores"][0] > 0.8  # COCO class 0: person
    x1, y1, x2, y2 = pred["boxes"][0].tolist()
    assert x1 < 50 and y1 < 50 and x2 > 330 and y2 > 480  # in the 512² image's pixels


@needs_onnx
def test_distillation_is_differentiable_and_zero_at_x(task, astronaut):
    x = torch.cat([astronaut[..., :256, :256], astronaut[..., 256:, 256:]])
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    x_hat = noisy.requires_grad_(True)
    loss = task.loss(x_hat, x)
    loss.backward()
    assert loss.item() > 1e-3
    assert x_hat.grad is not None and torch.isfinite(x_hat.grad).all()
    assert x_hat.grad.abs().sum() > 0
    assert abs(task.loss(x.clone(), x).item()) < 1e-4
    assert not any(p.requires_grad for p in task.model.parameters())


@needs_onnx
def test_odd_sizes_and_train_size(task):
    x = torch.rand(2, 3, 100, 150)
    assert [f.shape[-1] for f in task.features(x)] == [20, 10, 5]  # padded to 160 wide
    letterboxed = YoloxTask(ONNX, train_size=128)
    assert torch.isfinite(letterboxed.loss(x, x.flip(-1)))


@needs_onnx
def test_supervised_loss_prefers_true_boxes_and_descends(task, astronaut):
    x = astronaut[..., :256, :256]
    true = [{"boxes": torch.tensor([[10.0, 20.0, 250.0, 256.0]]), "labels": torch.tensor([0])}]
    shifted = [{"boxes": torch.tensor([[120.0, 0.0, 250.0, 60.0]]), "labels": torch.tensor([0])}]
    assert task.loss(x, None, true) < task.loss(x, None, shifted)
    x_hat = x.clone().requires_grad_(True)
    opt = torch.optim.Adam([x_hat], lr=0.02)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = task.loss(x_hat, None, shifted)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    assert torch.isfinite(task.loss(x, None, empty))
