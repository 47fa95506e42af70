"""COCO-style average precision with pycocotools, robust to empty predictions and ground truth.

Why pycocotools and not a home-made AP: the numbers must match what COCO / the paper report
(101-point interpolated AP over IoU .50:.05:.95, max 100 detections per image).
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import numpy as np
import torch

_STAT_NAMES = (
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def _labels(d: dict, n: int, class_agnostic: bool) -> np.ndarray:
    if class_agnostic or d.get("labels") is None:
        return np.ones(n, dtype=np.int64)
    return _np(d["labels"]).astype(np.int64).reshape(-1)


def _binary_masks(m, n: int) -> np.ndarray:
    """Masks as (K, H, W) bool; Mask R-CNN's (K, 1, H, W) probabilities are cut at 0.5."""
    a = _np(m)
    if a.ndim == 4:
        a = a[:, 0]
    if a.dtype != bool:
        a = a > 0.5 if a.dtype.kind == "f" else a > 0
    return a.reshape(n, *a.shape[-2:])


def _coco_sets(
    predictions: list[dict],
    ground_truth: list[dict],
    iou_type: str,
    class_agnostic: bool,
    image_sizes: list[tuple[int, int]] | None,
) -> tuple[list[dict], list[dict], list[dict], set[int]]:
    """Images, ground-truth annotations, detections and categories in COCO's json shapes.

    A ground-truth box flagged in ``gt["ignore"]`` (too small, marked invalid, a crowd) becomes a
    COCO crowd region: detections on it count neither as hits nor as false positives.
    """
    from pycocotools import mask as mask_utils

    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truth)} images")
    images, anns, dets, cats = [], [], [], set()
    for i, (pred, gt) in enumerate(zip(predictions, ground_truth, strict=True)):
        g_boxes = _np(gt.get("boxes", np.zeros((0, 4)))).reshape(-1, 4).astype(np.float64)
        p_boxes = _np(pred.get("boxes", np.zeros((0, 4)))).reshape(-1, 4).astype(np.float64)
        g_labels = _labels(gt, len(g_boxes), class_agnostic)
        p_labels = _labels(pred, len(p_boxes), class_agnostic)
        p_scores = _np(pred.get("scores", np.ones(len(p_boxes)))).reshape(-1).astype(np.float64)
        g_ignore = (
            _np(gt["ignore"]).reshape(-1).astype(bool)
            if gt.get("ignore") is not None
            else np.zeros(len(g_boxes), dtype=bool)
        )
        # the annotations' own areas when the set has them (COCO json): COCOeval's size ranges
        # and its area-based ignore then match an evaluation on the original file
        g_area = (
            _np(gt["area"]).reshape(-1).astype(np.float64) if gt.get("area") is not None else None
        )
        if image_sizes is not None:
            h, w = image_sizes[i]
        elif iou_type == "segm" and gt.get("masks") is not None:
            h, w = _np(gt["masks"]).shape[-2:]
        else:
            far = max(np.max(g_boxes[:, 2:], initial=1), np.max(p_boxes[:, 2:], initial=1))
            h = w = 1 + int(far)
        images.append({"id": i, "height": int(h), "width": int(w)})
        g_masks = _binary_masks(gt["masks"], len(g_boxes)) if iou_type == "segm" else None
        p_masks = (
            _binary_masks(pred["masks"], len(p_boxes))
            if iou_type == "segm" and len(p_boxes)
            else None
        )
        for k, (b, c) in enumerate(zip(g_boxes, g_labels, strict=True)):
            ann = {
                "id": len(anns) + 1,
                "image_id": i,
                "category_id": int(c),
                "iscrowd": int(g_ignore[k]),
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "area": float((b[2] - b[0]) * (b[3] - b[1])),
            }
            if g_masks is not None:
                rle = mask_utils.encode(np.asfortranarray(g_masks[k].astype(np.uint8)))
                ann["segmentation"] = rle
                ann["area"] = float(mask_utils.area(rle))
            if g_area is not None:
                ann["area"] = float(g_area[k])
            anns.append(ann)
            cats.add(int(c))
        for k, (b, c, s) in enumerate(zip(p_boxes, p_labels, p_scores, strict=True)):
            det = {
                "image_id": i,
                "category_id": int(c),
                "score": float(s),
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            }
            if p_masks is not None:
                rle = mask_utils.encode(np.asfortranarray(p_masks[k].astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                det["segmentation"] = rle
            dets.append(det)
            cats.add(int(c))
    return images, anns, dets, cats


def _coco_eval(images: list, anns: list, dets: list, cats: set, iou_type: str) -> Any:
    """A COCOeval over these json lists, evaluated per image (not yet accumulated)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_coco = COCO()
    gt_coco.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": str(c)} for c in sorted(cats)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
        gt_coco.createIndex()
        dt_coco = gt_coco.loadRes(dets)
        ev = COCOeval(gt_coco, dt_coco, iouType=iou_type)
    return ev


def coco_score(
    predictions: list[dict],
    ground_truth: list[dict],
    iou_type: str = "bbox",
    class_agnostic: bool = False,
    image_sizes: list[tuple[int, int]] | None = None,
) -> dict[str, float]:
    """COCO AP of ``predictions`` against ``ground_truth`` (both per image, xyxy pixel boxes).

    Returns ``ap`` (AP@[.5:.95]), ``ap50``, ``ap75``, size-wise AP/AR, ``n_pred``, ``n_gt``,
    ``n_images``. With no ground-truth object at all AP is undefined: it is NaN and ``note`` says
    why. With no prediction (but some ground truth) every AP is 0. ``iou_type="segm"`` scores
    ``masks`` (needs ``image_sizes`` or masks in the ground truth to know the image shape).
    Boxes flagged in ``gt["ignore"]`` are crowd regions and are not counted in ``n_gt``.
    """
    images, anns, dets, cats = _coco_sets(
        predictions, ground_truth, iou_type, class_agnostic, image_sizes
    )
    n_gt = sum(1 for a in anns if not a["iscrowd"])
    out: dict[str, float] = {
        "n_pred": float(len(dets)),
        "n_gt": float(n_gt),
        "n_images": float(len(images)),
    }
    if not n_gt:
        out.update({k: math.nan for k in _STAT_NAMES})
        out["note"] = "no ground-truth objects: AP undefined"  # type: ignore[assignment]
        return out
    if not dets:
        out.update({k: 0.0 for k in _STAT_NAMES})
        return out
    ev = _coco_eval(images, anns, dets, cats, iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(_STAT_NAMES, ev.stats, strict=True):
        # -1 marks "no object of that size": report NaN rather than a fake negative AP.
        out[name] = float(value) if value >= 0 else math.nan
    return out


class APResampler:
    """COCO box AP and AP50 of any multiset of a set's images, from one ``COCOeval.evaluate``.

    Why: a bootstrap interval of set-level AP needs AP on a thousand resampled sets, and
    re-running pycocotools for each is far too slow. The per-image matching of detections to
    ground truth does not depend on which other images are in the set, so it is done once; each
    resample then only re-runs COCO's ``accumulate`` (sort by score, cumulative hits, 101-point
    interpolated precision, all object sizes, at most 100 detections per image) with every
    image's detections and objects weighted by how often the resample draws it. With all weights
    1 this is COCO's own AP (a test checks it against pycocotools).
    """

    def __init__(
        self, predictions: list[dict], ground_truth: list[dict], class_agnostic: bool = False
    ) -> None:
        images, anns, dets, cats = _coco_sets(
            predictions, ground_truth, "bbox", class_agnostic, None
        )
        self.n_images = len(images)
        self.n_gt = sum(1 for a in anns if not a["iscrowd"])
        # per category: detection image ids, hit / miss flags (T, D) in descending score order,
        # and per-image counts of objects that are not ignored
        self._cats: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.recall_thresholds = np.linspace(0.0, 1.00, 101)  # as COCOeval's Params
        if not self.n_gt:
            return
        t = 10  # COCO's IoU thresholds .50:.05:.95
        if not dets:  # pycocotools cannot load an empty result list: every AP is 0
            for c in sorted(cats):
                npig = np.zeros(self.n_images)
                for a in anns:
                    if a["category_id"] == c and not a["iscrowd"]:
                        npig[a["image_id"]] += 1
                self._cats.append((np.zeros(0, int), np.zeros((t, 0)), np.zeros((t, 0)), npig))
            return
        ev = _coco_eval(images, anns, dets, cats, "bbox")
        ev.params.areaRng = [ev.params.areaRng[0]]  # "all" only: the others are not resampled
        ev.params.areaRngLbl = ["all"]
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
        n_img = len(ev.params.imgIds)
        for k in range(len(ev.params.catIds)):
            per_image = ev.evalImgs[k * n_img : (k + 1) * n_img]
            npig = np.zeros(self.n_images)
            img, scores, tps, fps = [], [], [], []
            for e in per_image:
                if e is None:
                    continue
                npig[e["image_id"]] = np.count_nonzero(e["gtIgnore"] == 0)
                d = len(e["dtScores"])
                if d:
                    img.append(np.full(d, e["image_id"]))
                    scores.append(np.asarray(e["dtScores"]))
                    matched, ignored = e["dtMatches"] > 0, e["dtIgnore"].astype(bool)
                    tps.append(matched & ~ignored)
                    fps.append(~matched & ~ignored)
            if not npig.any():
                continue
            if img:
                order = np.argsort(-np.concatenate(scores), kind="mergesort")
                cat = (
                    np.concatenate(img)[order],
                    np.concatenate(tps, axis=1)[:, order].astype(np.float64),
                    np.concatenate(fps, axis=1)[:, order].astype(np.float64),
                    npig,
                )
            else:
                cat = (np.zeros(0, int), np.zeros((t, 0)), np.zeros((t, 0)), npig)
            self._cats.append(cat)

    def ap(self, weights: np.ndarray | None = None) -> tuple[float, float]:
        """(AP@[.5:.95], AP50) of the set with image ``i`` counted ``weights[i]`` times."""
        if not self.n_gt:
            return math.nan, math.nan
        w = np.ones(self.n_images) if weights is None else np.asarray(weights, dtype=np.float64)
        per_cat = []
        for img, tp, fp, npig in self._cats:
            n_pos = float(w @ npig)
            if n_pos == 0:
                continue  # COCO leaves a category with no object out of the mean
            rw = w[img]
            tp_sum = np.cumsum(tp * rw, axis=1)
            fp_sum = np.cumsum(fp * rw, axis=1)
            q = np.zeros((len(tp), len(self.recall_thresholds)))
            if tp.shape[1]:
                rc = tp_sum / n_pos
                pr = tp_sum / (tp_sum + fp_sum + np.spacing(1))
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(len(tp)):
                    inds = np.searchsorted(rc[t], self.recall_thresholds, side="left")
                    ok = inds < len(rc[t])
                    q[t, ok] = pr[t, inds[ok]]
            per_cat.append(q)
        if not per_cat:
            return math.nan, math.nan
        precision = np.stack(per_cat)  # (K, T, R)
        return float(precision.mean()), float(precision[:, 0].mean())

    def replicates(self, plan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """AP and AP50 for each row of a bootstrap plan (counts per image)."""
        out = np.array([self.ap(row) for row in plan], dtype=np.float64).reshape(-1, 2)
        return out[:, 0], out[:, 1]
