"""Evaluation of any codec on the same footing: real bytes, 8-bit pixels, the same metrics.

A codec under test (ours, a classical one, ours + a post-filter) only has to produce, per image,
the decoded 8-bit RGB pixels, the number of bytes it wrote and its coding times (:class:`Coded`).
:func:`score` turns those into the numbers the paper reports and the ones it lacks:

``bpp`` (real bytes, header included), ``psnr``, ``ssim``, ``ms_ssim`` (None below 161 px),
``cvvdp_jod`` and ``ssimulacra2`` (people's metrics on the 8-bit images, when a
:class:`~icmbridge.metrics.people.PeopleMetrics` is given; else None),
``artifact_db`` (checkerboard score; plus ``residual_grid_db`` and ``phase_variance``),
``lattice`` (the block lattice on the 16-px latent grid: RMS over the grid phases of the mean
luma residual, grey levels, i.e. the square root of ``phase_variance``),
``task_ap``/``task_ap50`` (per image; the ``mean`` entry holds the COCO AP over the whole set),
``task_mask_ap``/``task_mask_ap50`` (the same for instance masks, when the task predicts masks and
the set has them, e.g. ``--task maskrcnn --set coco:ANN.json?masks=true``; else None),
``n_pred``/``n_gt``, ``feature_distance`` (task-network features of x vs x̂), ``vgg_distance``
when VGG weights are given, ``encode_s``/``decode_s``. Every mean comes with a 95 % bootstrap
interval over images (``ci``; set-level AP is bootstrapped by resampling images), and
:func:`icmbridge.evaluation.stats.paired_difference` turns two results on the same images into
paired differences.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from icmbridge.data.images import Sample
from icmbridge.evaluation.stats import (
    LEVEL,
    N_RESAMPLES,
    interval,
    mean_replicates,
    paired_difference,
    resample_plan,
)
from icmbridge.imageio import array_to_tensor, tensor_to_array
from icmbridge.metrics import catalogue

#: What scores an 8-bit original and its decoded image for people (``PeopleMetrics``).
PeopleScorer = Callable[[np.ndarray, np.ndarray], Mapping[str, float | None]]

# Keys every per-image entry has, in the order tables show them (the metric catalogue's).
METRIC_KEYS = catalogue.select()


@dataclass
class Coded:
    """One image through one codec: what the metrics need, nothing codec-specific."""

    name: str
    original: np.ndarray  # HxWx3 uint8
    decoded: np.ndarray  # HxWx3 uint8
    num_bytes: int
    encode_s: float = math.nan
    decode_s: float = math.nan


def code_with_model(codec: Any, samples: Sequence[Sample], progress: bool = True) -> list[Coded]:
    """Encode each sample to a real bitstream with ``codec`` and decode it again."""
    from icmbridge.codec import bitstream

    out = []
    for s in tqdm(samples, desc="coding", disable=not progress, leave=False):
        x = array_to_tensor(s.image)
        t0 = time.perf_counter()
        data = bitstream.encode(codec, x)
        t1 = time.perf_counter()
        x_hat = bitstream.decode(codec, data)
        t2 = time.perf_counter()
        out.append(Coded(s.name, s.image, tensor_to_array(x_hat), len(data), t1 - t0, t2 - t1))
    return out


def encode_with_model(
    codec: Any, samples: Sequence[Sample], progress: bool = False
) -> tuple[list[bytes], list[float]]:
    """One real bitstream per sample, and the seconds each encode took."""
    from icmbridge.codec import bitstream

    streams, seconds = [], []
    for s in tqdm(samples, desc="encoding", disable=not progress, leave=False):
        t0 = time.perf_counter()
        streams.append(bitstream.encode(codec, array_to_tensor(s.image)))
        seconds.append(time.perf_counter() - t0)
    return streams, seconds


def decode_with_model(
    codec: Any, streams: Sequence[bytes], samples: Sequence[Sample]
) -> list[Coded]:
    """Decode existing bitstreams (e.g. the base codec's) with another decoder (e.g. human)."""
    from icmbridge.codec import bitstream

    out = []
    for s, data in zip(samples, streams, strict=True):
        t0 = time.perf_counter()
        x_hat = bitstream.decode(codec, data)
        out.append(
            Coded(
                s.name,
                s.image,
                tensor_to_array(x_hat),
                len(data),
                math.nan,
                time.perf_counter() - t0,
            )
        )
    return out


def _nan_to_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


class ScoreResult(dict):
    """A score result: a plain dict (what goes to JSON) plus the bootstrap replicates of each
    mean as the attribute ``replicates`` (kept out of files: they are only needed to pair two
    results computed in the same run)."""

    replicates: dict[str, np.ndarray]


# what a decoder-vs-base comparison reports (bpp too: classical codecs match the rate per image)
DIFF_KEYS = catalogue.select(paired=True)


def _task_values(s: Mapping[str, Any]) -> dict[str, Any]:
    """The task keys of one ``task.score`` result (AP, AP50, mask AP where masks exist, counts)."""
    return {
        "task_ap": _nan_to_none(s["ap"]),
        "task_ap50": _nan_to_none(s["ap50"]),
        "task_mask_ap": _nan_to_none(s.get("mask_ap")),  # Mask R-CNN with GT masks
        "task_mask_ap50": _nan_to_none(s.get("mask_ap50")),
        "n_pred": int(s["n_pred"]),
        "n_gt": int(s["n_gt"]),
    }


@dataclass
class _TaskScoring:
    """What the task step keeps over the images, for the set-level AP."""

    task: Any
    ground_truth: Sequence[dict | None] | None
    preds: list[dict]
    gts: list[dict]
    pseudo: bool = False

    def image(self, i: int, x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, Any]:
        from icmbridge.tasks.base import feature_distance, pseudo_ground_truth

        gt = self.ground_truth[i] if self.ground_truth is not None else None
        if gt is None:
            gt = pseudo_ground_truth(self.task, x)[0]
            self.pseudo = True
        pred = self.task.predict(x_hat)[0]
        self.preds.append(pred)
        self.gts.append(gt)
        values = _task_values(self.task.score([pred], [gt]))
        values["feature_distance"] = feature_distance(self.task, x, x_hat)
        return values


def _score_image(
    c: Coded,
    task: _TaskScoring | None,
    i: int,
    vgg: Callable[[torch.Tensor, torch.Tensor], float] | None,
    people: PeopleScorer | None,
) -> dict[str, Any]:
    """One image's row: every per-image metric of the catalogue, in its order (None: not
    measured). Metrics with a ``compute`` function are called on the images; the rest come
    from the shared steps below (rate, artifact scores, people's metrics, task, VGG, times)."""
    from icmbridge.metrics.artifacts import artifact_scores

    x, x_hat = array_to_tensor(c.original), array_to_tensor(c.decoded)
    h, w = c.original.shape[:2]
    values: dict[str, Any] = {"bpp": 8 * c.num_bytes / (h * w)}
    if people is not None:
        values.update(people(c.original, c.decoded))
    if min(h, w) >= 32:
        a = artifact_scores(x, x_hat)[0]
        values.update(
            artifact_db=a.artifact_db,
            residual_grid_db=a.residual_grid_db,
            phase_variance=a.phase_variance,
            lattice=math.sqrt(a.phase_variance),
        )
    if task is not None:
        values.update(task.image(i, x, x_hat))
    values["vgg_distance"] = vgg(x, x_hat) if vgg is not None else None
    values["encode_s"] = _nan_to_none(c.encode_s)
    values["decode_s"] = _nan_to_none(c.decode_s)
    entry: dict[str, Any] = {"name": c.name, "width": w, "height": h}
    for key in catalogue.select():
        fn = catalogue.get(key).function()
        entry[key] = fn(x, x_hat) if fn is not None else values.get(key)
    return entry


def score(
    coded: Sequence[Coded],
    task: Any | None = None,
    ground_truth: Sequence[dict | None] | None = None,
    vgg: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    progress: bool = True,
    n_resamples: int = N_RESAMPLES,
    people: PeopleScorer | None = None,
) -> ScoreResult:
    """Metrics per image and over the set: ``{"images": [...], "mean": {...}, "ci": {...}}``.

    Every per-image metric of the catalogue (:mod:`icmbridge.metrics.catalogue`) is measured.
    ``people`` (a :class:`~icmbridge.metrics.people.PeopleMetrics`) scores the 8-bit original
    and decoded arrays for people; without it ``cvvdp_jod`` and ``ssimulacra2`` are None.

    ``ground_truth`` holds annotations per image (``None`` where there are none). Images
    without annotations are scored against the task's predictions on the uncompressed image
    (pseudo ground truth) and the result says so in ``ground_truth``.
    """
    scoring = _TaskScoring(task, ground_truth, [], []) if task is not None else None
    images = [
        _score_image(c, scoring, i, vgg, people)
        for i, c in enumerate(tqdm(coded, desc="scoring", disable=not progress, leave=False))
    ]
    keys = catalogue.select()
    mean: dict[str, Any] = {}
    for key in keys:
        values = [e[key] for e in images if e.get(key) is not None]
        mean[key] = float(np.mean(values)) if values else None
    plan = resample_plan(len(images), n_resamples)
    # per-image metrics get an interval here; set-level AP is bootstrapped by resampling the set
    replicates = {
        key: mean_replicates([e.get(key) for e in images], plan)
        for key in keys
        if mean[key] is not None
        and catalogue.get(key).interval
        and not catalogue.get(key).set_level
    }
    result = ScoreResult(images=images, mean=mean)
    if scoring is not None:
        mean.update(_task_values(task.score(scoring.preds, scoring.gts)))
        if mean["task_ap"] is not None:
            from icmbridge.tasks.scoring import APResampler

            resampler = APResampler(scoring.preds, scoring.gts, class_agnostic=task.class_agnostic)
            replicates["task_ap"], replicates["task_ap50"] = resampler.replicates(plan)
        result["task"] = task.name
        result["ground_truth"] = (
            "pseudo (task predictions on the uncompressed images)"
            if scoring.pseudo
            else "annotations"
        )
    result["n_images"] = len(images)
    result["ci"] = {key: interval(r, mean[key]) for key, r in replicates.items()}
    result["bootstrap"] = {"resamples": n_resamples, "level": LEVEL, "unit": "image"}
    result.replicates = replicates
    return result


def compare(
    coded: Mapping[str, Sequence[Coded]],
    task: Any | None = None,
    ground_truth: Sequence[dict | None] | None = None,
    reference: str = "base",
    progress: bool = False,
    people: PeopleScorer | None = None,
) -> dict[str, ScoreResult]:
    """Score several codecs on the same images, each with paired differences to ``reference``.

    ``coded`` maps a label to that codec's output on the images (e.g. the base bitstreams
    decoded by each decoder, or classical codecs at the base's rate, image by image). Every
    result but the reference's gets ``vs`` = ``{"reference": label, "diff": {key: {"diff",
    "ci", "covers_zero"[, "rel", "rel_ci"]}}}``: a paired bootstrap over the same image draws.
    """
    results = {
        label: score(items, task, ground_truth, progress=progress, people=people)
        for label, items in coded.items()
    }
    add_differences(results, reference)
    return results


def add_differences(results: Mapping[str, ScoreResult], reference: str = "base") -> None:
    """Put the paired difference to ``results[reference]`` into every other result's ``vs``."""
    ref = results.get(reference)
    if ref is None:
        return
    for label, r in results.items():
        if label != reference:
            diff = paired_difference(
                r, ref, catalogue.select(paired=True), catalogue.select(relative=True)
            )
            r["vs"] = {"reference": reference, "diff": diff}


def task_reference(task: Any, samples: Sequence[Sample]) -> dict[str, Any] | None:
    """The task's AP on the uncompressed images (only meaningful with real annotations)."""
    if any(s.target() is None for s in samples):
        return None
    from icmbridge.tasks.scoring import APResampler

    preds = [task.predict(array_to_tensor(s.image))[0] for s in samples]
    gts = [s.target() for s in samples]
    sc = task.score(preds, gts)
    ap, ap50 = APResampler(preds, gts, task.class_agnostic).replicates(resample_plan(len(samples)))
    return {
        **_task_values(sc),
        "ci": {"task_ap": interval(ap, sc["ap"]), "task_ap50": interval(ap50, sc["ap50"])},
    }
