"""BD-rate on curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from icmbridge.evaluation.bdrate import bd_rate


def test_same_curve_is_zero() -> None:
    r, q = [0.1, 0.2, 0.4, 0.8], [25.0, 28.0, 31.0, 34.0]
    assert bd_rate(r, q, r, q) == pytest.approx(0.0, abs=1e-9)


def test_constant_rate_ratio_is_recovered() -> None:
    r, q = np.array([0.1, 0.2, 0.4, 0.8]), [25.0, 28.0, 31.0, 34.0]
    assert bd_rate(r, q, 0.8 * r, q) == pytest.approx(-20.0, rel=1e-6)
    assert bd_rate(r, q, 1.5 * r, q) == pytest.approx(50.0, rel=1e-6)


def test_unusable_curves_give_none() -> None:
    assert bd_rate([0.1, 0.2], [25, 28], [0.1, 0.2], [30, 33]) is None  # no overlap
    assert bd_rate([0.1], [25], [0.1, 0.2], [25, 28]) is None  # one point
    assert bd_rate([0.1, 0.2, 0.3], [25, 25, 24], [0.1, 0.2], [25, 28]) is None  # one useful point


def test_points_beaten_by_cheaper_ones_are_dropped() -> None:
    r, q = [0.1, 0.2, 0.4, 0.8], [25.0, 28.0, 31.0, 34.0]
    # an extra point that costs more than (0.2, 28) for no better quality changes nothing
    assert bd_rate(r + [0.3], q + [27.0], r, q) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(r + [0.25], q + [28.0], 0.8 * np.array(r), q) == pytest.approx(-20.0, rel=1e-6)


def test_bd_rate_interval_from_replicates() -> None:
    """Each bootstrap replicate is a whole resampled set: its BD-rate is recomputed on it."""
    from icmbridge.evaluation.stats import interval
    from icmbridge.workflows.curves import bd_rate_replicates

    rng = np.random.default_rng(0)
    n = 500
    anchor, exact, noisy = [], [], []
    for rate, quality in [(0.1, 25.0), (0.2, 28.0), (0.4, 31.0)]:
        q = quality + rng.normal(0, 0.3, n)  # the set's mean quality varies between replicates
        bpp = rate * np.exp(rng.normal(0, 0.05, n))
        anchor.append({"bpp": bpp, "psnr": q})
        exact.append({"bpp": 0.8 * bpp, "psnr": q})  # same images, 20 % fewer bits in each
        noisy.append({"bpp": 0.8 * bpp * np.exp(rng.normal(0, 0.1, n)), "psnr": q})
    assert bd_rate_replicates(anchor, exact, "psnr") == pytest.approx(np.full(n, -20.0))
    ci = interval(bd_rate_replicates(anchor, noisy, "psnr"), -20.0)
    assert ci[0] < -20.0 < ci[1] and ci[1] - ci[0] > 5  # independent noise widens it
    assert bd_rate_replicates(anchor, exact, "task_ap50").size == 0  # no such metric


def test_curves_command(tmp_path, tiny_model_dir, capsys) -> None:
    import json

    import torch

    from icmbridge.codec.model import CONFIGS, ICMCodec
    from icmbridge.codec.store import save_codec
    from icmbridge.commands import main

    torch.manual_seed(3)
    save_codec(ICMCodec(CONFIGS["tiny"]), tmp_path / "other")
    out = tmp_path / "curves"
    assert (
        main(
            [
                "curves",
                "--models",
                f"{tiny_model_dir},{tmp_path / 'other'}",
                "--codecs",
                "jpeg",
                "--limit",
                "2",
                "-o",
                str(out),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert len(res["rate_curves"]["ours"]) == 2 and len(res["rate_curves"]["jpeg"]) == 2
    for ours, jpeg in zip(res["rate_curves"]["ours"], res["rate_curves"]["jpeg"], strict=True):
        # matched rate, or JPEG's lowest quality where it cannot go that low (counted)
        assert jpeg["bpp"] <= ours["bpp"] + 1e-9 or jpeg["images_above_rate"] > 0
    assert "jpeg" in res["bd_rate"]
    # every BD-rate that exists has its bootstrap interval, around it
    for key, value in res["bd_rate"]["jpeg"].items():
        ci = res["bd_rate_ci"]["jpeg"][key]
        assert (value is None) == (ci is None)
        if value is not None:
            assert ci[0] <= value <= ci[1]
    # one model: the matched-rate comparison, and no BD-rate (a curve needs two points)
    one = ["curves", "--models", str(tiny_model_dir), "--codecs", "jpeg", "--limit", "1"]
    assert main([*one, "-o", str(tmp_path / "one"), "--threads", "1"]) == 0
    res = json.loads((tmp_path / "one" / "results.json").read_text())
    assert len(res["rate_curves"]["jpeg"]) == 1 and res["bd_rate"]["jpeg"]["psnr"] is None
    assert "PSNR —" in capsys.readouterr().out
    assert main(["curves", "--models", ","]) == 2
    # --task none: no AP50 axis; the people's metrics are there unless skipped
    two = ["curves", "--models", f"{tiny_model_dir},{tmp_path / 'other'}", "--codecs", "jpeg"]
    none = [*two, "--limit", "1", "--task", "none", "-o", str(tmp_path / "none"), "--threads", "1"]
    assert main(none) == 0
    res = json.loads((tmp_path / "none" / "results.json").read_text())
    assert res["task"] == "none"
    assert list(res["bd_rate"]["jpeg"]) == ["psnr", "cvvdp_jod", "ssimulacra2"]
    assert all(p["task_ap50"] is None for p in res["rate_curves"]["ours"])
    assert all(p["cvvdp_jod"] is not None for p in res["rate_curves"]["ours"])
    assert "JOD" in capsys.readouterr().out
    assert main([*none[:-4], "--no-people-metrics", "-o", str(tmp_path / "psnr")]) == 0
    res = json.loads((tmp_path / "psnr" / "results.json").read_text())
    assert list(res["bd_rate"]["jpeg"]) == ["psnr"] and res["people_metrics"] is None
    assert all(p["cvvdp_jod"] is None for p in res["rate_curves"]["ours"])


@pytest.mark.parametrize(
    ("anchor", "test", "library"),
    [
        # bjontegaard 1.3.0, bd_rate(..., method="pchip") on the same points
        (([0.1, 0.2, 0.35, 0.5], [22.0, 25.1, 27.4, 29.0]),
         ([0.08, 0.15, 0.27, 0.42], [23.0, 26.0, 28.3, 30.1]), -38.20153649316287),
        (([0.12, 0.2, 0.33], [22.5, 24.9, 27.0]), ([0.1, 0.14, 0.2], [23.8, 25.0, 26.2]),
         -31.52782202362403),
        (([0.1, 0.3], [22.0, 27.0]), ([0.1, 0.25], [23.0, 27.5]), -22.269855824513396),
    ],
)  # fmt: skip
def test_bd_rate_equals_the_bjontegaard_package(anchor, test, library) -> None:
    assert bd_rate(*anchor, *test) == pytest.approx(library, abs=1e-9)
