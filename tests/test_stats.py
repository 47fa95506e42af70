"""Bootstrap intervals, paired differences and resampled COCO AP (checked against pycocotools)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from icmbridge.evaluation.core import Coded, score
from icmbridge.evaluation.stats import (
    covers_zero,
    format_diff,
    interval,
    mean_replicates,
    paired_difference,
    resample_plan,
)
from icmbridge.tasks.scoring import APResampler, coco_score


def _detections(n_images: int, seed: int, with_ignore: bool = True):
    """Random boxes of 3 classes, jittered detections of them plus false positives."""
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(n_images):
        k = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (k, 2))
        g = np.concatenate([xy, xy + rng.uniform(10, 60, (k, 2))], 1)
        labels = rng.integers(0, 3, k)
        fake = rng.uniform(0, 200, (3, 2))
        boxes = np.concatenate([g + rng.normal(0, 6, g.shape), np.c_[fake, fake + 30]])
        preds.append(
            {
                "boxes": boxes,
                "scores": rng.random(len(boxes)),
                "labels": np.concatenate([labels, rng.integers(0, 3, 3)]),
            }
        )
        gt = {"boxes": g, "labels": labels}
        if with_ignore:
            gt["ignore"] = rng.random(k) < 0.15
        gts.append(gt)
    return preds, gts


def test_resampled_ap_is_cocos_ap_for_the_set_and_for_duplicated_images() -> None:
    preds, gts = _detections(40, seed=1)
    resampler = APResampler(preds, gts)
    full = coco_score(preds, gts)
    assert resampler.ap() == pytest.approx((full["ap"], full["ap50"]), abs=1e-12)
    # a bootstrap draw is the set with some images twice and some not at all
    counts = np.random.default_rng(2).integers(0, 3, 40)
    dup_p = [p for p, c in zip(preds, counts, strict=True) for _ in range(c)]
    dup_g = [g for g, c in zip(gts, counts, strict=True) for _ in range(c)]
    drawn = coco_score(dup_p, dup_g)
    assert resampler.ap(counts) == pytest.approx((drawn["ap"], drawn["ap50"]), abs=1e-12)


def test_class_agnostic_and_empty_cases() -> None:
    preds, gts = _detections(20, seed=3, with_ignore=False)
    agn = coco_score(preds, gts, class_agnostic=True)
    assert APResampler(preds, gts, class_agnostic=True).ap() == pytest.approx(
        (agn["ap"], agn["ap50"]), abs=1e-12
    )
    nothing = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0)} for _ in gts]
    assert APResampler(nothing, gts).ap() == (0.0, 0.0)
    no_gt = [{"boxes": np.zeros((0, 4))} for _ in gts]
    assert all(np.isnan(APResampler(preds, no_gt).ap()))


def test_ignored_boxes_count_neither_as_hits_nor_as_false_positives() -> None:
    gt_box = np.array([[10.0, 10, 50, 50]])
    small = np.array([[100.0, 100, 110, 108]])
    gts = [{"boxes": np.concatenate([gt_box, small]), "ignore": np.array([False, True])}]
    # a confident detection on the ignored box, then the real one
    preds = [{"boxes": np.concatenate([small, gt_box]), "scores": np.array([0.9, 0.8])}]
    with_ignore = coco_score(preds, gts, class_agnostic=True)
    assert with_ignore["n_gt"] == 1
    assert with_ignore["ap50"] == pytest.approx(1.0)
    assert APResampler(preds, gts, class_agnostic=True).ap()[1] == pytest.approx(1.0)
    # dropping the small face instead would turn the detection on it into a false positive
    dropped = [{"boxes": gt_box}]
    assert coco_score(preds, dropped, class_agnostic=True)["ap50"] == pytest.approx(0.5)


def test_plan_is_fixed_by_size_and_seed() -> None:
    plan = resample_plan(30, 200)
    assert plan.shape == (200, 30) and (plan.sum(axis=1) == 30).all()
    assert np.array_equal(plan, resample_plan(30, 200))
    assert not np.array_equal(plan, resample_plan(30, 200, seed=1))


def test_mean_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    plan = resample_plan(60, 400)
    hits = 0
    for _ in range(300):
        ci = interval(mean_replicates(rng.normal(5.0, 2.0, 60).tolist(), plan))
        hits += ci[0] <= 5.0 <= ci[1]
    assert 0.88 <= hits / 300 <= 0.99
    # undefined values are left out, not counted as zeros
    reps = mean_replicates([1.0, None, 3.0, float("nan")], resample_plan(4, 100))
    finite = reps[np.isfinite(reps)]
    assert finite.min() >= 1.0 and finite.max() <= 3.0


def _scored(values: np.ndarray, rng: np.random.Generator):
    """Score results whose per-image PSNR is ``values`` (images of noise with that PSNR)."""
    coded = []
    for i, v in enumerate(values):
        x = rng.integers(60, 190, (32, 32, 3)).astype(np.uint8)
        sigma = 255.0 / 10 ** (v / 20)
        y = np.clip(np.rint(x + rng.normal(0, sigma, x.shape)), 0, 255).astype(np.uint8)
        coded.append(Coded(f"im{i}", x, y, 100))
    return score(coded, progress=False)


def test_paired_difference_sees_a_small_shift_that_the_spread_between_images_hides() -> None:
    rng = np.random.default_rng(5)
    level = rng.uniform(18, 34, 40)  # images differ by many dB ...
    a, b = _scored(level + 0.5, rng), _scored(level, rng)  # ... the decoders by half a dB
    for r in (a, b):
        lo, hi = r["ci"]["psnr"]
        assert lo < r["mean"]["psnr"] < hi and hi - lo > 2.0
    d = paired_difference(a, b, ["psnr"])["psnr"]
    assert d["diff"] == pytest.approx(a["mean"]["psnr"] - b["mean"]["psnr"])
    assert 0 < d["ci"][0] < d["diff"] < d["ci"][1] and d["ci"][1] - d["ci"][0] < 1.0
    assert d["covers_zero"] is False
    same = paired_difference(b, b, ["psnr"])["psnr"]
    assert same["diff"] == 0 and same["covers_zero"] is True
    assert format_diff(same).startswith("~")
    # the replicates stay in memory: the JSON holds means and intervals only
    text = json.dumps(a)
    assert "replicates" not in text and '"ci"' in text


def test_paired_difference_refuses_unpaired_results() -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="same images"):
        paired_difference(_scored(np.full(5, 25.0), rng), _scored(np.full(6, 25.0), rng))
    with pytest.raises(ValueError, match="replicates"):
        paired_difference({"mean": {}}, {"mean": {}})
    assert covers_zero(None) is None and covers_zero([-1, 2]) and not covers_zero([0.1, 2])


def test_interval_is_placed_around_the_full_set_value() -> None:
    """Set-level AP's replicates sit above the full-set value (a resample that misses a rare
    class drops it); the interval must be placed around the value, not around the replicates."""
    reps = np.random.default_rng(0).normal(0.35, 0.02, 2000)  # median 0.02 above the value
    plain, corrected = interval(reps), interval(reps, 0.33)
    assert plain[0] > 0.30 and not plain[0] < 0.33 - 0.035
    lo, hi = corrected
    assert lo < 0.33 < hi and abs((0.33 - lo) - (hi - 0.33)) < 0.01
    # no shift, no correction
    assert interval(reps, float(np.median(reps))) == pytest.approx(plain, abs=2e-3)
    assert interval(np.zeros(10), 0.0) == [0.0, 0.0]
