"""`icmbridge demo --quick` (the main job, shortened) and `icmbridge ablate` end to end."""

from __future__ import annotations

import json

import pytest

from icmbridge.codec import bitstream
from icmbridge.codec.store import available_models, load_codec
from icmbridge.commands import main


@pytest.mark.skipif("base" not in available_models(), reason="weights/base not shipped yet")
def test_demo_quick(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "-o", str(out), "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "base" in printed and "jpeg" in printed and "report" in printed
    assert "for people: ColorVideoVDP" in printed and "ΔJOD" in printed
    results = json.loads((out / "results.json").read_text())
    codecs = results["codecs"]
    for entry in codecs.values():  # people's metrics on every image of every codec
        assert all(r["cvvdp_jod"] is not None and r["ssimulacra2"] is not None
                   for r in entry["images"])  # fmt: skip
    assert {"base", "live-finetune", "jpeg", "base+gaussian", "base+bilateral"} <= set(codecs)
    files = sorted((out / "bitstreams").glob("*.icmb"))
    assert len(files) == 3
    # every decoder of the demo read the very same files, at the same rate
    for entry in codecs.values():
        if entry["kind"] == "ours":
            assert entry["mean"]["bpp"] == pytest.approx(codecs["base"]["mean"]["bpp"])
    live = load_codec(out / "live-finetune")
    for f in files:
        x = bitstream.decode(live, f.read_bytes())
        h = bitstream.parse_header(f.read_bytes())
        assert x.shape[-2:] == (h.height, h.width)
    # JPEG was coded at (or under) the base codec's bytes, image by image; only where JPEG's
    # lowest quality is already larger may it lie above, and then it is that lowest quality
    from icmbridge.baselines.classical import get_codec
    from icmbridge.imageio import load_image, tensor_to_array

    jpeg_codec = get_codec("jpeg")
    for ours, jpeg in zip(codecs["base"]["images"], codecs["jpeg"]["images"], strict=True):
        if jpeg["bpp"] > ours["bpp"]:
            image = tensor_to_array(load_image(out / "originals" / f"{ours['name']}.png")[0])
            lowest = jpeg_codec.encode(image, jpeg_codec.q_min)
            assert jpeg["bpp"] == pytest.approx(8 * len(lowest) / image[..., 0].size)
    assert (out / "report" / "index.html").is_file()


def test_ablate_small(tmp_path, tiny_model_dir, capsys) -> None:
    out = tmp_path / "abl"
    args = ["ablate", "--base", str(tiny_model_dir), "-o", str(out), "--steps", "1"]
    args += ["--images", "2", "--only", "layers", "--threads", "1"]
    assert main(args) == 0
    table = (out / "table1.md").read_text()
    assert "Base codec" in table and "K = 4" in table and "ΔJOD vs base" in table
    results = json.loads((out / "results.json").read_text())
    configs = [r["config"] for r in results["table1"]]
    assert configs == ["Base codec", "K = 1", "K = 2", "K = 3", "K = 4"]
    assert results["table1"][0]["rel_task_ap50"] is None
    assert (out / "decoded" / "k-4").is_dir()
    # a finished row is not run again
    mtime = (out / "runs" / "k-1" / "run.json").stat().st_mtime
    assert main(args) == 0
    assert (out / "runs" / "k-1" / "run.json").stat().st_mtime == mtime


@pytest.mark.skipif(
    not {"base", "base-low"} <= set(available_models()), reason="rate points not shipped"
)
def test_demo_rate_curves(tmp_path) -> None:
    from icmbridge.workflows.demo import RATE_POINTS, run_demo, summary_table

    out = tmp_path / "demo"
    results = run_demo(out, quick=True, n_images=1, finetune_steps=0, curves=True)
    shipped = [m for m in RATE_POINTS if m in available_models()]
    ours = results["rate_curves"]["ours"]
    assert [p["model"] for p in ours] == shipped
    # the rate points are ordered by rate, and JPEG has a point at each of them
    assert [p["bpp"] for p in ours] == sorted(p["bpp"] for p in ours)
    assert len(results["rate_curves"]["jpeg"]) == len(shipped)
    assert set(results["bd_rate"]) == {"jpeg"}
    assert list(results["bd_rate"]["jpeg"]) == [
        "psnr",
        "cvvdp_jod",
        "ssimulacra2",
        "task_ap",
        "task_ap50",
    ]
    assert set(results["bd_rate_ci"]["jpeg"]) == set(results["bd_rate"]["jpeg"])
    assert all(p["cvvdp_jod"] is not None for p in ours)
    summary = summary_table(results)
    assert "BD-rate of our rate curve vs jpeg: PSNR" in summary and ", JOD " in summary
    saved = json.loads((out / "results.json").read_text())
    assert saved["rate_curves"] == results["rate_curves"]
    assert "BD-rate" in (out / "report" / "index.html").read_text()


def test_ablate_runs_an_identical_configuration_once(tmp_path, tiny_model_dir) -> None:
    out = tmp_path / "abl"
    args = ["ablate", "--base", str(tiny_model_dir), "-o", str(out), "--steps", "1"]
    args += ["--images", "1", "--only", "lambda", "--only", "layers", "--threads", "1"]
    assert main(args) == 0
    from icmbridge.workflows.ablate import load_ablation

    rows = {r["config"]: r for r in load_ablation(out)["rows"]}
    # K = 2 is the default layer choice and λ_a = 1e-3 the default weight: one experiment
    assert rows["K = 2"]["same_as"] == "λ_a = 0.001"
    assert rows["K = 2"]["mean"] == rows["λ_a = 0.001"]["mean"]
    assert not (out / "runs" / "k-2").exists() and (out / "runs" / "k-1").is_dir()
    assert "K = 2 (= λ_a = 0.001)" in (out / "table1.md").read_text()
    report = json.loads((out / "results.json").read_text())
    assert "k-2" not in report["codecs"] and "λ-a-0-001" in report["codecs"]
    assert [t["lambda_a"] for t in report["tradeoff"]] == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]


def test_ablation_table_states_the_seed_spread() -> None:
    from icmbridge.workflows.ablate import REPEATS, TABLE1, markdown

    def row(config: str, ap50: float, psnr: float) -> dict:
        return {"config": config, "part": "table1", "mean": {"task_ap50": ap50, "psnr": psnr}}

    results = {"base": "base", "steps": 4, "seed": 0, "threads": 1, "set": "s"}
    results["rows"] = [row("Base codec", 0.4, 22.0), row(TABLE1[0][0], 0.5, 22.5)]
    results["rows"][0]["part"] = "base"
    assert "Chance alone" not in markdown(results)  # no repeat row: nothing to say
    results["rows"].append(row(REPEATS[0], 0.47, 22.504))
    assert "over 2 seeds spans 0.030 in AP50 and 0.004 dB in PSNR" in markdown(results)
    results["rows"].append(row(REPEATS[1], 0.52, 22.499))
    table = markdown(results)
    assert "over 3 seeds spans 0.050 in AP50 and 0.005 dB in PSNR" in table
    assert "| +25.0% |" in table  # 0.5 against the base's 0.4


def test_summary_shows_bd_rate_intervals() -> None:
    from icmbridge.workflows.demo import summary_table

    results = {
        "codecs": {},
        "bd_rate": {"jpeg": {"psnr": -12.34, "task_ap50": None}},
        "bd_rate_ci": {"jpeg": {"psnr": [-20.0, -5.0], "task_ap50": None}},
    }
    table = summary_table(results)
    assert "vs jpeg: PSNR -12.3% [-20.0, -5.0], AP50 —" in table
    assert "share no quality range" in table
