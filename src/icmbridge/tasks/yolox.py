"""YOLOX (COCO-80 object detection) as a machine task, written in PyTorch so it is differentiable.

The architecture is Megvii's YOLOX (Ge et al. 2021, github.com/Megvii-BaseDetection/YOLOX) with its
module names, so official checkpoints load as they are::

    image ─► CSPDarknet (Focus stem, dark2..dark5, SPP) ─► C3, C4, C5
         ─► PAFPN (top-down + bottom-up CSP layers)    ─► P3, P4, P5   (strides 8, 16, 32)
         ─► decoupled head per level: stem ─► cls convs ─► 80 class logits
                                            └► reg convs ─► 4 box terms + 1 objectness logit

Sizes are read from the weights (CompressAI's ``from_state_dict`` idea): the stem's width, the
number of bottlenecks in dark2, depthwise or not, the number of classes. YOLOX-Nano is width 16
(0.25), depth 1 (0.33), depthwise.

Weights (``weights_path``, CLI ``--task-weights``), never downloaded:

* an ONNX export (e.g. ``yolox_nano.onnx``): BatchNorm is folded into the convolutions there, so
  the model is fused first and each ``Conv`` node's weight and bias go to the module its node name
  names (``/backbone/backbone/dark2/dark2.0/dconv/conv/Conv`` → ``backbone.backbone.dark2.0
  .dconv.conv``);
* a state dict (``.pth``/``.pt``, optionally under ``"model"`` as in official checkpoints, or
  ``.safetensors``): with BatchNorm keys (official) or fused (what :meth:`YoloxTask.save` writes).

The network's input is BGR in 0..255, no normalisation; ``predict`` letterboxes each image into
``input_size``² (scale to fit, top-left, pad 114) with Pillow's bilinear resize after rounding to 8
bits, as a deployed detector sees a decoded image. Decoding per anchor point of stride s:
``xy = (t_xy + grid)·s``, ``wh = exp(t_wh)·s``, score = sigmoid(obj)·sigmoid(cls), then
class-wise NMS (YOLOX's own COCO evaluation). ``max_detections=None`` keeps every detection, as
YOLOX's evaluator does (pycocotools still counts at most 100 per image *and class*); 100 applies
the COCO submission rule of 100 per image, which costs coco128 0.002 AP / 0.005 AP50.

``loss`` runs the image at its own size (padded with 114 to a multiple of 32; training crops such
as 256² need no resize) unless ``train_size`` asks for a differentiable letterbox:

* distillation (no targets): binary KL divergence of x̂'s objectness to x's at every anchor point,
  class KL and an L1 on the raw box terms weighted by x's objectness (they only mean something
  where x has an object), plus optionally an MSE on the three FPN maps (``feature_weight``). It is
  zero when x̂ = x;
* supervised (targets ``{"boxes": xyxy, "labels": 0..79}``): a *simple* assignment, not YOLOX's
  SimOTA — each box goes to one level by its longer side (< 64 px → stride 8, < 128 → 16, else
  32), and the anchor points of that level whose centre lies inside the box and within 2.5 strides
  of its centre are positives (the nearest point if none; a point claimed twice goes to the
  smaller box). Loss = (1 − IoU²) on positives + BCE objectness on all points + BCE class on
  positives, each divided by the number of positives (YOLOX's normalisation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from icmbridge.errors import InputError
from icmbridge.tasks.base import MachineTask, check_images, freeze

STRIDES = (8, 16, 32)
PAD_VALUE = 114.0


# -- architecture (official YOLOX module names) ---------------------------------------------------
class BaseConv(nn.Module):
    """Conv → BatchNorm → SiLU; :meth:`fuse` folds the BatchNorm into the convolution."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            groups=conv.groups,
            bias=True,
        )
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = fused, nn.Identity()


class DWConv(nn.Module):
    """Depthwise k×k then pointwise 1×1 (YOLOX-Nano's and -Tiny's convolution)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.dconv = BaseConv(c_in, c_in, k, stride, groups=c_in)
        self.pconv = BaseConv(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pconv(self.dconv(x))


def _conv(depthwise: bool, c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Module:
    return DWConv(c_in, c_out, k, stride) if depthwise else BaseConv(c_in, c_out, k, stride)


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool, depthwise: bool) -> None:
        super().__init__()
        self.conv1 = BaseConv(c, c, 1)
        self.conv2 = _conv(depthwise, c, c, 3)
        self.use_add = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, n: int, shortcut: bool, depthwise: bool) -> None:
        super().__init__()
        hidden = c_out // 2
        self.conv1 = BaseConv(c_in, hidden, 1)
        self.conv2 = BaseConv(c_in, hidden, 1)
        self.conv3 = BaseConv(2 * hidden, c_out, 1)
        self.m = nn.Sequential(*[Bottleneck(hidden, shortcut, depthwise) for _ in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(torch.cat([self.m(self.conv1(x)), self.conv2(x)], dim=1))


class SPPBottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = c_in // 2
        self.conv1 = BaseConv(c_in, hidden, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in kernels])
        self.conv2 = BaseConv(hidden * (len(kernels) + 1), c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [m(x) for m in self.m], dim=1))


class Focus(nn.Module):
    """Space-to-depth (2×2 pixels to 4 channels) then a 3×3 convolution."""

    def __init__(self, c_out: int) -> None:
        super().__init__()
        self.conv = BaseConv(12, c_out, 3)

    def forward(self, x: Tensor) -> Tensor:
        tl, tr = x[..., ::2, ::2], x[..., ::2, 1::2]
        bl, br = x[..., 1::2, ::2], x[..., 1::2, 1::2]
        return self.conv(torch.cat([tl, bl, tr, br], dim=1))


class CSPDarknet(nn.Module):
    def __init__(self, width: int, depth: int, depthwise: bool) -> None:
        super().__init__()
        w, n, dw = width, depth, depthwise
        self.stem = Focus(w)
        self.dark2 = nn.Sequential(_conv(dw, w, 2 * w, 3, 2), CSPLayer(2 * w, 2 * w, n, True, dw))
        self.dark3 = nn.Sequential(
            _conv(dw, 2 * w, 4 * w, 3, 2), CSPLayer(4 * w, 4 * w, 3 * n, True, dw)
        )
        self.dark4 = nn.Sequential(
            _conv(dw, 4 * w, 8 * w, 3, 2), CSPLayer(8 * w, 8 * w, 3 * n, True, dw)
        )
        self.dark5 = nn.Sequential(
            _conv(dw, 8 * w, 16 * w, 3, 2),
            SPPBottleneck(16 * w, 16 * w),
            CSPLayer(16 * w, 16 * w, n, False, dw),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c3 = self.dark3(self.dark2(self.stem(x)))
        c4 = self.dark4(c3)
        return c3, c4, self.dark5(c4)


class YOLOPAFPN(nn.Module):
    def __init__(self, width: int, depth: int, depthwise: bool) -> None:
        super().__init__()
        c3, c4, c5, n, dw = 4 * width, 8 * width, 16 * width, depth, depthwise
        self.backbone = CSPDarknet(width, depth, depthwise)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c5, c4, 1)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, False, dw)
        self.reduce_conv1 = BaseConv(c4, c3, 1)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, False, dw)
        self.bu_conv2 = _conv(dw, c3, c3, 3, 2)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, False, dw)
        self.bu_conv1 = _conv(dw, c4, c4, 3, 2)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, False, dw)

    def forward(self, x: Tensor) -> list[Tensor]:
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), x2], 1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return [pan_out2, pan_out1, pan_out0]


class YOLOXHead(nn.Module):
    """Decoupled head: per level (B, 4 + 1 + C, h, w) = box terms, objectness and class logits."""

    def __init__(self, width: int, num_classes: int, depthwise: bool) -> None:
        super().__init__()
        hidden, dw = 4 * width, depthwise
        self.stems = nn.ModuleList(BaseConv(c * width, hidden, 1) for c in (4, 8, 16))

        def branch() -> nn.Sequential:
            return nn.Sequential(_conv(dw, hidden, hidden, 3), _conv(dw, hidden, hidden, 3))

        self.cls_convs = nn.ModuleList(branch() for _ in STRIDES)
        self.reg_convs = nn.ModuleList(branch() for _ in STRIDES)
        self.cls_preds = nn.ModuleList(nn.Conv2d(hidden, num_classes, 1) for _ in STRIDES)
        self.reg_preds = nn.ModuleList(nn.Conv2d(hidden, 4, 1) for _ in STRIDES)
        self.obj_preds = nn.ModuleList(nn.Conv2d(hidden, 1, 1) for _ in STRIDES)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        out = []
        for k, x in enumerate(feats):
            x = self.stems[k](x)
            reg_feat = self.reg_convs[k](x)
            cls = self.cls_preds[k](self.cls_convs[k](x))
            out.append(
                torch.cat([self.reg_preds[k](reg_feat), self.obj_preds[k](reg_feat), cls], 1)
            )
        return out


class YOLOX(nn.Module):
    """YOLOX backbone + head; ``forward`` gives (FPN maps, raw head maps per level)."""

    def __init__(
        self, width: int = 16, depth: int = 1, depthwise: bool = True, num_classes: int = 80
    ) -> None:
        super().__init__()
        self.width, self.depth, self.depthwise, self.num_classes = (
            width,
            depth,
            depthwise,
            num_classes,
        )
        self.backbone = YOLOPAFPN(width, depth, depthwise)
        self.head = YOLOXHead(width, num_classes, depthwise)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        feats = self.backbone(x)
        return feats, self.head(feats)

    def fuse(self) -> YOLOX:
        """Fold every BatchNorm into its convolution (inference form; what ONNX exports hold)."""
        for m in self.modules():
            if isinstance(m, BaseConv):
                m.fuse()
        return self

    @property
    def fused(self) -> bool:
        return not any(isinstance(m, nn.BatchNorm2d) for m in self.modules())

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> YOLOX:
        """Build the model whose sizes the weights imply, then load them (fused or not)."""
        stem = "backbone.backbone.stem.conv.conv.weight"
        if stem not in state or "head.cls_preds.0.weight" not in state:
            raise InputError("weights are not a YOLOX state dict (no stem / class head)")
        width = state[stem].shape[0]
        depthwise = "backbone.backbone.dark2.0.dconv.conv.weight" in state
        prefix = "backbone.backbone.dark2.1.m."
        depth = len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})
        model = cls(width, depth, depthwise, state["head.cls_preds.0.weight"].shape[0])
        if not any(".bn." in k for k in state):
            model.fuse()
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError(f"weights do not fit YOLOX: {str(exc).splitlines()[0]}") from exc
        return model.fuse()


def _onnx_state_dict(path: Path) -> dict[str, Tensor]:
    """Fused conv weights from a YOLOX ONNX export, keyed by the module each Conv node names."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise InputError("reading an ONNX file needs the onnx package: pip install onnx") from exc
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # protobuf raises several types
        raise InputError(f"cannot read ONNX file {path}: {exc}") from exc
    init = {t.name: t for t in graph.initializer}
    state: dict[str, Tensor] = {}
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        parts: list[str] = []
        for p in node.name.strip("/").split("/")[:-1]:
            # "dark2/dark2.0" and "m/m.0" are one nn.Sequential index in the module path.
            if parts and p.startswith(parts[-1] + "."):
                parts[-1] = p
            else:
                parts.append(p)
        name = ".".join(parts)
        for suffix, tensor_name in (("weight", node.input[1]), ("bias", node.input[2])):
            if tensor_name in init:
                array = numpy_helper.to_array(init[tensor_name]).copy()
                state[f"{name}.{suffix}"] = torch.from_numpy(array).float()
    return state


def load_yolox(path: str | Path) -> YOLOX:
    """A fused :class:`YOLOX` from an ONNX export or a state-dict file (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"YOLOX weights not found: {path} (give an .onnx or state-dict file)")
    if path.suffix.lower() == ".onnx":
        state = _onnx_state_dict(path)
    else:
        from icmbridge.tasks.torchvision_det import load_state_dict_file

        state = load_state_dict_file(path)
    try:
        return YOLOX.from_state_dict(state)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


# -- decoding -------------------------------------------------------------------------------------
def flatten_outputs(raw: list[Tensor]) -> Tensor:
    """Per-level raw head maps to (B, N, 5 + C) as the ONNX export gives them (obj/cls sigmoid)."""
    out = []
    for r in raw:
        r = r.flatten(2).transpose(1, 2)
        out.append(torch.cat([r[..., :4], r[..., 4:].sigmoid()], dim=-1))
    return torch.cat(out, dim=1)


def anchor_points(h: int, w: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """(N, 2) grid cell indices (x fastest) and (N,) strides of all levels of an h×w input."""
    grids, strides = [], []
    for s in STRIDES:
        ys, xs = torch.meshgrid(
            torch.arange(h // s, device=device), torch.arange(w // s, device=device), indexing="ij"
        )
        grids.append(torch.stack([xs, ys], dim=-1).reshape(-1, 2))
        strides.append(torch.full((grids[-1].shape[0],), float(s), device=device))
    return torch.cat(grids).float(), torch.cat(strides)


def decode_boxes(out: Tensor, grid: Tensor, strides: Tensor) -> Tensor:
    """Raw box terms (…, N, ≥4) to xyxy boxes in input pixels."""
    xy = (out[..., :2] + grid) * strides[:, None]
    wh = torch.exp(out[..., 2:4].clamp(max=10.0)) * strides[:, None]
    return torch.cat([xy - wh / 2, xy + wh / 2], dim=-1)


def _pad32(x: Tensor, value: float) -> Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % 32, -w % 32
    return F.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x


def _paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of a[k] with b[k] (xyxy), differentiable."""
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp_min(0).prod(dim=1)
    union = (a[:, 2:] - a[:, :2]).prod(dim=1) + (b[:, 2:] - b[:, :2]).prod(dim=1) - inter
    return inter / union.clamp_min(1e-6)


def _binary_kl(logit: Tensor, target: Tensor) -> Tensor:
    """KL(Bernoulli(target) ‖ Bernoulli(sigmoid(logit))), elementwise; 0 where they agree."""
    t = target.clamp(1e-6, 1 - 1e-6)
    entropy = -(t * t.log() + (1 - t) * (1 - t).log())
    return F.binary_cross_entropy_with_logits(logit, t, reduction="none") - entropy


class YoloxTask(MachineTask):
    """YOLOX COCO detection (80 classes, labels 0..79) as a frozen, differentiable machine task."""

    name = "yolox"
    class_agnostic = False

    def __init__(
        self,
        weights_path: str | Path | None = None,
        input_size: int = 416,
        score_threshold: float = 0.001,
        nms_iou: float = 0.65,
        max_detections: int | None = None,
        train_size: int | None = None,
        feature_weight: float = 0.0,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if weights_path is None:
            raise InputError(
                "task 'yolox' needs weights_path (CLI --task-weights): a YOLOX .onnx export "
                "or state dict, e.g. yolox_nano.onnx"
            )
        if input_size % 32 or input_size <= 0:
            raise InputError(f"input_size must be a positive multiple of 32, got {input_size}")
        if train_size is not None and (train_size % 32 or train_size <= 0):
            raise InputError(f"train_size must be a positive multiple of 32, got {train_size}")
        self.model = freeze(load_yolox(weights_path))
        self.weights_path = str(weights_path)
        self.input_size = int(input_size)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = max_detections
        self.train_size = train_size
        self.feature_weight = float(feature_weight)
        if device is not None:
            self.to(device)

    def modules(self) -> list[nn.Module]:
        return [self.model]

    def save(self, path: str | Path) -> None:
        """Write the (fused) weights as a state dict: ``.safetensors`` or ``torch.save``."""
        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(path))
        else:
            torch.save(state, path)

    # -- input ------------------------------------------------------------------------------------
    def _network_input(self, x: Tensor) -> tuple[Tensor, float]:
        """[0,1] RGB → padded BGR 0..255 at its own size or letterboxed to ``train_size``."""
        scale = 1.0
        x = x.to(self.device)
        if self.train_size is not None:
            h, w = x.shape[-2:]
            scale = min(self.train_size / h, self.train_size / w)
            size = (max(1, int(h * scale)), max(1, int(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        x = x.flip(1) * 255.0
        return _pad32(x, PAD_VALUE), scale

    def _letterbox(self, images: Tensor) -> tuple[Tensor, float]:
        """Round to 8 bits and letterbox with Pillow's bilinear resize, as deployed detectors do."""
        from PIL import Image

        h, w = images.shape[-2:]
        s = self.input_size
        r = min(s / h, s / w)
        size = (int(w * r), int(h * r))
        u8 = torch.round(images.detach().clamp(0, 1) * 255.0).to(torch.uint8).cpu()
        canvas = np.full((images.shape[0], s, s, 3), PAD_VALUE, dtype=np.float32)
        for i, img in enumerate(u8.permute(0, 2, 3, 1).numpy()):
            pil = Image.fromarray(img)
            if pil.size != size:
                pil = pil.resize(size, Image.BILINEAR)
            canvas[i, : size[1], : size[0]] = np.asarray(pil, dtype=np.float32)
        bgr = torch.from_numpy(canvas[..., ::-1].copy()).permute(0, 3, 1, 2)
        return bgr.to(self.device), r

    # -- inference -------------------------------------------------------------------------------
    def raw_outputs(self, network_input: Tensor) -> Tensor:
        """(B, N, 85) for a BGR 0..255 input: the ONNX export's output, for checks."""
        return flatten_outputs(self.model(network_input.to(self.device))[1])

    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        check_images(images)
        inp, r = self._letterbox(images)
        out = self.raw_outputs(inp)
        grid, strides = anchor_points(*inp.shape[-2:], device=out.device)
        boxes = decode_boxes(out, grid, strides) / r
        results = []
        for b, o in zip(boxes, out, strict=True):
            # YOLOX's postprocess: per anchor point the best class, score = obj · cls.
            cls_prob, label = o[:, 5:].max(dim=1)
            score = o[:, 4] * cls_prob
            keep = score > self.score_threshold
            b, score, label = b[keep], score[keep], label[keep]
            keep = batched_nms(b, score, label, self.nms_iou)
            if self.max_detections is not None:
                keep = keep[: self.max_detections]
            results.append(
                {"boxes": b[keep].cpu(), "scores": score[keep].cpu(), "labels": label[keep].cpu()}
            )
        return results

    @torch.no_grad()
    def features(self, images: Tensor) -> list[Tensor]:
        """The three PAFPN maps (strides 8, 16, 32) of the image at its own size."""
        check_images(images)
        return self.model(self._network_input(images)[0])[0]

    # -- losses ----------------------------------------------------------------------------------
    def loss(self, x_hat: Tensor, x: Tensor, targets: list[dict] | None = None) -> Tensor:
        check_images(x_hat, "x_hat")
        if targets is not None:
            return self._supervised_loss(x_hat, targets)
        check_images(x, "x")
        if x.shape != x_hat.shape:
            raise InputError(f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} differ in shape")
        with torch.no_grad():
            t_feats, t_raw = self.model(self._network_input(x)[0])
        feats, raw = self.model(self._network_input(x_hat)[0])
        obj = cls = box = x_hat.new_zeros(())
        for s_out, t_out in zip(raw, t_raw, strict=True):
            t_obj = t_out[:, 4:5].sigmoid()
            weight = t_obj.sum().clamp_min(1e-6)
            obj = obj + _binary_kl(s_out[:, 4:5], t_obj).mean()
            cls_kl = _binary_kl(s_out[:, 5:], t_out[:, 5:].sigmoid()).sum(1, keepdim=True)
            cls = cls + (cls_kl * t_obj).sum() / weight
            box = box + ((s_out[:, :4] - t_out[:, :4]).abs() * t_obj).sum() / (4 * weight)
        total = (obj + cls + box) / len(raw)
        if self.feature_weight:
            fmse = sum(F.mse_loss(a, b) for a, b in zip(feats, t_feats, strict=True))
            total = total + self.feature_weight * fmse / len(feats)
        return total

    def _assign(self, boxes: Tensor, grid: Tensor, strides: Tensor) -> tuple[Tensor, Tensor]:
        """Positive anchor points per box (see module docstring): (point index, box index)."""
        centres = (grid + 0.5) * strides[:, None]
        size = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values
        level_stride = torch.where(size < 64, 8.0, torch.where(size < 128, 16.0, 32.0))
        box_c = (boxes[:, :2] + boxes[:, 2:]) / 2
        same_level = strides[:, None] == level_stride[None, :]
        inside = (
            (centres[:, None, :] > boxes[None, :, :2]) & (centres[:, None, :] < boxes[None, :, 2:])
        ).all(-1)
        near = ((centres[:, None, :] - box_c[None]).abs() < 2.5 * strides[:, None, None]).all(-1)
        match = same_level & inside & near
        dist = (centres[:, None, :] - box_c[None]).pow(2).sum(-1)
        dist = dist.masked_fill(~same_level, float("inf"))
        nearest = dist.argmin(dim=0)
        match[nearest, torch.arange(len(boxes), device=boxes.device)] = True
        area = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
        cost = torch.where(match, area[None, :], torch.full_like(dist, float("inf")))
        best = cost.argmin(dim=1)
        points = match.any(dim=1).nonzero().squeeze(1)
        return points, best[points]

    def _supervised_loss(self, x_hat: Tensor, targets: list[dict]) -> Tensor:
        if len(targets) != x_hat.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {x_hat.shape[0]}")
        inp, scale = self._network_input(x_hat)
        out = flatten_outputs_logits(self.model(inp)[1])
        grid, strides = anchor_points(*inp.shape[-2:], device=out.device)
        pred_boxes = decode_boxes(out, grid, strides)
        obj_target = torch.zeros_like(out[..., 4])
        iou_loss = cls_loss = out.new_zeros(())
        n_pos = 0
        for i, t in enumerate(targets):
            boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=out.device)
            boxes = boxes.reshape(-1, 4) * scale
            if not len(boxes):
                continue
            labels = torch.as_tensor(t["labels"], dtype=torch.int64, device=out.device).reshape(-1)
            points, which = self._assign(boxes, grid, strides)
            obj_target[i, points] = 1.0
            iou = _paired_iou(pred_boxes[i, points], boxes[which])
            iou_loss = iou_loss + (1 - iou.pow(2)).sum()
            onehot = F.one_hot(labels[which], out.shape[-1] - 5).float()
            cls_loss = cls_loss + F.binary_cross_entropy_with_logits(
                out[i, points, 5:], onehot, reduction="sum"
            )
            n_pos += len(points)
        obj_loss = F.binary_cross_entropy_with_logits(out[..., 4], obj_target, reduction="sum")
        return (5.0 * iou_loss + obj_loss + cls_loss) / max(n_pos, 1)


def flatten_outputs_logits(raw: list[Tensor]) -> Tensor:
    """Per-level raw head maps to (B, N, 5 + C) logits (no sigmoid), for losses."""
    return torch.cat([r.flatten(2).transpose(1, 2) for r in raw], dim=1)
