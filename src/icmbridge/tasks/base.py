"""The machine-task contract: what training and evaluation need from a task network.

A :class:`MachineTask` wraps a *frozen* pretrained network (eval mode, ``requires_grad=False``)
and offers

* ``loss(x_hat, x, targets=None)``: a scalar, differentiable w.r.t. ``x_hat``. Without targets it
  is label-free distillation (the network's outputs on ``x_hat`` pulled towards its outputs on
  ``x``, computed under ``no_grad``), so any image set trains an ICM codec; with targets
  (per image ``{"boxes": (K, 4) xyxy}``) it is the task's own supervised loss;
* ``predict(images)``: per image ``{"boxes", "scores", "labels"}`` (plus ``masks``);
* ``score(predictions, ground_truth)``: COCO AP via pycocotools;
* ``features(images)``: intermediate feature maps, for feature-fidelity metrics.

Images are (B, 3, H, W) float tensors in [0, 1]. New tasks subclass this and register a factory in
:mod:`icmbridge.tasks`; training code never needs to change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from icmbridge.errors import InputError
from icmbridge.tasks.scoring import coco_score


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients for every parameter: the task network is a fixed judge."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def check_images(x: Tensor, what: str = "images") -> None:
    """Refuse tensors that are not (B, 3, H, W) floats, with a message that says what was given."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{what} must be a (B, 3, H, W) float tensor in [0, 1], got {shape}")


class MachineTask(ABC):
    """A frozen task network with a differentiable loss, a predictor and a COCO scorer."""

    name: str = "task"
    #: True when predictions carry no class information (one "object" class, e.g. faces).
    class_agnostic: bool = False

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    @abstractmethod
    def modules(self) -> list[nn.Module]:
        """The networks this task runs (moved by :meth:`to`, frozen at construction)."""

    def to(self, device: torch.device | str) -> MachineTask:
        self.device = torch.device(device)
        for m in self.modules():
            m.to(self.device)
        return self

    @abstractmethod
    def loss(self, x_hat: Tensor, x: Tensor, targets: list[dict] | None = None) -> Tensor:
        """Scalar task loss of ``x_hat``; distillation towards ``x`` when ``targets`` is None."""

    @abstractmethod
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        """Detections per image: ``boxes`` (K, 4) xyxy pixels, ``scores`` (K,), ``labels`` (K,)."""

    @abstractmethod
    def features(self, images: Tensor) -> list[Tensor]:
        """Intermediate feature maps of the task network (a list, one tensor per level)."""

    def score(self, predictions: list[dict], ground_truth: list[dict]) -> dict[str, float]:
        """COCO box AP (``ap``, ``ap50``, ...) plus ``n_pred`` and ``n_gt``."""
        return coco_score(predictions, ground_truth, "bbox", class_agnostic=self.class_agnostic)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device})"


@torch.no_grad()
def feature_distance(task: MachineTask, x: Tensor, x_hat: Tensor) -> float:
    """Relative feature error: mean over levels of ‖f(x) − f(x̂)‖² / ‖f(x)‖².

    Normalising per level makes levels with large activations not dominate, and makes the number
    comparable across tasks (0 = identical features, 1 = an error as large as the features).
    """
    check_images(x, "x")
    check_images(x_hat, "x_hat")
    fx, fy = task.features(x), task.features(x_hat)
    fx = [fx] if isinstance(fx, Tensor) else list(fx)
    fy = [fy] if isinstance(fy, Tensor) else list(fy)
    terms = []
    for a, b in zip(fx, fy, strict=True):
        terms.append(((a - b).pow(2).sum() / a.pow(2).sum().clamp_min(1e-12)).item())
    return float(sum(terms) / len(terms))


@torch.no_grad()
def pseudo_ground_truth(
    task: MachineTask, x: Tensor, score_threshold: float = 0.5
) -> list[dict[str, Tensor]]:
    """The task's confident predictions on the uncompressed ``x``, as ground truth.

    For data sets without annotations: a codec is then scored on how well it preserves what the
    network sees in the original. Results computed this way must be reported as pseudo-GT.
    """
    out = []
    for pred in task.predict(x):
        keep = pred["scores"] >= score_threshold
        out.append({k: v[keep] for k, v in pred.items() if isinstance(v, Tensor)})
    return out
