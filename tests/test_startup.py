"""``icmbridge --help``, ``info`` and argument errors answer without importing torch or CompressAI.

Each case runs in a fresh interpreter (what a user's shell starts) and reports which heavy
packages ended up in ``sys.modules`` once ``main`` returned or exited.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "compressai", "torchvision", "numpy", "PIL")
PROBE = """
import json, sys
from icmbridge.commands import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": [m for m in HEAVY if m in sys.modules]}), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def _probe(*argv: str) -> tuple[int, list[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["code"], report["loaded"], proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["train", "--help"],
        ["finetune", "--help"],
        ["demo", "--help"],
        ["compress", "--help"],
        ["serve", "--help"],
    ],
)
def test_help_imports_no_torch(argv: list[str]) -> None:
    code, loaded, out = _probe(*argv)
    assert code == 0, out
    assert loaded == [], f"{' '.join(argv)} imported {loaded}"


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-command"],
        ["compress"],  # IMAGE missing
        ["compress", "x.png", "--tile", "40"],
        ["demo", "--task", "none"],
        ["finetune", "--out", "r", "--preset", "nope"],
    ],
)
def test_argument_errors_import_no_torch(argv: list[str]) -> None:
    code, loaded, out = _probe(*argv)
    assert code == 2, out
    assert "error:" in out
    assert loaded == [], f"{' '.join(argv)} imported {loaded}"


def test_info_imports_no_torch(tmp_path, photo) -> None:
    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec

    path = tmp_path / "photo.icmb"
    path.write_bytes(bitstream.encode(load_codec("base"), photo))
    code, loaded, out = _probe("info", str(path))
    assert code == 0, out
    assert "checksum ok" in out
    assert "torch" not in loaded and "compressai" not in loaded, loaded
    code, loaded, out = _probe("info", str(tmp_path / "missing.icmb"))
    assert code == 2 and "no such file" in out
    assert "torch" not in loaded


def test_help_defaults_agree_with_the_library() -> None:
    from icmbridge.codec import tiling
    from icmbridge.commands import options
    from icmbridge.metrics import people

    assert options.DEFAULT_DISPLAY == people.DEFAULT_DISPLAY
    assert (options.DEFAULT_TILE, options.AUTO_TILE_ABOVE) == (
        tiling.DEFAULT_TILE,
        tiling.AUTO_TILE_ABOVE,
    )
