"""torchvision Faster R-CNN / Mask R-CNN (ResNet-50 FPN) as machine tasks — the paper's task family.

Weights come only from a local file (``weights_path``; CLI ``--task-weights PATH``): a state dict
saved with ``torch.save`` (optionally under a ``"model"`` / ``"state_dict"`` key) or a
``.safetensors`` file, e.g. torchvision's ``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth`` fetched
elsewhere. Nothing is ever downloaded. Without weights the network is randomly initialised and a
loud warning says that its numbers mean nothing.

The backbone always uses ``FrozenBatchNorm2d`` (eps 0, as torchvision's COCO_V1 checkpoints), so
``model.train()`` — needed to get torchvision's training losses — does not touch any statistic, and
every parameter has ``requires_grad=False``: the loss is differentiable w.r.t. the input only.

Loss: torchvision's own training losses (RPN objectness + box, ROI classifier + box, + mask for
Mask R-CNN) against the ground truth, or, without ground truth, against pseudo targets: the
network's confident (score ≥ ``pseudo_threshold``) detections on the uncompressed x.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from icmbridge.errors import InputError
from icmbridge.tasks.base import MachineTask, check_images, freeze
from icmbridge.tasks.scoring import coco_score

ARCHS = ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn")


def _build(arch: str, num_classes: int, frozen_bn_eps: float, **kwargs) -> nn.Module:
    """The torchvision model with FrozenBatchNorm, no download (mirrors torchvision's builders)."""
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    def norm_layer(c: int) -> nn.Module:
        return FrozenBatchNorm2d(c, eps=frozen_bn_eps)

    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=norm_layer), 5)
    cls = MaskRCNN if arch.startswith("maskrcnn") else FasterRCNN
    return cls(backbone, num_classes=num_classes, **kwargs)


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a ``.pth``/``.pt`` (``torch.load``, weights only) or ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"task weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise InputError(f"cannot read task weights {path}: {exc}") from exc
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


class TorchvisionDetectionTask(MachineTask):
    """Faster R-CNN (boxes) or Mask R-CNN (boxes + masks) from torchvision, frozen."""

    def __init__(
        self,
        arch: str = "fasterrcnn_resnet50_fpn",
        weights_path: str | Path | None = None,
        num_classes: int | None = None,
        pseudo_threshold: float = 0.5,
        min_size: int = 800,
        max_size: int = 1333,
        box_score_thresh: float = 0.05,
        frozen_bn_eps: float = 0.0,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise InputError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
        self.arch = arch
        self.name = arch
        self.has_masks = arch.startswith("maskrcnn")
        self.pseudo_threshold = pseudo_threshold
        state = load_state_dict_file(weights_path) if weights_path is not None else None
        if state is not None and "roi_heads.box_predictor.cls_score.weight" in state:
            found = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
            if num_classes is not None and num_classes != found:
                raise InputError(
                    f"{weights_path} has {found} classes, not num_classes={num_classes}"
                )
            num_classes = found
        self.model = _build(
            arch,
            num_classes or 91,
            frozen_bn_eps,
            min_size=min_size,
            max_size=max_size,
            box_score_thresh=box_score_thresh,
        )
        if state is not None:
            try:
                self.model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise InputError(f"{weights_path} does not fit {arch}: {exc}") from exc
            self.weights_path: str | None = str(weights_path)
        else:
            self.weights_path = None
            warnings.warn(
                f"{arch}: no --task-weights given, the network is RANDOMLY INITIALISED; its losses "
                "and AP are meaningless except for testing the plumbing",
                UserWarning,
                stacklevel=2,
            )
        freeze(self.model)
        if device is not None:
            self.to(device)

    def modules(self) -> list[nn.Module]:
        return [self.model]

    def _targets(self, targets: list[dict], x: Tensor) -> list[dict[str, Tensor]]:
        """Ground truth in torchvision's training format (labels default 1; box masks if none)."""
        out = []
        h, w = x.shape[-2:]
        for t in targets:
            boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=x.device).reshape(-1, 4)
            labels = t.get("labels")
            labels = (
                torch.ones(len(boxes), dtype=torch.int64, device=x.device)
                if labels is None
                else torch.as_tensor(labels, dtype=torch.int64, device=x.device).reshape(-1)
            )
            d = {"boxes": boxes, "labels": labels}
            if self.has_masks:
                masks = t.get("masks")
                if masks is None:  # no masks annotated: the boxes themselves, filled
                    masks = torch.zeros(len(boxes), h, w, dtype=torch.uint8, device=x.device)
                    for k, b in enumerate(boxes.round().long().tolist()):
                        masks[k, max(b[1], 0) : b[3], max(b[0], 0) : b[2]] = 1
                masks = torch.as_tensor(masks, device=x.device)
                if masks.dim() == 4:
                    masks = masks[:, 0]
                d["masks"] = (masks > 0.5).to(torch.uint8) if masks.is_floating_point() else masks
            out.append(d)
        return out

    def loss(self, x_hat: Tensor, x: Tensor, targets: list[dict] | None = None) -> Tensor:
        check_images(x_hat, "x_hat")
        if targets is None:
            check_images(x, "x")
            targets = [
                {k: v for k, v in p.items() if k in ("boxes", "labels", "masks")}
                for p in self._predict(x, self.pseudo_threshold)
            ]
        if len(targets) != x_hat.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {x_hat.shape[0]}")
        self.model.train()  # torchvision returns losses only in train mode; BN is frozen
        try:
            losses = self.model(list(x_hat), self._targets(targets, x_hat))
        finally:
            self.model.eval()
        return sum(losses.values())

    @torch.no_grad()
    def _predict(self, images: Tensor, threshold: float = 0.0) -> list[dict[str, Tensor]]:
        self.model.eval()
        out = []
        for p in self.model(list(images.to(self.device))):
            keep = p["scores"] >= threshold
            d = {k: v[keep] for k, v in p.items()}
            if "masks" in d:
                d["masks"] = d["masks"] > 0.5 if threshold > 0 else d["masks"]
            out.append(d)
        return out

    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        check_images(images)
        return self._predict(images.clamp(0, 1))

    @torch.no_grad()
    def features(self, images: Tensor) -> list[Tensor]:
        """FPN levels ('0'–'3', 'pool') of the backbone on normalised, un-resized images."""
        check_images(images)
        t = self.model.transform
        mean = torch.as_tensor(t.image_mean, device=images.device).view(1, 3, 1, 1)
        std = torch.as_tensor(t.image_std, device=images.device).view(1, 3, 1, 1)
        return list(self.model.backbone((images.to(self.device) - mean) / std).values())

    def score(self, predictions: list[dict], ground_truth: list[dict]) -> dict[str, float]:
        """Box AP; for Mask R-CNN also ``mask_ap``/``mask_ap50``/``mask_ap75`` when GT has masks."""
        out = coco_score(predictions, ground_truth, "bbox")
        if (
            self.has_masks
            and all(g.get("masks") is not None for g in ground_truth)
            and all("masks" in p for p in predictions)
        ):
            seg = coco_score(predictions, ground_truth, "segm")
            for k in ("ap", "ap50", "ap75"):
                out[f"mask_{k}"] = seg[k]
        return out
