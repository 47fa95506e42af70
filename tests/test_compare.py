"""`icmbridge compare`: one set of bitstreams, several decoders, classical codecs at its bytes."""

from __future__ import annotations

import json

import pytest

from icmbridge.baselines.classical import code_at_bpp
from icmbridge.codec.store import available_models
from icmbridge.commands import main
from icmbridge.data import get_set
from icmbridge.report import build_report

pytestmark = pytest.mark.skipif(
    not {"base", "human"} <= set(available_models()), reason="shipped base/human missing"
)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("compare") / "faces"
    args = ["compare", "--decoders", "human,same=base", "--codecs", "jpeg", "--set", "faces:test"]
    assert main([*args, "--limit", "3", "-o", str(out), "--threads", "1"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_decoders_read_the_same_bytes_and_jpeg_matches_the_rate(compared) -> None:
    _, results = compared
    codecs = results["codecs"]
    assert list(codecs) == ["base", "human", "same", "jpeg"]
    rates = {label: [i["bpp"] for i in c["images"]] for label, c in codecs.items()}
    assert rates["human"] == rates["base"] == rates["same"]  # one bitstream, three decoders
    # JPEG at each image's base bytes, never more, unless its smallest file is already larger:
    # then that smallest file is what it is compared at (and compare says so)
    images = {s.name: s.image for s in get_set("faces:test")}
    for row, b in zip(codecs["jpeg"]["images"], rates["base"], strict=True):
        if row["bpp"] > b:
            image = images[row["name"]]
            smallest = code_at_bpp("jpeg", image, b)
            assert smallest.above_target
            assert 8 * len(smallest.data) == pytest.approx(row["bpp"] * image[..., 0].size)
    # the same decoder twice: no difference at all, and the interval says so
    same = codecs["same"]["vs"]["diff"]
    assert same["psnr"]["diff"] == 0 and same["psnr"]["covers_zero"] is True
    assert same["task_ap50"]["rel"] == 0
    # people's metrics by default: same decoder, same JOD and SSIMULACRA 2 on every image
    assert same["cvvdp_jod"]["diff"] == 0 and same["ssimulacra2"]["covers_zero"] is True
    assert results["people_metrics"]["display"] == "standard_fhd"
    assert all(row["cvvdp_jod"] <= 10 for c in codecs.values() for row in c["images"])
    human = codecs["human"]["vs"]["diff"]
    assert human["bpp"]["diff"] == 0 and human["psnr"]["diff"] > 0  # the human decoder's gain
    for c in codecs.values():
        lo, hi = c["ci"]["psnr"]
        assert lo <= c["mean"]["psnr"] <= hi
    assert results["uncompressed"]["task_ap50"] > 0.5 and results["n_images"] == 3


def test_table_and_report(compared, tmp_path) -> None:
    out, _ = compared
    table = (out / "table.md").read_text()
    assert "| human |" in table and "ΔPSNR dB vs base" in table and "Command: `icmbridge" in table
    assert sorted(p.name for p in (out / "decoded").iterdir()) == ["base", "human", "jpeg", "same"]
    assert "| JOD | SSIMULACRA 2 |" in table and "ΔJOD vs base" in table
    page = build_report(out, tmp_path / "report").read_text(encoding="utf-8")
    assert 'id="differences"' in page and "jpeg" in page
    assert "Δ JOD" in page and "Δ SSIMULACRA 2" in page and "standard_fhd" in page
    assert "Rate: PSNR, AP50, JOD and SSIMULACRA 2 against bits per pixel" in page


def test_a_decoder_of_another_model_is_refused(tiny_model_dir, tmp_path, capsys) -> None:
    args = ["compare", "--decoders", str(tiny_model_dir), "--codecs", "", "--task", "none"]
    assert main([*args, "--limit", "1", "-o", str(tmp_path / "x"), "--no-images"]) == 2
    err = capsys.readouterr().err
    assert "decoder 'tiny'" in err and "was not finetuned from base" in err
    assert "coding" not in err  # refused before any work


def test_reference_must_be_one_of_the_codecs(tmp_path, capsys) -> None:
    args = ["compare", "--decoders", "human", "--codecs", "", "--reference", "control"]
    assert main([*args, "--limit", "1", "-o", str(tmp_path / "x"), "--task", "none"]) == 2
    assert "--reference 'control' is none of: base, human" in capsys.readouterr().err
