"""`icmbridge demo --quick` (the main job, shortened) and `icmbridge ablate` end to end."""

from __future__ import annotations

import json

import pytest

from icmbridge.cli import main
from icmbridge.codec import bitstream
from icmbridge.codec.store import available_models, load_codec


@pytest.mark.skipif("base" not in available_models(), reason="weights/base not shipped yet")
def test_demo_quick(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "-o", str(out), "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "base" in printed and "jpeg" in printed and "report" in printed
    results = json.loads((out / "results.json").read_text())
    codecs = results["codecs"]
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
    # JPEG was coded at (or just under) the base codec's rate, image by image
    for ours, jpeg in zip(codecs["base"]["images"], codecs["jpeg"]["images"], strict=True):
        assert jpeg["bpp"] <= ours["bpp"] * 1.05 or jpeg["bpp"] < 0.3
    assert (out / "report" / "index.html").is_file()


def test_ablate_small(tmp_path, tiny_model_dir, capsys) -> None:
    out = tmp_path / "abl"
    args = ["ablate", "--base", str(tiny_model_dir), "-o", str(out), "--steps", "1"]
    args += ["--images", "2", "--only", "layers", "--threads", "1"]
    assert main(args) == 0
    table = (out / "table1.md").read_text()
    assert "Base codec" in table and "K = 4" in table
    results = json.loads((out / "results.json").read_text())
    configs = [r["config"] for r in results["table1"]]
    assert configs == ["Base codec", "K = 1", "K = 2", "K = 3", "K = 4"]
    assert results["table1"][0]["rel_task_ap50"] is None
    assert (out / "decoded" / "k-4").is_dir()
    # a finished row is not run again
    mtime = (out / "runs" / "k-1" / "run.json").stat().st_mtime
    assert main(args) == 0
    assert (out / "runs" / "k-1" / "run.json").stat().st_mtime == mtime
