"""Base training: loss terms, checkpoints, exact resume after SIGKILL, DDP equivalence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sigkill import run_with_kills

from icmbridge.codec.store import build_codec, load_codec
from icmbridge.commands import main
from icmbridge.train.runtime import Checkpoints

# A run small enough for tests: tiny codec, 64² crops, packaged photos, the face task.
QUICK = [
    "--codec",
    "tiny",
    "--crop",
    "64",
    "--batch-size",
    "4",
    "--data",
    "photos",
    "--lambda-task",
    "1",
    "--lambda-mse",
    "0.01",
    "--warmup",
    "2",
    "--no-tensorboard",
    "--log-every",
    "1",
    "--threads",
    "1",
]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    last = Checkpoints(run).last
    assert last is not None
    return load_file(last / "model.safetensors")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "icmbridge.cli", *args]


def test_train_writes_loadable_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        main(["train", "--out", str(run), "--steps", "4", "--checkpoint-every", "2", *QUICK]) == 0
    )
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert ckpts == ["step-0000002", "step-0000004"]
    codec = load_codec(run)  # a run folder loads like a shipped model
    assert codec.ready_to_code() and codec.config.N == 16
    before = load_file(run / "checkpoints" / "step-0000002" / "model.safetensors")
    after = _weights(run)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("g_s"))


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--lambda-task", "-1"], "lambda-task"),
        (["--lambda-mse", "nan"], "lambda-mse"),
        (["--crop", "50"], "crop"),
        (["--codec", "huge"], "unknown codec"),
        (["--data", "nope"], "nope"),
    ],
)
def test_bad_configuration_refused(tmp_path, capsys, bad, message) -> None:
    args = ["train", "--out", str(tmp_path / "r"), "--steps", "2", *QUICK, *bad]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


def test_resume_changes_only_steps(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "2", *QUICK]) == 0
    assert main(["train", "--out", str(run), "--resume", "--lr", "0.5"]) == 2
    assert "only --steps" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    """SIGKILL the run at random moments (checkpoint writes included) and resume until it ends:
    the final weights equal those of an uninterrupted run, bit for bit."""
    steps = ["--steps", "24", "--checkpoint-every", "3"]
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    subprocess.run(
        _cli("train", "--out", str(ref), *steps, *QUICK), check=True, capture_output=True
    )
    full = time.perf_counter() - t0
    run = tmp_path / "killed"
    kills = run_with_kills(
        _cli("train", "--out", str(run), *steps, *QUICK),
        _cli("train", "--out", str(run), "--resume"),
        run,
        max_delay=full / 8,
        seed=7,
    )
    assert kills >= 3
    assert Checkpoints(run).last.name == "step-0000024"
    a, b = _weights(ref), _weights(run)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    steps = ["--steps", "3", "--checkpoint-every", "3"]
    single = tmp_path / "single"
    subprocess.run(
        _cli("train", "--out", str(single), *steps, *QUICK), check=True, capture_output=True
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
            "train",
            "--out",
            str(ddp),
            *steps,
            *QUICK,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = _weights(single), _weights(ddp)
    torch.manual_seed(0)  # the runs' seed: rebuild the common initial weights
    init = build_codec("tiny").state_dict()
    keys = [k for k in a if k.startswith(("g_a", "g_s", "h_a", "h_s"))]
    step = torch.cat([(a[k] - init[k]).flatten() for k in keys]).norm()
    gap = torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm()
    assert step > 0 and gap < 0.02 * step, (gap.item(), step.item())


def test_nan_steps_are_skipped_then_persistent_nan_stops(tmp_path, monkeypatch, capsys) -> None:
    import icmbridge.train.base as base

    real = base.bpp_from_likelihoods
    calls = {"n": 0}

    def sometimes_nan(likelihoods, num_pixels):
        calls["n"] += 1
        value = real(likelihoods, num_pixels)
        return value * float("nan") if calls["n"] in (2, 3) else value

    monkeypatch.setattr(base, "bpp_from_likelihoods", sometimes_nan)
    run = tmp_path / "run"
    assert (
        main(["train", "--out", str(run), "--steps", "4", "--checkpoint-every", "2", *QUICK]) == 0
    )
    assert Checkpoints(run).last.name == "step-0000004"
    state = torch.load(Checkpoints(run).last / "training_state.pt", weights_only=False)
    assert state["loop"]["skipped"] == 2

    monkeypatch.setattr(base, "bpp_from_likelihoods", lambda lk, n: real(lk, n) * float("nan"))
    code = main(["train", "--out", str(tmp_path / "nan"), "--steps", "40", *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and "NaN/inf" in err


def test_stop_at_then_resume_equals_one_run(tmp_path) -> None:
    """A staged recipe (stop after step 3, resume to the end) ends where one run ends."""
    args = ["train", "--steps", "6", "--checkpoint-every", "2", *QUICK]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    staged = tmp_path / "staged"
    assert main([*args, "--out", str(staged), "--stop-at", "3"]) == 0
    assert Checkpoints(staged).last.name == "step-0000003"
    assert main(["train", "--out", str(staged), "--resume", "--stop-at", "6"]) == 0
    a, b = _weights(tmp_path / "one"), _weights(staged)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory) -> Path:
    """Faster R-CNN (random weights, 3 classes) as a local state dict: a resumed run must rebuild
    the same task network, so its weights come from a file."""
    import warnings

    from icmbridge.tasks import build_task

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = build_task("fasterrcnn", num_classes=3)
    path = tmp_path_factory.mktemp("frcnn") / "frcnn.pth"
    torch.save(task.model.state_dict(), path)
    return path


def _detector_quick(weights: Path) -> list[str]:
    """QUICK with Faster R-CNN distillation (its RPN samples proposals from the global RNG)."""
    task = ["--task", "fasterrcnn", "--task-weights", str(weights)]
    task += ["--task-option", "min_size=64", "--task-option", "max_size=64"]
    return [*QUICK, *task, "--batch-size", "2", "--lambda-task", "1"]


def test_resume_is_exact_with_a_torchvision_detector(tmp_path, detector_weights) -> None:
    """Roll a run back to a checkpoint and resume: the weights equal an uninterrupted run's,
    although the detector's proposal sampler draws from the global generator."""
    args = ["train", "--steps", "4", "--checkpoint-every", "2", *_detector_quick(detector_weights)]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    ckpts = tmp_path / "b" / "checkpoints"
    import shutil

    shutil.rmtree(ckpts / "step-0000004")
    (ckpts / "last").unlink()
    (ckpts / "last").symlink_to("step-0000002")
    torch.manual_seed(12345)  # whatever the process did before, the resume restores the state
    assert main(["train", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.slow
def test_sigkill_then_resume_with_a_torchvision_detector(tmp_path, detector_weights) -> None:
    """As the face run above, with --task fasterrcnn: SIGKILLed and resumed until it ends, the
    final weights equal those of an uninterrupted run, bit for bit."""
    steps = ["--steps", "12", "--checkpoint-every", "2", *_detector_quick(detector_weights)]
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    subprocess.run(_cli("train", "--out", str(ref), *steps), check=True, capture_output=True)
    full = time.perf_counter() - t0
    run = tmp_path / "killed"
    kills = run_with_kills(
        _cli("train", "--out", str(run), *steps),
        _cli("train", "--out", str(run), "--resume"),
        run,
        max_delay=full / 6,
        seed=5,
    )
    assert kills >= 2
    assert Checkpoints(run).last.name == "step-0000012"
    a, b = _weights(ref), _weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_optimizers_follow_compressai_and_old_checkpoints_still_resume(tmp_path) -> None:
    """The optimizers are CompressAI's net/aux split (parameters sorted by name); a checkpoint
    written before (optimizer state in named_parameters order) resumes to the same weights."""
    from icmbridge.train.base import net_aux_optimizer

    codec = build_codec("tiny")
    opts = net_aux_optimizer(
        codec, {"net": {"type": "Adam", "lr": 1}, "aux": {"type": "Adam", "lr": 1}}
    )
    net = {id(p) for p in opts["net"].param_groups[0]["params"]}
    aux = {id(p) for p in opts["aux"].param_groups[0]["params"]}
    named = dict(codec.named_parameters())
    assert aux == {id(p) for n, p in named.items() if n.endswith(".quantiles")}
    assert net | aux == {id(p) for p in named.values()} and not net & aux

    args = ["train", "--steps", "4", "--checkpoint-every", "2", *QUICK]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--stop-at", "2"]) == 0
    path = Checkpoints(tmp_path / "b").last / "training_state.pt"
    state = torch.load(path, weights_only=False)
    order = [n for n in named if not n.endswith(".quantiles")]
    position = {n: i for i, n in enumerate(sorted(order))}
    # rewrite it as the old code did: state indexed by named_parameters order, no marker
    state["optimizer"]["state"] = {
        i: state["optimizer"]["state"][position[n]] for i, n in enumerate(order)
    }
    aux_order = [n for n in named if n.endswith(".quantiles")]
    aux_pos = {n: i for i, n in enumerate(sorted(aux_order))}
    state["aux_optimizer"]["state"] = {
        i: state["aux_optimizer"]["state"][aux_pos[n]] for i, n in enumerate(aux_order)
    }
    del state["param_order"]
    torch.save(state, path)
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--stop-at", "4"]) == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_state_loads_as_data_only(tmp_path) -> None:
    """A training state loads with ``weights_only``: an object that would run code on loading is
    refused with a clear error; an older state holding NumPy's random state as an array loads."""
    import numpy as np

    from icmbridge.errors import InputError

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "2", *QUICK]) == 0
    path = Checkpoints(run).last / "training_state.pt"
    state = torch.load(path, weights_only=True)
    assert isinstance(state["rng"][0]["numpy"][1], torch.Tensor)

    legacy = dict(state, rng=[dict(state["rng"][0], numpy=np.random.get_state())])
    torch.save(legacy, path)
    assert isinstance(Checkpoints(run).load_state()[1]["rng"][0]["numpy"][1], np.ndarray)
    assert main(["train", "--out", str(run), "--resume", "--steps", "3"]) == 0

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    path = Checkpoints(run).last / "training_state.pt"
    torch.save({**torch.load(path, weights_only=True), "x": Payload()}, path)
    with pytest.raises(InputError, match="cannot read the training state"):
        Checkpoints(run).load_state()
    assert not (tmp_path / "ran").exists()


def test_snapshot_carries_a_run_to_a_new_machine(tmp_path, capsys) -> None:
    """--snapshot keeps a weights-only copy of the run; with the run folder gone (a new
    machine), --resume goes on from it: same settings, step and accumulated CPU time, fresh
    optimizer moments warmed up again."""
    import json

    from icmbridge.train.runtime import SNAPSHOT_FILE

    run, snap = tmp_path / "run", tmp_path / "snap"
    args = ["train", "--out", str(run), "--snapshot", str(snap)]
    mse_only = ["--task", "none", "--lambda-task", "0", "--lr-schedule", "constant"]
    assert main([*args, *QUICK, *mse_only, "--steps", "100", "--stop-at", "4"]) == 0
    loop = json.loads((snap / SNAPSHOT_FILE).read_text())["loop"]
    assert loop["step"] == 4 and loop["cpu_seconds"] > 0 and "optimizer" not in loop
    before = load_file(snap / "model.safetensors")
    assert all(torch.equal(before[k], _weights(run)[k]) for k in before)

    import shutil

    shutil.rmtree(run)
    assert main([*args, "--resume", "--stop-at", "6"]) == 0
    assert "from the snapshot" in capsys.readouterr().out
    config = json.loads((run / "run.json").read_text())
    assert config["lr_schedule"] == "constant" and config["task"] == "none"
    after = json.loads((snap / SNAPSHOT_FILE).read_text())["loop"]
    assert after["step"] == 6 and after["rewarm_from"] == 4
    assert after["cpu_seconds"] > loop["cpu_seconds"]
    moved = load_file(snap / "model.safetensors")
    assert any(not torch.equal(before[k], moved[k]) for k in before if k.startswith("g_s"))

    # a stretch run elsewhere (a GPU) moves the snapshot past this machine's checkpoint (6):
    # the next resume here goes on from the snapshot, not from its own older checkpoint
    elsewhere = ["train", "--out", str(tmp_path / "gpu"), "--snapshot", str(snap), "--resume"]
    assert main([*elsewhere, "--stop-at", "8"]) == 0
    capsys.readouterr()
    assert main([*args, "--resume", "--stop-at", "9"]) == 0
    assert "from the snapshot" in capsys.readouterr().out
    assert json.loads((snap / SNAPSHOT_FILE).read_text())["loop"]["step"] == 9
    assert main([*args, "--resume", "--stop-at", "10"]) == 0  # now its checkpoint is newest
    assert "from the snapshot" not in capsys.readouterr().out


def test_task_none_needs_lambda_task_zero(tmp_path, capsys) -> None:
    args = ["train", "--out", str(tmp_path / "r"), "--steps", "1", *QUICK, "--task", "none"]
    assert main(args) == 2
    assert "--lambda-task 0" in capsys.readouterr().err
    assert main([*args, "--lambda-task", "0"]) == 0


def test_learning_rate_schedules() -> None:
    from icmbridge.train.runtime import schedule_lr

    cos = [schedule_lr(s, 100, 1.0, 10, "cosine") for s in range(100)]
    flat = [schedule_lr(s, 100, 1.0, 10, "constant") for s in range(100)]
    assert cos[:10] == flat[:10] and flat[10:] == [1.0] * 90 and cos[-1] < 0.1
    rewarm = [schedule_lr(s, 100, 1.0, 10, "constant", rewarm_from=50) for s in range(50, 70)]
    assert rewarm[0] == 0.1 and rewarm[9:] == [1.0] * 11


def test_scaling_point_scores_a_snapshot(tmp_path) -> None:
    """scripts/scaling_point.py appends one row for a snapshot: its step and CPU time, real bpp,
    PSNR, and the paired gap to a classical codec at no more bytes per image."""
    import json

    run, snap, log = tmp_path / "run", tmp_path / "snap", tmp_path / "curve.jsonl"
    mse_only = ["--task", "none", "--lambda-task", "0", "--steps", "3"]
    assert main(["train", "--out", str(run), "--snapshot", str(snap), *QUICK, *mse_only]) == 0
    script = Path(__file__).parents[1] / "scripts" / "scaling_point.py"
    log.write_text('{"step": 0}\n')  # an earlier point: the new one is appended
    cmd = [sys.executable, str(script), str(snap), "--log", str(log), "--set", "photos"]
    subprocess.run([*cmd, "--no-people", "--anchor", "jpeg"], check=True, timeout=300)
    rows = [json.loads(line) for line in log.read_text().splitlines()][1:]
    assert len(rows) == 1 and rows[0]["step"] == 3 and rows[0]["images"] == 3
    assert rows[0]["cpu_hours"] > 0 and 0 < rows[0]["bpp"] < 24 and rows[0]["cvvdp_jod"] is None
    anchor = rows[0]["anchor"]
    # JPEG cannot go as low as a 3-step codec: the images it codes above budget are counted
    assert anchor["codec"] == "jpeg" and (anchor["above_target"] > 0) == (
        anchor["bpp"] > rows[0]["bpp"]
    )
    gap, lo, hi = anchor["gap_psnr"]
    assert lo <= gap <= hi and gap == pytest.approx(rows[0]["psnr"] - anchor["psnr"], abs=1e-3)


def test_scaling_fits_recover_a_planted_curve() -> None:
    """The scaling card's fits: a planted saturating curve is recovered, a target above its
    asymptote has no forecast, and the log-linear forecast solves its own line."""
    import importlib.util

    import numpy as np

    path = Path(__file__).parents[1] / "scripts" / "scaling_plot.py"
    spec = importlib.util.spec_from_file_location("scaling_plot", path)
    sp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sp)
    hours = np.array([0.07, 0.14, 0.3, 0.6, 1.2, 2.4])
    gap = -2.5 - 1.6 * hours**-0.6
    fit = sp.fit_saturating(hours, gap)
    assert fit["g_inf"] == pytest.approx(-2.5, abs=1e-3) and fit["alpha"] == pytest.approx(0.6)
    assert sp.saturating_hours_to(-1.0, fit) is None  # above the asymptote: never
    h3 = sp.saturating_hours_to(-3.0, fit)
    assert -2.5 - 1.6 * h3**-0.6 == pytest.approx(-3.0)
    assert sp.fit_saturating(hours[:3], gap[:3]) is None  # too few points
    a, b = sp.fit_log_linear(np.array([1.0, 10.0]), np.array([-4.0, -2.0]))
    assert (a, b) == pytest.approx((-4.0, 2.0)) and sp.hours_to(0.0, a, b) == pytest.approx(100)


def test_read_branch_finds_a_forks_record_beside_its_snapshot(tmp_path) -> None:
    from icmbridge.errors import InputError
    from icmbridge.train.runtime import read_branch

    snap = tmp_path / "fork" / "snapshot"
    snap.mkdir(parents=True)
    assert read_branch(snap) == {}  # a main run
    record = {"branch": "lr-decay", "parent_step": 18500, "parent_cpu_hours": 2.5}
    (tmp_path / "fork" / "branch.json").write_text(json.dumps(record))
    assert read_branch(snap) == record  # kept beside the snapshot, which is replaced whole
    (snap / "branch.json").write_text("{not json")
    with pytest.raises(InputError, match="branch.json"):
        read_branch(snap)
