"""The shared training loop: typed loop state in the on-disk format of earlier versions, old
checkpoints resumed exactly, the adversary decided once, presets defined once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from quick import FINETUNE
from safetensors.torch import load_file

from icmbridge.commands import main
from icmbridge.errors import IcmError
from icmbridge.train.base import TrainState
from icmbridge.train.finetune import FinetuneState
from icmbridge.train.loop import LoopState
from icmbridge.train.runtime import STATE_FILE, Checkpoints

# a snapshot.json's loop as a long run in results/scaling wrote it before the loop was typed
OLD_SNAPSHOT = {
    "loop": {
        "step": 18500,
        "log_w_rate": 0.0,
        "bad_steps": 0,
        "skipped": 0,
        "cpu_seconds": 9054.614834814993,
        "wall_seconds": 9772.057971069802,
    }
}


def test_train_state_reads_and_writes_an_old_snapshot_unchanged() -> None:
    state = TrainState.from_dict(OLD_SNAPSHOT["loop"])
    assert state.step == 18500 and state.cpu_seconds == 9054.614834814993
    assert state.rewarm_from is None
    # the same dict, keys in the same order: snapshot.json's text does not change
    assert json.dumps({"loop": state.to_dict()}, indent=2) == json.dumps(OLD_SNAPSHOT, indent=2)
    rewarmed = {**OLD_SNAPSHOT["loop"], "rewarm_from": 18500}
    assert TrainState.from_dict(rewarmed).to_dict() == rewarmed


def test_states_of_older_checkpoints_get_defaults() -> None:
    # a train checkpoint from before CPU time was counted
    old_train = {"step": 7, "log_w_rate": -0.3, "bad_steps": 1, "skipped": 2}
    state = TrainState.from_dict(old_train)
    assert state.to_dict() == {**old_train, "cpu_seconds": 0.0, "wall_seconds": 0.0}
    # a finetune checkpoint from before the discriminator's warm-up and health checks
    old_ft = {"step": 5, "bad_steps": 0, "skipped": 0, "collapsed": 3}
    ft = FinetuneState.from_dict(old_ft)
    assert (ft.collapsed, ft.warmup_done, ft.d_updates, ft.health, ft.warned) == (3, 0, 0, [], 0)
    health = [{"step": 0, "d_updates": 0, "phase": "train", "auc": 0.5}]
    full = {**old_ft, "warmup_done": 2, "d_updates": 7, "health": health, "warned": 1}
    assert FinetuneState.from_dict(full).to_dict() == {
        **full,
        "cpu_seconds": 0.0,
        "wall_seconds": 0.0,
    }


def test_bad_steps_are_counted_then_stop_the_run() -> None:
    state = LoopState()
    for step in range(3):
        state.count_bad_step(step, limit=3, hint="lower --lr")
    assert (state.bad_steps, state.skipped) == (3, 3)
    with pytest.raises(IcmError, match="4 steps in a row at step 9: lower --lr"):
        state.count_bad_step(9, limit=3, hint="lower --lr")


def test_config_and_presets_import_without_torch() -> None:
    code = (
        "import sys, icmbridge.train.config, icmbridge.commands.train; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ablation_rows_are_the_presets() -> None:
    from icmbridge.train.config import LOW_IMPACT, PAPER_PATCHES, PAPER_RECIPE, PRESETS
    from icmbridge.workflows.ablate import TABLE1

    rows = dict(TABLE1)
    assert PRESETS["paper"] == {**PAPER_RECIPE, **rows["3 patches 128×128"]}
    assert rows["3 patches 128×128, LI"] == {**PAPER_PATCHES, **LOW_IMPACT}
    # (--preset li is the low-impact change on the recipe's own patches, as before)
    assert PRESETS["li"] == {**PAPER_RECIPE, **LOW_IMPACT}


def test_the_adversary_is_decided_by_lambda_a() -> None:
    from icmbridge.train.adversarial import NoAdversary, PatchGAN
    from icmbridge.train.config import FinetuneConfig
    from icmbridge.train.runtime import Runtime

    rt = Runtime(0, 1, torch.device("cpu"))
    layer = torch.zeros(2, 2, requires_grad=True)
    cfg = FinetuneConfig(out="", lambda_a=0.0, ndf=8)
    control = NoAdversary.from_config(cfg, 8, rt, layer)
    assert type(control) is NoAdversary and control.d_steps == 0
    before = {k: v.clone() for k, v in control.disc.state_dict().items()}
    out = control.discriminator_step(None, 1)
    assert out["loss_d"] == 0 and torch.isnan(out["real"]).all()
    assert all(torch.equal(before[k], v) for k, v in control.disc.state_dict().items())
    assert not control.collapsed(0.0)
    gan = NoAdversary.from_config(FinetuneConfig(out="", lambda_a=1e-3, ndf=8), 8, rt, layer)
    assert isinstance(gan, PatchGAN) and gan.d_steps == 1 and gan.collapsed(0.0)
    # both save the same fields, so a checkpoint's format does not depend on λ_a
    assert control.state_dict().keys() == gan.state_dict().keys()


def _old_format(run: Path, drop: tuple[str, ...]) -> None:
    """Rewrite the run's last training state as an earlier version wrote it (keys missing)."""
    path = Checkpoints(run).last / STATE_FILE
    state = torch.load(path, weights_only=False)
    state["loop"] = {k: v for k, v in state["loop"].items() if k not in drop}
    torch.save(state, path)


def _same_weights(a: Path, b: Path) -> bool:
    wa = load_file(Checkpoints(a).last / "model.safetensors")
    wb = load_file(Checkpoints(b).last / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


TRAIN = [
    "--codec", "tiny", "--crop", "64", "--batch-size", "4", "--data", "photos",
    "--lambda-task", "0", "--lambda-mse", "0.01", "--task", "none", "--warmup", "2",
    "--no-tensorboard", "--threads", "1", "--target-bpp", "0.5", "--steps", "4",
    "--checkpoint-every", "2",
]  # fmt: skip


def test_train_resumes_an_old_format_checkpoint_exactly(tmp_path) -> None:
    assert main(["train", "--out", str(tmp_path / "ref"), *TRAIN]) == 0
    run = tmp_path / "old"
    assert main(["train", "--out", str(run), *TRAIN, "--stop-at", "2"]) == 0
    _old_format(run, ("cpu_seconds", "wall_seconds"))
    assert main(["train", "--out", str(run), "--resume", "--stop-at", "4"]) == 0
    assert Checkpoints(run).last.name == "step-0000004"
    assert _same_weights(tmp_path / "ref", run)


def test_finetune_resumes_an_old_format_checkpoint_exactly(tmp_path, tiny_model_dir) -> None:
    args = ["finetune", "--base", str(tiny_model_dir), *FINETUNE, "--steps", "4"]
    args += ["--checkpoint-every", "2", "--health-crops", "4", "--health-every", "2"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    run = tmp_path / "old"
    assert main([*args, "--out", str(run), "--stop-at", "2"]) == 0
    _old_format(run, ("cpu_seconds", "wall_seconds", "warmup_done", "d_updates", "warned"))
    assert main(["finetune", "--out", str(run), "--resume", "--stop-at", "4"]) == 0
    assert _same_weights(tmp_path / "ref", run)
