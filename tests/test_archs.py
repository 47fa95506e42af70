"""Every architecture, imported as a CompressAI checkpoint: coded, finetuned, decoded like ours."""

from __future__ import annotations

import re
from pathlib import Path

import compressai.models as cm
import pytest
import torch
from quick import FINETUNE

from icmbridge.codec import bitstream
from icmbridge.codec.archs import ARCHITECTURES, codec_class
from icmbridge.codec.model import CONFIGS, ICMCodec
from icmbridge.codec.store import available_models, load_codec
from icmbridge.commands import main

#: The class a user of each architecture trains: CompressAI's own (ours for icm).
PEERS = {
    "icm": lambda: ICMCodec(CONFIGS["tiny"]),
    "bmshj2018-factorized": lambda: cm.FactorizedPrior(16, 24),
    "bmshj2018-hyperprior": lambda: cm.ScaleHyperprior(16, 24),
    "mbt2018-mean": lambda: cm.MeanScaleHyperprior(16, 24),
    "mbt2018": lambda: cm.JointAutoregressiveHierarchicalPriors(16, 24),
    "cheng2020-anchor": lambda: cm.Cheng2020Anchor(16),
    "cheng2020-attn": lambda: cm.Cheng2020Attention(16),
}
#: How each checkpoint is written: the layouts CompressAI users have on disk.
LAYOUTS = {
    "icm": "bare",
    "bmshj2018-factorized": "legacy",
    "bmshj2018-hyperprior": "module",
    "mbt2018-mean": "training",
    "mbt2018": "training-no-cdf",
    "cheng2020-anchor": "training",
    "cheng2020-attn": "module",
}


def _legacy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Entropy-bottleneck keys as older CompressAI releases wrote them (``_bias0``, ...)."""
    names = {"biases": "_bias", "matrices": "_matrix", "factors": "_factor"}
    out = {}
    for key, value in state.items():
        m = re.match(r"(entropy_bottleneck)\.(biases|matrices|factors)\.(\d+)$", key)
        out[f"{m[1]}.{names[m[2]]}{m[3]}" if m else key] = value
    return out


def write_checkpoint(arch: str, path: Path, seed: int = 0, layout: str | None = None) -> Path:
    torch.manual_seed(seed)
    model = PEERS[arch]().eval()
    with torch.no_grad():  # latents of a trained codec's magnitude: most symbols nonzero
        last = [c for c in model.g_a.children() if isinstance(c, torch.nn.Conv2d)][-1]
        gain = 4 / float(model.g_a(torch.rand(1, 3, 128, 128)).std())
        last.weight.mul_(gain)
        last.bias.mul_(gain)
    layout = layout or LAYOUTS[arch]
    if layout != "training-no-cdf":
        model.update(force=True)
    state = model.state_dict()
    if layout == "legacy":
        state = _legacy(state)
    if layout == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    if layout.startswith("training"):
        torch.save({"epoch": 3, "state_dict": state, "loss": torch.tensor(1.0)}, path)
    else:
        torch.save(state, path)
    return path


def import_model(arch: str, tmp: Path) -> Path:
    ckpt = write_checkpoint(arch, tmp / f"{arch}.pth.tar")
    assert main(["import", "--arch", arch, str(ckpt), "-o", str(tmp / arch)]) == 0
    return tmp / arch


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_quantized_latent_is_the_decoded_latent(arch: str, tmp_path: Path, photo) -> None:
    """Finetuning's decoder input equals, element for element, ŷ decoded from real bytes."""
    codec = load_codec(import_model(arch, tmp_path))
    data = bitstream.encode(codec, photo)
    h = bitstream.parse_header(data)
    start = h.payload_offset
    z, y = data[start : start + h.z_length], data[start + h.z_length : -4]
    shape = codec.latent_shape(h.height, h.width)
    decoded = codec.latent_from_strings(codec.strings_from_container(z, y, shape), shape)
    latent = codec.quantized_latent(photo)
    assert latent.dtype == decoded.dtype == torch.float32
    assert torch.equal(latent, decoded)
    assert latent.abs().mean() > 1  # real symbols were coded, not a stream of zeros
    # and it is the image the decoder draws
    x_hat = bitstream.decode(codec, data)
    expect = codec.synthesize(latent, tuple(photo.shape[-2:])).clamp(0, 1)
    assert torch.allclose(x_hat, expect, atol=1e-5)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_import_finetune_same_bytes_two_decoders(arch: str, tmp_path: Path, photo) -> None:
    base_dir = import_model(arch, tmp_path)
    base = load_codec(base_dir)
    assert base.arch == arch
    data = bitstream.encode(base, photo)
    assert bitstream.parse_header(data).arch == arch

    run = tmp_path / "human"
    argv = ["finetune", "--base", str(base_dir), "--out", str(run), "--steps", "3"]
    assert main([*argv, "--checkpoint-every", "3", "--layers", "first:1", *FINETUNE]) == 0
    human = load_codec(run)
    assert human.arch == arch
    assert bitstream.fingerprint(human) == bitstream.fingerprint(base)
    assert bitstream.encode(human, photo) == data  # one bitstream ...
    x_base = bitstream.decode(base, data)
    x_human = bitstream.decode(human, data)  # ... read by the human decoder too
    assert x_human.shape == photo.shape
    assert not torch.equal(x_base, x_human)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = bitstream.decode(human, data), bitstream.encode(base, photo)
        torch.set_num_threads(2)
        two = bitstream.decode(human, data), bitstream.encode(base, photo)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[0], x_human)
    assert one[1] == two[1] == data


def test_layers_count_upsampling_stages(tmp_path: Path, capsys) -> None:
    cheng = codec_class("cheng2020-attn")(N=16)
    stages = cheng.synthesis_layers()
    assert len(stages) == 4
    # attention and residual blocks at the latent's resolution belong to the first stage
    assert stages[0] == ["g_s.0", "g_s.1", "g_s.2", "g_s.3"]
    assert stages[-1] == ["g_s.9"]
    assert ICMCodec(CONFIGS["tiny"]).synthesis_layers()[0] == ["g_s.0", "g_s.1"]
    folder = import_model("cheng2020-anchor", tmp_path)
    assert main(["layers", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "first:1  g_s.0 g_s.1 g_s.2" in out and "first:4  g_s.7" in out
    assert "g_s.1.subpel_conv.0.weight" in out


def test_fingerprint_covers_the_context_model_not_the_synthesis() -> None:
    codec = codec_class("mbt2018")(16, 24).eval()
    codec.update(force=True)
    names = [n for n, _ in codec.fingerprint_tensors()]
    assert any(n.startswith("context_prediction.") for n in names)
    assert any(n.startswith("entropy_parameters.") for n in names)
    assert not any(n.startswith("g_s.") for n in names)
    fp = bitstream.fingerprint(codec)
    with torch.no_grad():
        codec.g_s[0].weight.add_(1)
    assert bitstream.fingerprint(codec) == fp
    with torch.no_grad():
        codec.entropy_parameters[0].weight.add_(1e-3)
    assert bitstream.fingerprint(codec) != fp


def test_other_architecture_refused_naming_both(tmp_path: Path, photo) -> None:
    a = load_codec(import_model("mbt2018-mean", tmp_path))
    b = load_codec(import_model("bmshj2018-hyperprior", tmp_path))
    data = bitstream.encode(a, photo)
    from icmbridge.errors import ModelMismatchError

    with pytest.raises(ModelMismatchError) as err:
        bitstream.decode(b, data)
    msg = str(err.value)
    assert bitstream.fingerprint(a).hex() in msg and bitstream.fingerprint(b).hex() in msg
    assert "mbt2018-mean" in msg and "bmshj2018-hyperprior" in msg


def _refused(capsys, argv: list[str], out: Path) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not out.exists()
    return err[0]


def test_bad_checkpoints_refused_with_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    cheng = write_checkpoint("cheng2020-anchor", tmp_path / "cheng.pth")
    msg = _refused(capsys, ["import", "--arch", "mbt2018", str(cheng), "-o", str(out)], out)
    assert "does not fit mbt2018" in msg and "looks like a cheng2020-anchor" in msg

    mean = write_checkpoint("mbt2018-mean", tmp_path / "mean.pth", layout="bare")
    argv = ["import", "--arch", "bmshj2018-hyperprior", str(mean), "-o", str(out)]
    assert "size mismatch" in _refused(capsys, argv, out)

    state = torch.load(mean, weights_only=True)
    del state["h_a.2.weight"]
    torch.save(state, tmp_path / "missing.pth")
    argv = ["import", "--arch", "mbt2018-mean", str(tmp_path / "missing.pth"), "-o", str(out)]
    assert "h_a.2.weight" in _refused(capsys, argv, out)

    state = torch.load(mean, weights_only=True)
    state["g_s.0.weight"] = torch.zeros(3, 3, 5, 5)
    torch.save(state, tmp_path / "shape.pth")
    argv = ["import", "--arch", "mbt2018-mean", str(tmp_path / "shape.pth"), "-o", str(out)]
    assert "g_s.0.weight" in _refused(capsys, argv, out)

    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    argv = ["import", "--arch", "mbt2018", str(tmp_path / "notes.txt"), "-o", str(out)]
    assert "not a PyTorch checkpoint" in _refused(capsys, argv, out)

    argv = ["import", "--arch", "no-such-arch", str(mean), "-o", str(out)]
    assert "unknown architecture" in _refused(capsys, argv, out)

    argv = ["import", "--arch", "torch.nn:Linear", str(mean), "-o", str(out)]
    assert "CompressionModel" in _refused(capsys, argv, out)


class UserMeanScale(cm.MeanScaleHyperprior):
    """A user's own subclass, as they write them: CompressAI's model with a tweak."""

    def __init__(self, N: int, M: int, **kwargs) -> None:
        super().__init__(N, M, **kwargs)
        self.user_flag = True


def test_user_subclass_import(tmp_path: Path, photo) -> None:
    torch.manual_seed(0)
    model = UserMeanScale(16, 24).eval()
    model.update(force=True)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "user.pth")
    arch = f"{__name__}:UserMeanScale"
    out = tmp_path / "user"
    assert main(["import", "--arch", arch, str(tmp_path / "user.pth"), "-o", str(out)]) == 0
    codec = load_codec(out)
    assert codec.arch == arch and isinstance(codec, UserMeanScale) and codec.user_flag
    data = bitstream.encode(codec, photo)
    assert bitstream.parse_header(data).arch == arch
    assert bitstream.decode(codec, data).shape == photo.shape


@pytest.mark.parametrize("arch", ["cheng2020-anchor", "mbt2018-mean"])
def test_train_arch(arch: str, tmp_path: Path, photo) -> None:
    quick = ["--codec", "tiny", "--crop", "64", "--batch-size", "2", "--data", "photos"]
    quick += ["--warmup", "1", "--no-tensorboard", "--threads", "1", "--lambda-mse", "0.01"]
    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--arch", arch, "--steps", "2", "--checkpoint-every", "2"]
    assert main([*argv, *quick]) == 0
    codec = load_codec(run)
    assert codec.arch == arch and codec.config.N == 16
    data = bitstream.encode(codec, photo)
    assert bitstream.decode(codec, data).shape == photo.shape


_DECODE_IN_CHILD = """
import sys, torch
torch.set_num_threads(1)
from icmbridge.codec import bitstream
from icmbridge.codec.store import load_codec
for folder, path, out in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    x = bitstream.decode(load_codec(folder), open(path, "rb").read(), dtype=torch.uint8)
    open(out, "wb").write(x.contiguous().numpy().tobytes())
"""


@pytest.mark.slow
def test_decoding_bit_exact_across_processes_and_batches(tmp_path: Path, photo) -> None:
    import subprocess
    import sys

    other = torch.flip(photo, dims=[-1])
    args, expected = [], {}
    for arch in ARCHITECTURES:
        folder = import_model(arch, tmp_path)
        codec = load_codec(folder)
        data = bitstream.encode(codec, photo)
        (tmp_path / f"{arch}.icmb").write_bytes(data)
        x = bitstream.decode(codec, data, dtype=torch.uint8)
        expected[arch] = x.contiguous().numpy().tobytes()
        args += [str(folder), str(tmp_path / f"{arch}.icmb"), str(tmp_path / f"{arch}.raw")]
        # a batch of two codes and decodes each image as it does alone
        batch = codec.compress(torch.cat([photo, other]))
        alone = codec.compress(photo)
        assert [s[0] for s in batch["strings"]] == [s[0] for s in alone["strings"]]
        both = codec.decompress(batch["strings"], batch["shape"], tuple(photo.shape[-2:]))
        assert torch.equal(both["x_hat"][:1], bitstream.decode(codec, data))
    subprocess.run([sys.executable, "-c", _DECODE_IN_CHILD, *args], check=True, timeout=600)
    for arch in ARCHITECTURES:
        assert (tmp_path / f"{arch}.raw").read_bytes() == expected[arch], arch


TILED = ["bmshj2018-factorized", "mbt2018-mean", "mbt2018", "cheng2020-anchor", "cheng2020-attn"]


@pytest.mark.parametrize("arch", TILED)
def test_tiled_coding_where_halos_are_known(arch: str, tmp_path: Path, astronaut) -> None:
    from icmbridge.imageio import array_to_tensor

    codec = load_codec(import_model(arch, tmp_path))
    x = array_to_tensor(astronaut[20:180, 40:264])
    data = bitstream.encode(codec, x, tile=0)
    whole = bitstream.decode(codec, data, tile=0, dtype=torch.uint8).int()
    assert bitstream.encode(codec, x, tile=64) == data
    tiled = bitstream.decode(codec, data, tile=64, dtype=torch.uint8).int()
    assert (tiled - whole).abs().max() <= 1


@pytest.mark.parametrize("arch", ["cheng2020-anchor", "cheng2020-attn", "mbt2018"])
def test_halos_make_tiled_transforms_exact(arch: str, tmp_path: Path, astronaut) -> None:
    """Each stated halo covers the receptive field: tiles of the smallest size (4 latents) give
    the whole-image transforms to float rounding (the float64 hyper path to 1e-12)."""
    from icmbridge.codec.model import pad_to_multiple
    from icmbridge.codec.tiling import tiled_analysis, tiled_synthesis
    from icmbridge.imageio import array_to_tensor

    codec = load_codec(import_model(arch, tmp_path))
    x = array_to_tensor(astronaut[:320, :384])
    with torch.no_grad():
        y = codec.g_a(pad_to_multiple(x, 64))
        m, grid = y.shape[1], tuple(y.shape[-2:])
        y_tiled = tiled_analysis(codec.g_a, x, grid, m, 16, 4, codec.analysis_halo)
        assert (y_tiled - y).abs().max() < 1e-4 * y.abs().max()
        y_hat = torch.round(y)
        x_hat = codec.g_s(y_hat).clamp(0, 1)
        x_tiled = tiled_synthesis(
            codec.g_s, y_hat, tuple(x_hat.shape[-2:]), 16, 4, codec.synthesis_halo
        )
        assert (x_tiled - x_hat).abs().max() < 1e-4
        z_hat = torch.round(
            torch.randn(1, int(codec.N), 19, 37, generator=torch.Generator().manual_seed(3)) * 3
        )
        whole = codec.float64_copy("h_s")(z_hat.double())
        tiled = codec.hyper_synthesis(z_hat, whole.shape[1], torch.float64)
        # float64 summation order only (encoder and decoder both use the same fixed tiles)
        assert (tiled - whole).abs().max() < 1e-12


def test_cli_commands_take_an_imported_model(tmp_path: Path, astronaut, capsys) -> None:
    from icmbridge.imageio import save_image

    folder = import_model("mbt2018-mean", tmp_path)
    save_image(astronaut[:80, :120], tmp_path / "a.png")
    model = ["--model", str(folder), "--threads", "1"]
    assert main(["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.icmb"), *model]) == 0
    assert main(["info", str(tmp_path / "a.icmb")]) == 0
    assert "format 2, mbt2018-mean, 120x80" in capsys.readouterr().out
    assert (
        main(["decompress", str(tmp_path / "a.icmb"), "-o", str(tmp_path / "b.png"), *model]) == 0
    )
    assert (tmp_path / "b.png").is_file()


@pytest.mark.skipif(
    not {"cheng-base", "cheng-human"} <= set(available_models()),
    reason="shipped cheng2020 pair missing",
)
def test_shipped_cheng_pair_shares_one_bitstream(astronaut) -> None:
    """Shipped second architecture: its human decoder reads the base's bytes, and does better."""
    from icmbridge.imageio import array_to_tensor
    from icmbridge.metrics.fidelity import psnr

    base, human = load_codec("cheng-base"), load_codec("cheng-human")
    assert base.arch == human.arch == "cheng2020-anchor"
    assert bitstream.fingerprint(base) == bitstream.fingerprint(human)
    x = array_to_tensor(astronaut[64:320, 128:384])
    data = bitstream.encode(base, x)
    assert bitstream.encode(human, x) == data  # same encoder, same entropy models
    bpp = 8 * len(data) / (256 * 256)
    to_machine, to_people = bitstream.decode(base, data), bitstream.decode(human, data)
    assert bpp < 0.6
    assert psnr(x, to_machine) > 20
    assert not torch.equal(to_machine, to_people)
    assert psnr(x, to_people) > psnr(x, to_machine)
