"""`icmbridge evaluate` and the shared scoring: real bytes, the JSON contract, pseudo-GT flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from icmbridge.commands import main
from icmbridge.evaluation.core import METRIC_KEYS, Coded, score


def test_score_identity_and_degradation(astronaut) -> None:
    x = astronaut[:192, :192]
    noisy = np.clip(x.astype(int) + np.random.default_rng(0).integers(-20, 21, x.shape), 0, 255)
    coded = [Coded("same", x, x.copy(), 100), Coded("noisy", x, noisy.astype(np.uint8), 100)]
    result = score(coded, progress=False)
    same, bad = result["images"]
    assert same["psnr"] == float("inf") and same["ssim"] == pytest.approx(1.0)
    assert bad["psnr"] < 30 and bad["ssim"] < same["ssim"]
    assert same["bpp"] == pytest.approx(8 * 100 / 192**2)
    assert set(METRIC_KEYS) <= set(same) and set(METRIC_KEYS) == set(result["mean"])


def test_evaluate_cli_json_contract(tmp_path, tiny_model_dir, astronaut, capsys) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(astronaut[:128, :160]).save(folder / "a.png")
    Image.fromarray(astronaut[200:300, 100:300]).save(folder / "b.png")
    out = tmp_path / "r.json"
    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_model_dir),
            "--images",
            str(folder),
            "--json",
            str(out),
            "--threads",
            "1",
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    (entry,) = result["codecs"].values()  # one codec: the evaluated model
    assert [e["name"] for e in entry["images"]] == ["a.png", "b.png"]
    for key in (
        "bpp",
        "psnr",
        "ssim",
        "ms_ssim",
        "artifact_db",
        "task_ap",
        "task_ap50",
        "feature_distance",
        "encode_s",
        "decode_s",
    ):
        assert key in entry["images"][0] and key in entry["mean"]
    # the bpp is that of the real file the codec writes
    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec
    from icmbridge.imageio import load_image

    data = bitstream.encode(load_codec(tiny_model_dir), load_image(folder / "a.png")[0])
    assert entry["images"][0]["bpp"] == pytest.approx(8 * len(data) / (128 * 160))
    assert result["schema"] == 2 and result["kind"] == "evaluate"
    assert result["ground_truth"].startswith("pseudo")
    # the terminal says so too, on the line a user reads (stdout), once
    assert capsys.readouterr().out.count("note: no annotations") == 1


def test_evaluate_with_annotations_reports_uncompressed(tmp_path, tiny_model_dir, capsys) -> None:
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_model_dir),
                "--set",
                "faces:test",
                "--limit",
                "2",
                "--json",
                str(out),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    (entry,) = result["codecs"].values()  # one codec: the evaluated model
    assert result["ground_truth"] == "annotations"
    assert result["uncompressed"]["task_ap50"] > 0.5  # MTCNN finds the planted faces
    assert entry["mean"]["n_gt"] == result["uncompressed"]["n_gt"]
    printed = capsys.readouterr().out
    assert "uncompressed: AP" in printed and "note: no annotations" not in printed


def test_evaluate_errors(tmp_path, tiny_model_dir, capsys) -> None:
    assert (
        main(["evaluate", "--model", str(tiny_model_dir), "--images", str(tmp_path / "none")]) == 2
    )
    assert capsys.readouterr().err.startswith("error:")
    assert main(["evaluate", "--model", str(tiny_model_dir), "--limit", "0"]) == 2
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_model_dir),
                "--set",
                "photos:test",
                "--json",
                str(tmp_path / "no" / "x.json"),
            ]
        )
        == 2
    )


def test_vgg_distance_from_local_weights(tmp_path, astronaut) -> None:
    import torch
    from torchvision.models import vgg16

    from icmbridge.errors import InputError
    from icmbridge.imageio import array_to_tensor
    from icmbridge.metrics.vgg import VGGDistance

    torch.manual_seed(0)
    path = tmp_path / "vgg16.pth"
    torch.save(vgg16(weights=None).state_dict(), path)
    vgg = VGGDistance(path)
    x = array_to_tensor(astronaut[:64, :64])
    assert vgg(x, x) == 0.0
    assert vgg(x, (x * 0.5)) > 0
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="not a torchvision vgg16"):
        VGGDistance(tmp_path / "bad.pth")
