"""The speed and memory benchmarks run on what ships: once each, tiny, on the default model.

They measure the shipped model against CompressAI's own class for its architecture; a model
whose architecture changes must not break them silently again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from icmbridge.codec.store import available_models

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif("base" not in available_models(), reason="weights/base not shipped")
def test_codec_speed_runs_on_the_default_model(tmp_path) -> None:
    out = tmp_path / "speed.json"
    _run("codec_speed.py", "--runs", "1", "--reps", "1", "--size", "128", "--threads", "1",
         "--out", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    from icmbridge.codec.store import read_config, resolve_model_path

    assert result["arch"] == read_config(resolve_model_path("base")).get("arch", "icm")
    (row,) = result["threads"]
    assert row["same_latent_strings"], "ours and CompressAI's latent strings differ"
    assert row["encode_ratio_median"] > 0 and row["decode_ratio_median"] > 0


@pytest.mark.skipif("base" not in available_models(), reason="weights/base not shipped")
def test_memory_runs_on_the_default_model(tmp_path) -> None:
    out = tmp_path / "memory.json"
    _run("memory.py", "--sizes", "0.05", "--models", "base", "--threads", "1", "--out", str(out))
    (model,) = json.loads(out.read_text())["models"]
    (row,) = model["rows"]
    assert row["size"] == "256x192" and row["bytes"] > 0
    for name in ("compress", "decompress"):
        assert row[name]["peak_rss_mib"] > model["info_mib"] > 0


def test_startup_runs(tmp_path) -> None:
    out = tmp_path / "startup.json"
    _run("startup.py", "--reps", "1", "--out", str(out))
    result = json.loads(out.read_text())
    assert set(result["median_s"]) == {
        "icmbridge --help",
        "icmbridge compress (argument error)",
        "import torch",
    }
