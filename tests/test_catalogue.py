"""The metric catalogue: every metric declared once, and every reader takes it from there.

A toy metric registered here (one entry plus its function, nothing else edited) is measured by
``score``, gets its interval and paired difference, and shows in the report's codec table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from icmbridge.evaluation.core import Coded, compare, score
from icmbridge.evaluation.results import Results, codec_result
from icmbridge.metrics import catalogue
from icmbridge.metrics.catalogue import Metric
from icmbridge.metrics.detail import hf_kept_db
from icmbridge.report import build_report
from icmbridge.workflows.compare import markdown

ROWS = {"name", "width", "height"}


def _coded(n: int = 3, side: int = 64, noise: int = 12) -> list[Coded]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        y = np.clip(x.astype(int) + rng.integers(-noise, noise + 1, x.shape), 0, 255)
        out.append(Coded(f"im{i}.png", x, y.astype(np.uint8), 200 + i, 0.01, 0.01))
    return out


def _results(scored: dict) -> Results:
    codecs = {k: codec_result("ours", k, r) for k, r in scored.items()}
    return Results("compare", "toy", "c", "toy", None, codecs, n_images=3, base="base")


def toy_mae(x, x_hat) -> float:  # noqa: ANN001 (tensors, as the catalogue's contract says)
    return float((x - x_hat).abs().mean() * 255)


TOY = Metric("toy_mae", "toy MAE", "fidelity", ".3f", -1, unit="grey", paired=True,
             compute=toy_mae)  # fmt: skip


def test_import_is_torch_free_and_cheap() -> None:
    code = (
        "import sys; from icmbridge.metrics import catalogue; "
        "assert catalogue.title('psnr') == 'PSNR dB'; "
        "bad = [m for m in ('torch', 'numpy', 'PIL') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_every_key_evaluation_writes_is_in_the_catalogue_and_back() -> None:
    result = score(_coded(), progress=False)
    for row in result["images"]:
        assert set(row) - ROWS == set(catalogue.select())
    assert set(result["mean"]) == set(catalogue.select())
    assert set(result["ci"]) <= set(catalogue.select(interval=True))
    for key in catalogue.select(per_image=None):
        m = catalogue.get(key)
        assert m.group in catalogue.GROUPS and m.better in (-1, 0, 1)
        value = 3 if m.fmt.endswith("d") else 1.5  # counts
        assert format(value, m.fmt) and format(value, m.short_fmt) and format(value, m.diff_fmt)
    views = (*catalogue.COMPACT, *catalogue.COMPACT_DIFF, *catalogue.REPORT_DIFF,
             *catalogue.HEADLINE, *catalogue.RATE_AXES, *catalogue.TABLE1_COLUMNS)  # fmt: skip
    assert set(views) <= set(catalogue.METRICS)


def test_compare_table_columns_come_from_the_catalogue() -> None:
    scored = compare({"base": _coded(), "other": _coded(noise=30)})
    text = markdown(_results(scored).to_dict())
    head = next(line for line in text.splitlines() if line.startswith("| codec"))
    titles = [c.strip() for c in head.strip("|").split("|")][1:]
    # no task and no people's metrics measured: their columns are left out
    shown = [k for k in catalogue.METRICS if catalogue.get(k).group not in ("task", "people")]
    means = [catalogue.title(k) for k in catalogue.COMPACT if k in shown]
    diffs = [k for k in catalogue.COMPACT_DIFF if k in shown]
    assert titles == means + [f"Δ{catalogue.title(k)} vs base" for k in diffs]


def test_a_new_metric_is_one_entry_plus_its_function(tmp_path: Path) -> None:
    with catalogue.registered(TOY):
        scored = compare({"base": _coded(), "other": _coded(noise=30)})
        for r in scored.values():
            assert all(row["toy_mae"] > 0 for row in r["images"])
            assert r["mean"]["toy_mae"] > 0 and r["ci"]["toy_mae"] is not None
        diff = scored["other"]["vs"]["diff"]["toy_mae"]
        assert diff["diff"] > 0 and not diff["covers_zero"]
        _results(scored).write(tmp_path / "results.json")
        page = build_report(tmp_path, tmp_path / "report", max_images=0).read_text()
        assert "toy MAE" in page and " ↓" in page
    assert "toy_mae" not in catalogue.METRICS
    with pytest.raises(ValueError, match="already"):
        catalogue.register(catalogue.get("psnr"))


def test_hf_kept_db_reads_zero_for_the_original_and_below_for_a_blur(astronaut) -> None:
    x = astronaut[:256, :256]
    blur = np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(2)))
    assert hf_kept_db(x, x) == pytest.approx(0.0)
    assert hf_kept_db(x, blur) < -3
    assert hf_kept_db(x[:20, :20], blur[:20, :20]) is None
