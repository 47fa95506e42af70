"""`icmbridge compress | decompress | info` through main(argv): real files, real errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from icmbridge.commands import main


@pytest.fixture()
def png(tmp_path: Path, astronaut: np.ndarray) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(astronaut[100:190, 180:301]).save(path)
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_roundtrip_and_info(capsys, tmp_path, png, tiny_model_dir) -> None:
    model = str(tiny_model_dir)
    bits, dec = tmp_path / "photo.icmb", tmp_path / "dec.png"
    code, out, _ = _run(capsys, "compress", str(png), "-o", str(bits), "--model", model)
    assert code == 0 and "bpp" in out and str(bits) in out
    code, out, _ = _run(capsys, "info", str(bits))
    assert code == 0 and "121x90" in out and "checksum ok" in out
    code, out, _ = _run(capsys, "decompress", str(bits), "-o", str(dec), "--model", model)
    assert code == 0 and "bpp" in out
    assert Image.open(dec).size == (121, 90) and Image.open(dec).mode == "RGB"
    # default output names
    assert main(["compress", str(png), "--model", model, "--threads", "1"]) == 0
    assert png.with_suffix(".icmb").is_file()


@pytest.mark.parametrize(
    "mode, note",
    [
        ("L", "converted L"),
        ("P", "converted P"),
        ("RGBA", "alpha"),
        ("I;16", "8-bit"),
        ("CMYK", "converted CMYK"),
        ("LA", "alpha"),
    ],
)
def test_image_modes_converted_with_note(capsys, tmp_path, astronaut, tiny_model_dir, mode, note):
    rgb = Image.fromarray(astronaut[:40, :50])
    if mode == "I;16":
        im = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        assert im.mode.startswith("I;16")
    else:
        im = rgb.convert(mode)
    src = tmp_path / ("img.tif" if mode == "CMYK" else "img.png")
    im.save(src)
    code, _, err = _run(
        capsys, "compress", str(src), "-o", str(tmp_path / "a.icmb"), "--model", str(tiny_model_dir)
    )
    assert code == 0 and "note:" in err and note in err


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1)])
def test_tiny_images_roundtrip(capsys, tmp_path, tiny_model_dir, size) -> None:
    src = tmp_path / "px.png"
    Image.new("RGB", size, (200, 30, 90)).save(src)
    model = str(tiny_model_dir)
    assert main(["compress", str(src), "-o", str(tmp_path / "p.icmb"), "--model", model]) == 0
    assert (
        main(
            [
                "decompress",
                str(tmp_path / "p.icmb"),
                "-o",
                str(tmp_path / "o.png"),
                "--model",
                model,
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "o.png").size == size


def _assert_error(capsys, argv: list[str], message: str) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("error:") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_inputs(capsys, tmp_path, png, tiny_model_dir) -> None:
    m = ["--model", str(tiny_model_dir)]
    good = tmp_path / "good.icmb"
    assert main(["compress", str(png), "-o", str(good), *m]) == 0
    capsys.readouterr()
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    half_png = tmp_path / "half.png"
    half_png.write_bytes(png.read_bytes()[:200])
    empty = tmp_path / "empty.icmb"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.icmb"
    trunc.write_bytes(good.read_bytes()[:-7])
    cases = [
        (["compress", str(tmp_path / "missing.png"), *m], "no such file"),
        (["compress", str(text), "-o", str(tmp_path / "t.icmb"), *m], "not an image"),
        (["compress", str(half_png), "-o", str(tmp_path / "h.icmb"), *m], "corrupt"),
        (["compress", str(png), "-o", str(tmp_path / "nodir" / "a.icmb"), *m], "does not exist"),
        (["compress", str(png), "--model", "no-such-model"], "no model"),
        (["decompress", str(tmp_path / "missing.icmb"), *m], "no such file"),
        (["decompress", str(empty), *m], "empty"),
        (["decompress", str(trunc), *m], "truncated"),
        (["decompress", str(text), *m], "not an icmbridge"),
        (["decompress", str(good), "-o", str(tmp_path / "nodir" / "x.png"), *m], "does not exist"),
        (["decompress", str(good), "-o", str(tmp_path / "x.xyz"), *m], "suffix"),
        (["info", str(trunc)], "truncated"),
    ]
    for argv, message in cases:
        _assert_error(capsys, argv, message)


def test_wrong_model_refused_and_output_untouched(capsys, tmp_path, png, tiny_model_dir):
    import torch

    from icmbridge.codec.model import CONFIGS, ICMCodec
    from icmbridge.codec.store import save_codec

    torch.manual_seed(5)
    save_codec(ICMCodec(CONFIGS["tiny"]), tmp_path / "other")
    bits = tmp_path / "a.icmb"
    assert main(["compress", str(png), "-o", str(bits), "--model", str(tiny_model_dir)]) == 0
    out = tmp_path / "keep.png"
    out.write_bytes(b"previous content")
    _assert_error(
        capsys,
        ["decompress", str(bits), "-o", str(out), "--model", str(tmp_path / "other")],
        "written by model",
    )
    assert out.read_bytes() == b"previous content"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_help_lists_commands_and_defaults(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("compress", "decompress", "info", "train"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    assert "default: base" in capsys.readouterr().out


def test_export_run_to_model_folder(tmp_path, tiny_model_dir, capsys) -> None:
    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec

    out = tmp_path / "exported"
    assert main(["export", str(tiny_model_dir), "-o", str(out), "--note", "for tests"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    a, b = load_codec(tiny_model_dir), load_codec(out)
    assert bitstream.fingerprint(a) == bitstream.fingerprint(b)
    assert b.meta["note"] == "for tests"


def test_export_half_rounds_transforms_only_and_keeps_a_pair_readable(
    tmp_path, tiny_model_dir, photo
) -> None:
    """--half: float16 transforms, exact entropy models; a base and its finetuned decoder, both
    exported half, still share a fingerprint and one bitstream; pixels move by rounding only."""
    import copy

    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec, save_codec

    full = load_codec(tiny_model_dir)
    human = copy.deepcopy(full)
    with torch.no_grad():
        human.g_s[0].weight.mul_(1.1)
        human.g_s[6].bias.add_(0.5)
    save_codec(human, tmp_path / "human-full")
    assert main(["export", str(tiny_model_dir), "-o", str(tmp_path / "base"), "--half"]) == 0
    human_args = ["export", str(tmp_path / "human-full"), "-o", str(tmp_path / "human")]
    assert main([*human_args, "--half"]) == 0
    size = (tmp_path / "base" / "model.safetensors").stat().st_size
    transforms = sum(
        4 * v.numel() for k, v in full.state_dict().items() if k.startswith(("g_", "h_"))
    )
    assert size < (tiny_model_dir / "model.safetensors").stat().st_size - 0.45 * transforms
    base, human_half = load_codec(tmp_path / "base"), load_codec(tmp_path / "human")
    assert base.meta["stored_as"] == "float16 transforms"
    for (name, a), b in zip(full.state_dict().items(), base.state_dict().values(), strict=True):
        assert b.dtype == a.dtype, name
        if name.startswith(("entropy_bottleneck.", "gaussian_conditional.")):
            assert torch.equal(a, b), name  # exact: the CDF tables match what they came from
        elif a.is_floating_point():
            assert torch.equal(b, a.half().float()), name
    assert bitstream.fingerprint(base) == bitstream.fingerprint(human_half)
    data = bitstream.encode(base, photo)
    assert bitstream.encode(human_half, photo) == data
    x_full = bitstream.decode(full, bitstream.encode(full, photo))
    x_half = bitstream.decode(base, data)
    assert (x_half - x_full).abs().mean() < 2e-3  # rounding, not a different model
    assert not torch.equal(bitstream.decode(human_half, data), x_half)


def test_every_command_module_is_registered() -> None:
    import pkgutil

    from icmbridge import commands

    modules = {m.name for m in pkgutil.iter_modules(commands.__path__)} - {"options"}
    assert modules == {f.__module__.rpartition(".")[2] for f in commands.COMMANDS}
