"""Reliability: crash-safe finetuning, full disks, hostile inputs, the determinism matrix."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image
from quick import FINETUNE
from safetensors.torch import load_file
from sigkill import run_with_kills

from icmbridge.codec import bitstream
from icmbridge.codec.store import load_codec
from icmbridge.commands import main
from icmbridge.errors import IcmError
from icmbridge.imageio import array_to_tensor, tensor_to_array
from icmbridge.train.runtime import Checkpoints

FT_QUICK = FINETUNE


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "icmbridge.cli", *args]


@pytest.mark.slow
def test_finetune_sigkill_then_resume_matches_uninterrupted(tmp_path, tiny_model_dir) -> None:
    """SIGKILL `finetune` at random moments ≥ 5 times; resuming ends at the planned step with
    the same weights as a run that was never interrupted."""
    steps = ["--steps", "40", "--checkpoint-every", "2"]
    common = ["--base", str(tiny_model_dir), *steps, *FT_QUICK]
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    subprocess.run(_cli("finetune", "--out", str(ref), *common), check=True, capture_output=True)
    full = time.perf_counter() - t0
    run = tmp_path / "killed"
    kills = run_with_kills(
        _cli("finetune", "--out", str(run), *common),
        _cli("finetune", "--out", str(run), "--resume"),
        run,
        max_delay=full / 80,  # at most ~2 steps: ≥ 10 attempts however fast the steps are
        seed=11,
    )
    assert kills >= 5
    last = Checkpoints(run).last
    assert last is not None and last.name == "step-0000040"
    a = load_file(Checkpoints(ref).last / "model.safetensors")
    b = load_file(last / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    load_codec(run)  # the final checkpoint loads


def test_full_disk_keeps_previous_checkpoint(tmp_path, tiny_model_dir, monkeypatch) -> None:
    run = tmp_path / "run"
    args = [
        "finetune",
        "--base",
        str(tiny_model_dir),
        "--out",
        str(run),
        "--steps",
        "2",
        "--checkpoint-every",
        "1",
        *FT_QUICK,
    ]
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 2:  # the second checkpoint hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", failing_save)
    code = main(args)
    assert code == 2
    last = Checkpoints(run).last
    assert last is not None and last.name == "step-0000001"
    load_codec(last)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".step")]


def test_unwritable_output_is_a_clear_error(tmp_path, tiny_model_dir, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(
        [
            "finetune",
            "--base",
            str(tiny_model_dir),
            "--out",
            str(blocker / "run"),
            "--steps",
            "1",
            *FT_QUICK,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:"), err


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_follow_the_umask(tmp_path, tiny_model_dir, astronaut, umask) -> None:
    """Atomic outputs go through private temporary files; the results must not stay 0600."""
    src = tmp_path / "in.png"
    Image.fromarray(astronaut[:64, :64]).save(src)
    old = os.umask(umask)
    try:
        assert main(["compress", str(src), "-o", str(tmp_path / "a.icmb"), "--model",
                     str(tiny_model_dir)]) == 0  # fmt: skip
        assert main(["export", str(tiny_model_dir), "-o", str(tmp_path / "m")]) == 0
    finally:
        os.umask(old)
    for f in (
        tmp_path / "a.icmb",
        tmp_path / "m" / "model.safetensors",
        tmp_path / "m" / "config.json",
    ):
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o777 & ~umask


def test_checkpoint_error_names_intact_checkpoint(tmp_path, tiny_codec, monkeypatch) -> None:
    """An unwritable checkpoint folder (simulated: tests run as root, which ignores modes)."""
    import tempfile

    ckpts = Checkpoints(tmp_path / "run")
    ckpts.save(1, tiny_codec, {}, {"loop": {"step": 1}})

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(IcmError, match="previous checkpoint is intact"):
        ckpts.save(2, tiny_codec, {}, {"loop": {"step": 2}})
    assert ckpts.last.name == "step-0000001"


# ---------------------------------------------------------------------------- input matrix


def test_exif_orientation_applied(tmp_path, tiny_model_dir, astronaut) -> None:
    im = Image.fromarray(astronaut[:40, :70])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    src = tmp_path / "rot.jpg"
    im.save(src, exif=exif.tobytes())
    assert (
        main(["compress", str(src), "-o", str(tmp_path / "r.icmb"), "--model", str(tiny_model_dir)])
        == 0
    )
    h = bitstream.parse_header((tmp_path / "r.icmb").read_bytes())
    assert (h.width, h.height) == (40, 70)


def test_huge_image_refused_before_decoding(tmp_path, tiny_model_dir, capsys) -> None:
    src = tmp_path / "huge.png"
    Image.new("RGB", (8256, 8192), (10, 20, 30)).save(src)  # one 64-pixel column over 8192²
    out = tmp_path / "h.icmb"
    assert main(["compress", str(src), "-o", str(out), "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert "8256x8192" in err and "ICMBRIDGE_MAX_PIXELS" in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["truncated-jpeg", "garbage-png", "zero-bytes"])
def test_corrupt_images(tmp_path, tiny_model_dir, astronaut, capsys, kind) -> None:
    src = tmp_path / ("x.jpg" if "jpeg" in kind else "x.png")
    if kind == "truncated-jpeg":
        Image.fromarray(astronaut).save(src, quality=90)
        src.write_bytes(src.read_bytes()[:3000])
    elif kind == "garbage-png":
        src.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    else:
        src.write_bytes(b"")
    out = tmp_path / "x.icmb"
    assert main(["compress", str(src), "-o", str(out), "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not out.exists()


# ---------------------------------------------------------------------------- determinism

_MATRIX_SCRIPT = """
import sys, hashlib, torch
torch.set_num_threads(int(sys.argv[2]))
from icmbridge.codec import bitstream
from icmbridge.codec.store import load_codec
from icmbridge.imageio import tensor_to_array
codec = load_codec(sys.argv[1])
for path in sys.argv[3:]:
    x = bitstream.decode(codec, open(path, 'rb').read())
    print(hashlib.sha256(tensor_to_array(x).tobytes()).hexdigest())
"""


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(tensor_to_array(x).tobytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["base", "human"])
def test_determinism_matrix(tmp_path, model, astronaut) -> None:
    """Shipped decoders: other process, 1 vs 2 threads, batch of 1 vs 4, repeated: identical."""
    from icmbridge.codec.store import available_models

    if model not in available_models():
        pytest.skip(f"weights/{model} not shipped yet")
    codec = load_codec(model)
    crops = [
        astronaut[y : y + 192, x : x + 256] for y, x in [(0, 0), (100, 50), (300, 200), (256, 256)]
    ]
    batch = torch.cat([array_to_tensor(c) for c in crops])
    files = []
    for i, c in enumerate(crops):
        data = bitstream.encode(codec, array_to_tensor(c))
        f = tmp_path / f"{i}.icmb"
        f.write_bytes(data)
        files.append(f)
    # batch of 4 through the model's own batched path gives the same strings as one by one
    with torch.no_grad():
        out = codec.compress(batch)
    singles = [codec.compress(array_to_tensor(c)) for c in crops]
    assert out["strings"][0] == [s["strings"][0][0] for s in singles]
    assert out["strings"][1] == [s["strings"][1][0] for s in singles]
    batched = codec.decompress(out["strings"], out["shape"])["x_hat"]
    here = [_digest(bitstream.decode(codec, f.read_bytes())) for f in files]
    assert here == [_digest(bitstream.decode(codec, f.read_bytes())) for f in files]  # repeated
    assert here == [_digest(batched[i : i + 1]) for i in range(4)]
    for threads in (1, 2):
        res = subprocess.run(
            [sys.executable, "-c", _MATRIX_SCRIPT, model, str(threads), *map(str, files)],
            check=True,
            capture_output=True,
            text=True,
        )
        assert res.stdout.split() == here, f"{threads} thread(s) decode differently"
