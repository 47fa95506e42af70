"""COCO-style average precision with pycocotools, robust to empty predictions and ground truth.

Why pycocotools and not a home-made AP: the numbers must match what COCO / the paper report
(101-point interpolated AP over IoU .50:.05:.95, max 100 detections per image).
"""

from __future__ import annotations

import contextlib
import io
import math

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
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truth)} images")
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets, cats = [], [], [], set()
    for i, (pred, gt) in enumerate(zip(predictions, ground_truth, strict=True)):
        g_boxes = _np(gt.get("boxes", np.zeros((0, 4)))).reshape(-1, 4).astype(np.float64)
        p_boxes = _np(pred.get("boxes", np.zeros((0, 4)))).reshape(-1, 4).astype(np.float64)
        g_labels = _labels(gt, len(g_boxes), class_agnostic)
        p_labels = _labels(pred, len(p_boxes), class_agnostic)
        p_scores = _np(pred.get("scores", np.ones(len(p_boxes)))).reshape(-1).astype(np.float64)
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
                "iscrowd": 0,
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "area": float((b[2] - b[0]) * (b[3] - b[1])),
            }
            if g_masks is not None:
                rle = mask_utils.encode(np.asfortranarray(g_masks[k].astype(np.uint8)))
                ann["segmentation"] = rle
                ann["area"] = float(mask_utils.area(rle))
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

    out: dict[str, float] = {
        "n_pred": float(len(dets)),
        "n_gt": float(len(anns)),
        "n_images": float(len(images)),
    }
    if not anns:
        out.update({k: math.nan for k in _STAT_NAMES})
        out["note"] = "no ground-truth objects: AP undefined"  # type: ignore[assignment]
        return out
    if not dets:
        out.update({k: 0.0 for k in _STAT_NAMES})
        return out
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
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(_STAT_NAMES, ev.stats, strict=True):
        # -1 marks "no object of that size": report NaN rather than a fake negative AP.
        out[name] = float(value) if value >= 0 else math.nan
    return out
