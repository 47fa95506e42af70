"""PatchGAN decoder finetuning: invariants of the paper's method and the command's contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from quick import FINETUNE
from safetensors.torch import load_file

from icmbridge.codec import bitstream
from icmbridge.codec.store import load_codec
from icmbridge.commands import main
from icmbridge.errors import InputError
from icmbridge.train.finetune import select_layers
from icmbridge.train.runtime import Checkpoints

QUICK = FINETUNE


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_model_dir) -> Path:
    run = tmp_path_factory.mktemp("ft") / "human"
    assert (
        main(
            [
                "finetune",
                "--base",
                str(tiny_model_dir),
                "--out",
                str(run),
                "--steps",
                "3",
                "--checkpoint-every",
                "3",
                *QUICK,
            ]
        )
        == 0
    )
    return run


def test_only_selected_parameters_change(finetuned, tiny_model_dir) -> None:
    base = load_file(tiny_model_dir / "model.safetensors")
    human = load_file(Checkpoints(finetuned).last / "model.safetensors")
    assert base.keys() == human.keys()
    changed = {k for k in base if not torch.equal(base[k], human[k])}
    assert changed, "finetuning changed nothing"
    assert all(k.startswith(("g_s.0.", "g_s.1.", "g_s.2.", "g_s.3.")) for k in changed), changed
    assert any(k.startswith("g_s.0.") for k in changed)


def test_bitstreams_identical_and_cross_decodable(finetuned, tiny_model_dir, photo) -> None:
    base, human = load_codec(tiny_model_dir), load_codec(finetuned)
    data = bitstream.encode(base, photo)
    assert bitstream.encode(human, photo) == data
    assert bitstream.fingerprint(human) == bitstream.fingerprint(base)
    assert bitstream.decode(human, data).shape == photo.shape
    # same parameter count and layer shapes: no extra inference cost
    assert sum(p.numel() for p in human.parameters()) == sum(p.numel() for p in base.parameters())
    assert [m.__class__ for m in human.g_s] == [m.__class__ for m in base.g_s]
    assert human.meta["base_fingerprint"] == bitstream.fingerprint(base).hex()


def test_layer_selection(tiny_codec) -> None:
    assert select_layers(tiny_codec, "first:1") == ["g_s.0", "g_s.1"]
    assert select_layers(tiny_codec, "first:4")[-1] == "g_s.6"
    assert select_layers(tiny_codec, "g_s.0.*") == ["g_s.0.bias", "g_s.0.weight"]
    for bad, message in [
        ("first:5", "1..4"),
        ("first:0", "1..4"),
        ("first:x", "integer"),
        ("g_a.*", "decoder"),
        ("nothing", "matches no"),
    ]:
        with pytest.raises(InputError, match=message):
            select_layers(tiny_codec, bad)


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--patch-size", "128"], "larger than the training crop"),
        (["--lambda-a", "-1"], "lambda-a"),
        (["--lambda-a", "nan"], "lambda-a"),
        (["--layers", "first:9"], "synthesis layers"),
    ],
)
def test_bad_configuration_refused(tmp_path, capsys, tiny_model_dir, bad, message) -> None:
    code = main(
        [
            "finetune",
            "--base",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "r"),
            "--steps",
            "1",
            *QUICK,
            *bad,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and message in err


def test_presets_fill_unset_options_only(tmp_path, tiny_model_dir) -> None:
    run = tmp_path / "li"
    assert (
        main(
            [
                "finetune",
                "--base",
                str(tiny_model_dir),
                "--out",
                str(run),
                "--steps",
                "1",
                "--preset",
                "li",
                *QUICK[2:-2],
            ]
        )
        == 0
    )  # QUICK minus its --preset and --lr
    import json

    cfg = json.loads((run / "run.json").read_text())
    assert cfg["lambda_a"] == 0.01  # given explicitly: kept
    assert cfg["lr"] == 2.5e-5 and cfg["lr_d"] == 5e-5  # from the preset


def test_resume_is_exact(tmp_path, tiny_model_dir) -> None:
    args = [
        "finetune",
        "--base",
        str(tiny_model_dir),
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
        *QUICK,
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    # the same run, rolled back to its first checkpoint (as if killed there) and resumed
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    import shutil

    b = tmp_path / "b" / "checkpoints"
    shutil.rmtree(b / "step-0000004")
    (b / "last").unlink()
    (b / "last").symlink_to("step-0000002")
    assert main(["finetune", "--out", str(tmp_path / "b"), "--resume"]) == 0
    wa = load_file(Checkpoints(tmp_path / "a").last / "model.safetensors")
    wb = load_file(Checkpoints(tmp_path / "b").last / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # every start is recorded with what the bits depend on beyond the settings
    import json

    starts = json.loads((tmp_path / "b" / "run.json").read_text())["starts"]
    assert len(starts) == 2
    assert all(s["threads"] == torch.get_num_threads() and s["device"] == "cpu" for s in starts)


@pytest.mark.slow
def test_two_process_ddp_finetune_matches_single_process(tmp_path, tiny_model_dir) -> None:
    """torchrun with 2 gloo processes follows the 1-process run with the same global batch
    (D without batch statistics, whose per-process batches would differ by design)."""
    import os
    import subprocess
    import sys

    args = [
        "finetune",
        "--base",
        str(tiny_model_dir),
        "--steps",
        "3",
        "--checkpoint-every",
        "3",
        *QUICK,
        "--d-norm",
        "none",
    ]
    single = tmp_path / "single"
    subprocess.run(
        [sys.executable, "-m", "icmbridge.cli", *args, "--out", str(single)],
        check=True,
        capture_output=True,
    )
    ddp = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "icmbridge.cli",
            *args,
            "--out",
            str(ddp),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    base = load_file(tiny_model_dir / "model.safetensors")
    a = load_file(Checkpoints(single).last / "model.safetensors")
    b = load_file(Checkpoints(ddp).last / "model.safetensors")
    keys = [k for k in a if not torch.equal(a[k], base[k])]
    assert keys
    step = torch.cat([(a[k] - base[k]).flatten() for k in keys]).norm()
    gap = torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm()
    assert gap < 0.02 * step, (gap.item(), step.item())


def test_latent_conditioned_discriminator_uses_the_latent() -> None:
    from icmbridge.gan import LatentConditionedDiscriminator, latent_patches

    torch.manual_seed(0)
    disc = LatentConditionedDiscriminator(24, 4, ndf=8, n_layers=2, norm="spectral").eval()
    y_hat = torch.round(torch.randn(2, 24, 4, 4) * 2)
    boxes = torch.tensor([[[0, 0], [16, 8]], [[32, 32], [5, 40]]])
    lat = latent_patches(y_hat, 16, boxes, 24)
    assert lat.shape == (4, 24, 24, 24)
    # nearest upsampling: the patch at (16, 8) of image 0 starts in latent cell (1, 0)
    assert torch.equal(lat[1, :, 0, 0], y_hat[0, :, 1, 0])
    assert torch.equal(lat[1, :, 0, 8], y_hat[0, :, 1, 1])
    x = torch.rand(4, 3, 24, 24)
    out = disc(x, lat)
    assert not torch.allclose(out, disc(x, torch.zeros_like(lat)))  # the latent matters
    out.sum().backward()
    assert disc.project[0].weight.grad.abs().sum() > 0  # and D learns how to read it
    with pytest.raises(InputError, match="needs ŷ"):
        disc(x)


def test_finetune_with_latent_conditioned_discriminator(tmp_path, tiny_model_dir, photo) -> None:
    run = tmp_path / "cond"
    args = ["finetune", "--base", str(tiny_model_dir), "--steps", "2", "--checkpoint-every", "1"]
    assert main([*args, "--out", str(run), "--d-cond", "latent", *QUICK]) == 0
    ckpt = Checkpoints(run).last
    state = torch.load(ckpt / "training_state.pt", weights_only=False)
    assert any(k.startswith("project.") for k in state["discriminator"])
    base, human = load_codec(tiny_model_dir), load_codec(run)
    assert bitstream.encode(human, photo) == bitstream.encode(base, photo)
    assert main(["finetune", "--out", str(run), "--resume", "--steps", "3"]) == 0


def test_last_layers_selection(tiny_codec) -> None:
    layers = tiny_codec.synthesis_layers()
    assert select_layers(tiny_codec, "last:1") == layers[-1]
    assert select_layers(tiny_codec, "last:4") == select_layers(tiny_codec, "first:4")
    with pytest.raises(InputError, match="1..4"):
        select_layers(tiny_codec, "last:5")


def test_joint_batch_lets_batchnorm_see_what_separate_batches_hide() -> None:
    """Fake patches that are the real ones at twice the contrast: a BatchNorm D (bias-free
    first conv, LeakyReLU: both scale-equivariant) fed two separate batches normalises the
    difference away; fed one joint batch it cannot."""
    from icmbridge.gan import PatchDiscriminator, init_weights_normal
    from icmbridge.train.finetune import judge

    torch.manual_seed(0)
    # weights large enough that BatchNorm's eps does not matter
    disc = init_weights_normal(PatchDiscriminator(ndf=8, norm="batch"), std=0.5).train()
    real = torch.rand(4, 3, 32, 32)
    fake = real * 2
    r_sep, f_sep = judge(disc, real, fake, (), joint=False)
    torch.testing.assert_close(r_sep, f_sep, atol=1e-3, rtol=1e-3)  # blind to it
    r_joint, f_joint = judge(disc, real, fake, (), joint=True)
    assert (r_joint - f_joint).abs().mean() > 1e-3


def test_adaptive_weight_balances_the_gradients() -> None:
    from icmbridge.train.finetune import adaptive_weight

    w = torch.ones(3, 3, requires_grad=True)
    rec, adv = 2.0 * (w**2).sum(), 8.0 * (w**2).sum()  # gradients 4w and 16w
    assert adaptive_weight(rec, adv, w, 1.0, 1e4).item() == pytest.approx(0.25)
    assert adaptive_weight(rec, adv, w, 0.5, 1e4).item() == pytest.approx(0.125)
    assert adaptive_weight(rec, adv, w, 1.0, 0.1).item() == pytest.approx(0.1)  # clipped
    assert not adaptive_weight(rec, adv, w, 1.0, 1e4).requires_grad


def test_warmup_trains_d_alone_and_keeps_the_decoder_data(tmp_path, tiny_model_dir) -> None:
    """D warm-up leaves the decoder where it was and does not shift its data: at λ_a = 0 (where
    D cannot reach the decoder) a run with warm-up ends on exactly the weights of one without.
    With λ_a > 0 D's health is checked and written to health.json and the model's metadata."""
    import json

    args = ["finetune", "--base", str(tiny_model_dir), "--steps", "2", *QUICK]
    zero = ["--lambda-a", "0", "--checkpoint-every", "2"]
    assert main([*args, *zero, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, *zero, "--d-warmup", "3", "--out", str(tmp_path / "b")]) == 0
    wa = load_file(Checkpoints(tmp_path / "a").last / "model.safetensors")
    wb = load_file(Checkpoints(tmp_path / "b").last / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    run = tmp_path / "c"
    extra = ["--d-warmup", "2", "--health-every", "1", "--health-crops", "2"]
    extra += ["--d-norm", "batch-joint", "--lambda-a-mode", "adaptive", "--lambda-a", "0.1"]
    assert main([*args, *extra, "--checkpoint-every", "1", "--out", str(run)]) == 0
    doc = json.loads((run / "health.json").read_text())
    phases = [c["phase"] for c in doc["checks"]]
    assert phases == ["init", "warmup", "train", "train", "train"]
    assert [c["d_updates"] for c in doc["checks"]] == [0, 1, 2, 3, 4]
    assert doc["summary"]["auc_decoder_starts"] == doc["checks"][2]["auc"]
    meta = json.loads((Checkpoints(run).last / "config.json").read_text())
    assert "d_health" in json.dumps(meta)
    # the warm-up's end is a checkpoint of the untouched decoder
    base = load_file(tiny_model_dir / "model.safetensors")
    assert not (run / "checkpoints" / "step-0000000").exists() or all(
        torch.equal(base[k], v)
        for k, v in load_file(run / "checkpoints" / "step-0000000" / "model.safetensors").items()
    )
