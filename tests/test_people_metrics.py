"""People's metrics: ColorVideoVDP (JOD) and SSIMULACRA 2 from their authors' packages, in every
results file, table, curve and report.

The scores must be the packages' own on the files a user would look at: a small test compares
with the packages run on PNG files, and the issue's acceptance test runs ``compare`` on Kodak and
re-scores two images from OUT's files (it skips where ../shared/data lacks Kodak).
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image
from shared_data import data_root, requires

from icmbridge.codec.store import available_models
from icmbridge.commands import main
from icmbridge.errors import InputError
from icmbridge.evaluation.core import Coded, compare, score
from icmbridge.metrics.people import (
    DEFAULT_DISPLAY,
    PEOPLE_KEYS,
    PeopleMetrics,
    check_display,
    displays,
)

pycvvdp = pytest.importorskip("pycvvdp", reason="cvvdp is not installed (see the README's setup)")
ssimulacra2 = pytest.importorskip("ssimulacra2", reason="ssimulacra2 is not installed")


@pytest.fixture(scope="module")
def people() -> PeopleMetrics:
    return PeopleMetrics()


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.fixture(scope="module")
def pair(astronaut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 96×128 crop of a packaged photo and its JPEG at quality 10 (visible blocking)."""
    x = np.ascontiguousarray(astronaut[40:136, 150:278])
    return x, _jpeg(x, 10)


def _package_scores(original_png, decoded_png, display: str = DEFAULT_DISPLAY) -> dict:
    """The authors' packages on image files, as their READMEs call them. The PNGs are read with
    imageio's default reader: ``pycvvdp.load_image_as_array`` asks for imageio's FreeImage
    plugin for PNG (16-bit support), which it downloads on first use, and tests run offline."""
    import imageio.v2 as imageio

    metric = pycvvdp.cvvdp(display_name=display, device=None, quiet=True)
    ref, test = imageio.imread(original_png), imageio.imread(decoded_png)
    assert ref.dtype == np.uint8 and ref.shape[2] == 3
    jod, _ = metric.predict(test, ref, dim_order="HWC")
    return {
        "cvvdp_jod": float(jod),
        "ssimulacra2": float(ssimulacra2.compute_ssimulacra2(original_png, decoded_png)),
    }


def test_scores_are_the_packages_own_on_png_files(people, pair, tmp_path) -> None:
    x, y = pair
    Image.fromarray(x).save(tmp_path / "x.png")
    Image.fromarray(y).save(tmp_path / "y.png")
    ours = people(x, y)
    theirs = _package_scores(tmp_path / "x.png", tmp_path / "y.png")
    assert ours["cvvdp_jod"] == pytest.approx(theirs["cvvdp_jod"], abs=1e-4)
    assert ours["ssimulacra2"] == pytest.approx(theirs["ssimulacra2"], abs=1e-6)
    # heavy JPEG: clearly visible, far from lossless
    assert 3 < ours["cvvdp_jod"] < 9.5 and ours["ssimulacra2"] < 50


def test_identical_images_score_as_invisible(people, pair) -> None:
    x, _ = pair
    assert people(x, x) == {"cvvdp_jod": pytest.approx(10.0), "ssimulacra2": pytest.approx(100.0)}


def test_more_bits_score_better(people, pair) -> None:
    x, low = pair
    high = people(x, _jpeg(x, 80))
    worse = people(x, low)
    assert high["cvvdp_jod"] > worse["cvvdp_jod"] and high["ssimulacra2"] > worse["ssimulacra2"]


def test_inputs_are_checked(people, pair) -> None:
    x, y = pair
    assert people(x[:6, :6].copy(), y[:6, :6].copy()) == dict.fromkeys(PEOPLE_KEYS)
    with pytest.raises(InputError, match="8-bit"):
        people(x.astype(np.float32) / 255, y)
    with pytest.raises(InputError, match="differ in shape"):
        people(x, y[:-1])


def test_displays_are_the_packages_sdr_ones() -> None:
    known = displays()
    assert DEFAULT_DISPLAY in known and "standard_4k" in known and "standard_phone" in known
    assert not any("hdr_pq" in name or "hdr_linear" in name for name in known)
    assert check_display("standard_4k") == "standard_4k"
    with pytest.raises(InputError, match="standard_fhd"):
        check_display("nope")


def test_another_display_changes_the_score(pair) -> None:
    x, y = pair
    phone = PeopleMetrics("standard_phone")
    assert phone.info()["display"] == "standard_phone"
    assert phone(x, y)["cvvdp_jod"] != PeopleMetrics()(x, y)["cvvdp_jod"]


@pytest.mark.parametrize(
    "command", [["compare", "-o", "{tmp}"], ["evaluate"], ["curves", "-o", "{tmp}"], ["demo"]]
)
def test_a_bad_display_is_one_error_line(command, tmp_path, capsys) -> None:
    argv = [a.replace("{tmp}", str(tmp_path / "x")) for a in command]
    for bad in ("standard_hdr_pq", ""):
        assert main([*argv, "--display", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --display {bad!r} is not one")
        assert not (tmp_path / "x").exists()  # refused before anything was coded or written


def test_missing_packages_are_one_error_line(monkeypatch, tmp_path, capsys) -> None:
    from icmbridge.metrics import people

    monkeypatch.setattr(people, "_PACKAGES", {"cvvdp": "no_such_module_here"})
    with pytest.raises(InputError, match="need cvvdp, not importable here.*--no-people-metrics"):
        PeopleMetrics()
    assert main(["compare", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: people's metrics need cvvdp")


def _coded(pair: tuple[np.ndarray, np.ndarray], n: int = 3) -> dict[str, list[Coded]]:
    x, low = pair
    rows = [x[:, i * 8 : i * 8 + 96].copy() for i in range(n)]
    return {
        "base": [Coded(f"im{i}", r, _jpeg(r, 10), 300) for i, r in enumerate(rows)],
        "better": [Coded(f"im{i}", r, _jpeg(r, 60), 900) for i, r in enumerate(rows)],
    }


def test_score_and_compare_carry_both_metrics(people, pair) -> None:
    results = compare(_coded(pair), people=people)
    for label, r in results.items():
        for key in PEOPLE_KEYS:
            assert r["mean"][key] is not None and len(r["ci"][key]) == 2, (label, key)
            assert all(row[key] is not None for row in r["images"])
            assert r["mean"][key] == pytest.approx(np.mean([row[key] for row in r["images"]]))
    diff = results["better"]["vs"]["diff"]
    assert diff["cvvdp_jod"]["diff"] > 0 and diff["ssimulacra2"]["diff"] > 0
    skipped = score(_coded(pair)["base"], progress=False)
    assert all(skipped["mean"][k] is None and k not in skipped["ci"] for k in PEOPLE_KEYS)
    assert all(row[k] is None for row in skipped["images"] for k in PEOPLE_KEYS)


def test_bd_rate_axes_and_their_text() -> None:
    """``curves`` gives BD-rates on JOD and SSIMULACRA 2 beside PSNR and AP50, each with its
    interval, and terminals name every axis (— where the curves share no quality range)."""
    from icmbridge.workflows.curves import BD_KEYS, bd_rate_line, bd_rate_texts

    assert {"cvvdp_jod", "ssimulacra2"} <= set(BD_KEYS)
    texts = bd_rate_texts(
        {"avif": {"psnr": -10.0, "cvvdp_jod": 25.0, "ssimulacra2": None}},
        {"avif": {"psnr": [-12.0, -8.0], "cvvdp_jod": [20.0, 31.0]}},
    )
    line = bd_rate_line(texts["avif"])
    assert line == "PSNR -10.0% [-12.0, -8.0], JOD +25.0% [+20.0, +31.0], SSIMULACRA 2 —"


@pytest.mark.slow  # ~1 min on 2 cores: CI runs it with `make test-slow`
@pytest.mark.skipif(
    not {"base", "human"} <= set(available_models()), reason="shipped base/human missing"
)
@requires("kodak")
def test_compare_on_kodak_matches_the_packages_on_its_files(tmp_path, monkeypatch) -> None:
    """The issue's acceptance check: ``icmbridge compare --base base --decoders human --codecs
    jpeg,avif --set 'kodak?take=0:3' --task none -o OUT`` writes both metrics for every codec
    and image, and two images re-scored from OUT's files by the packages agree (0.05 JOD, 0.5)."""
    monkeypatch.setenv("ICMBRIDGE_DATA", str(data_root()))
    out = tmp_path / "out"
    argv = ["compare", "--base", "base", "--decoders", "human", "--codecs", "jpeg,avif"]
    argv += ["--set", "kodak?take=0:3", "--task", "none", "-o", str(out), "--threads", "2"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["people_metrics"]["display"] == DEFAULT_DISPLAY
    codecs = results["codecs"]
    assert set(codecs) == {"base", "human", "jpeg", "avif"}
    for label, c in codecs.items():
        assert len(c["images"]) == 3
        for key in PEOPLE_KEYS:
            assert all(math.isfinite(row[key]) for row in c["images"]), (label, key)
            assert c["ci"][key] is not None
            if label != "base":
                assert c["vs"]["diff"][key]["ci"] is not None
    table = (out / "table.md").read_text()
    assert "| JOD |" in table and "SSIMULACRA 2" in table
    for checked, label in enumerate(("human", "avif")):  # two images, two codecs
        row = codecs[label]["images"][checked]
        stem = row["name"].rsplit(".", 1)[0]
        theirs = _package_scores(
            out / "originals" / f"{stem}.png", out / "decoded" / label / f"{stem}.png"
        )
        assert row["cvvdp_jod"] == pytest.approx(theirs["cvvdp_jod"], abs=0.05)
        assert row["ssimulacra2"] == pytest.approx(theirs["ssimulacra2"], abs=0.5)
