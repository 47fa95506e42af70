"""YOLOX task: the PyTorch network reproduces the ONNX export and the coco128 reference AP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from shared_data import data_root

from icmbridge.commands import main
from icmbridge.errors import InputError
from icmbridge.tasks import available_tasks, build_task
from icmbridge.tasks.yolox import YOLOX, YoloxTask

ONNX = data_root() / "weights" / "yolox-nano" / "yolox_nano.onnx"
COCO128 = data_root() / "coco128"
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


@needs_onnx
@pytest.mark.skipif(not COCO128.is_dir(), reason=f"coco128 not found at {COCO128}")
def test_evaluate_reproduces_the_reference_ap_on_coco128(tmp_path, capsys):
    """../shared/data/README.md: AP 0.331, AP50 0.506 over 929 boxes (Pillow letterbox), through
    the command a user runs: `icmbridge evaluate --set yolo:... --task yolox`."""
    out = tmp_path / "base.json"
    args = ["evaluate", "--model", "base", "--set", f"yolo:{COCO128}", "--task", "yolox"]
    args += ["--no-people-metrics"]  # AP is the point here; ColorVideoVDP would add ~2 min
    assert main([*args, "--task-weights", str(ONNX), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (entry,) = result["codecs"].values()  # one codec: the evaluated model
    ref = result["uncompressed"]
    assert ref["n_gt"] == 929 and len(entry["images"]) == 128
    assert ref["task_ap"] == pytest.approx(0.331, abs=0.005)
    assert ref["task_ap50"] == pytest.approx(0.506, abs=0.005)
    lo, hi = ref["ci"]["task_ap50"]
    assert lo < ref["task_ap50"] < hi and hi - lo < 0.2
    # the shipped face-trained base loses objects at its rate, and says by how much
    assert 0.1 < entry["mean"]["task_ap50"] < ref["task_ap50"]
    assert "uncompressed: AP 0.331" in capsys.readouterr().out


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
