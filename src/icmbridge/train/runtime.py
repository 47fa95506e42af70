"""What every training loop here needs: processes, devices, data order, checkpoints, logging.

Shared by ``train`` (rate + task) and ``finetune`` (adversarial decoder finetuning):

* one process or many under ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on GPU);
* a data order that is a pure function of (seed, step), so a resumed or distributed run sees the
  very same samples as an uninterrupted single-process one;
* atomic checkpoints (a folder per step, ``last`` a symlink swapped atomically), so a kill at any
  moment loses at most the steps since the last checkpoint and never a checkpoint itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Dataset

from icmbridge.codec.model import CodecContract
from icmbridge.codec.store import write_model
from icmbridge.errors import IcmError, InputError
from icmbridge.utils.atomic import atomic_directory

# ---------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(device: str = "auto", threads: int | None = None) -> Runtime:
    """Join the process group when launched by torchrun; pick the device for this rank."""
    if threads is not None:
        torch.set_num_threads(threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(rank=rank, world_size=world, device=dev)


def teardown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_finite(rt: Runtime, *values: Tensor) -> bool:
    """True when every value is finite on every rank (all ranks must skip a bad step together)."""
    ok = torch.tensor(float(all(bool(torch.isfinite(v).all()) for v in values)), device=rt.device)
    if rt.distributed:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() > 0)


def mean_over_ranks(rt: Runtime, values: dict[str, float]) -> dict[str, float]:
    if not rt.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=rt.device)
    dist.all_reduce(t)
    return {k: float(v) / rt.world_size for k, v in zip(keys, t.tolist(), strict=True)}


# ---------------------------------------------------------------------------- data order


def step_batch(
    dataset: Dataset, step: int, global_batch: int, rt: Runtime
) -> tuple[Tensor, Tensor]:
    """This rank's share of global batch ``step``: images and their global sample ids.

    Sample ``i`` of the run is ``dataset[i % len(dataset)]``; the global batch of a step is
    ``global_batch`` consecutive ids, split into contiguous slices per rank. The order depends on
    nothing but (dataset seed, step), which is what makes resume and DDP exact. (torch's
    DistributedSampler cannot start in the middle of an epoch, hence this.)
    """
    if global_batch % rt.world_size:
        raise InputError(
            f"batch size {global_batch} must be divisible by the number of processes "
            f"({rt.world_size})"
        )
    local = global_batch // rt.world_size
    first = step * global_batch + rt.rank * local
    ids = torch.arange(first, first + local)
    images = torch.stack([dataset[int(i) % len(dataset)] for i in ids])
    return images, ids


# ---------------------------------------------------------------------------- checkpoints

STATE_FILE = "training_state.pt"


def _legacy_numpy_globals() -> list[Any]:
    """What a NumPy array needs to unpickle: checkpoints written before the random states were
    stored as tensors hold NumPy's state as an array. Plain data, no code to run."""
    import numpy as np
    from numpy.core import multiarray

    return [multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


_LEGACY_NUMPY = _legacy_numpy_globals()


class Checkpoints:
    """``RUN/checkpoints/step-NNNNNNN/`` folders, ``RUN/checkpoints/last`` → the newest whole one.

    Each folder is a loadable model (``model.safetensors`` + ``config.json``) plus
    ``training_state.pt`` (optimizers, schedules, step). It is written under a temporary name and
    renamed; ``last`` is a symlink replaced atomically, so it never points at a partial folder.
    """

    def __init__(self, run_dir: Path, keep: int = 2) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep = keep

    @property
    def last(self) -> Path | None:
        link = self.root / "last"
        if link.is_symlink() or link.is_dir():
            target = link.resolve()
            if (target / STATE_FILE).is_file():
                return target
        return None

    def save(
        self, step: int, codec: CodecContract, meta: dict[str, Any], state: dict[str, Any]
    ) -> Path:
        folder = self.root / f"step-{step:07d}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with atomic_directory(folder) as tmp:
                write_model(tmp, codec, meta)
                torch.save(state, tmp / STATE_FILE)
            link_tmp = self.root / f".last-{os.getpid()}.tmp"
            link_tmp.unlink(missing_ok=True)
            link_tmp.symlink_to(folder.name)
            os.replace(link_tmp, self.root / "last")
        except OSError as exc:
            previous = self.last
            kept = f"; the previous checkpoint is intact at {previous}" if previous else ""
            raise IcmError(
                f"cannot write checkpoint {folder}: {exc.strerror or exc}{kept}"
            ) from None
        self._prune(folder)
        return folder

    def _prune(self, newest: Path) -> None:
        steps = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        for old in steps[: max(0, len(steps) - self.keep)]:
            if old != newest:
                shutil.rmtree(old, ignore_errors=True)
        for junk in self.root.glob(".step-*"):  # temporaries of a killed write
            shutil.rmtree(junk, ignore_errors=True)

    def load_state(self) -> tuple[Path, dict[str, Any]]:
        """The newest checkpoint's folder and training state, read without running code from the
        file (``weights_only=True``: tensors, numbers, strings and containers only)."""
        last = self.last
        if last is None:
            raise InputError(f"no checkpoint to resume from in {self.root}")
        try:
            with torch.serialization.safe_globals(_LEGACY_NUMPY):
                state = torch.load(last / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle/unpickler errors come in many types
            raise InputError(
                f"cannot read the training state {last / STATE_FILE}: {exc}; only tensors, "
                "numbers, strings and containers are loaded from it"
            ) from None
        return last, state


# ---------------------------------------------------------------------------- snapshots

SNAPSHOT_FILE = "snapshot.json"


def write_snapshot(
    folder: Path, codec: CodecContract, meta: dict[str, Any], loop: dict[str, Any]
) -> None:
    """Replace ``folder`` atomically with a weights-only copy of the run: the model, its run
    settings and the loop state (step, rate weight, CPU time), but no optimizer moments.

    Why: a checkpoint with Adam's moments is three times the model and changes every time; a
    snapshot is small enough to travel with the repository, so that a long run accumulates
    across machines (see :func:`start_codec`).
    """
    payload = {"loop": {k: v for k, v in loop.items() if isinstance(v, int | float | str)}}
    try:
        with atomic_directory(Path(folder)) as tmp:
            write_model(tmp, codec, meta)
            (tmp / SNAPSHOT_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    except OSError as exc:
        raise IcmError(f"cannot write the snapshot {folder}: {exc.strerror or exc}") from None


def read_snapshot(folder: Path | None) -> dict[str, Any] | None:
    """The loop state of a snapshot folder, or None when there is none."""
    if folder is None or not (Path(folder) / SNAPSHOT_FILE).is_file():
        return None
    try:
        return json.loads((Path(folder) / SNAPSHOT_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the snapshot {folder}: {exc}") from None


BRANCH_FILE = "branch.json"


def read_branch(folder: Path) -> dict[str, Any]:
    """A fork's record of the run it left (``branch``, ``parent_step``, ``parent_cpu_hours``,
    the command), kept in ``branch.json`` beside its snapshot; ``{}`` for a main run.

    Why: a fork starts with ``--init`` and counts its CPU time from zero, while its scaling
    point belongs at the parent's hours plus its own, and a snapshot folder is replaced whole at
    every checkpoint, so the record lives in the model folder or the folder that holds it.
    """
    for where in (Path(folder), Path(folder).parent):
        if (where / BRANCH_FILE).is_file():
            try:
                return json.loads((where / BRANCH_FILE).read_text())
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read {where / BRANCH_FILE}: {exc}") from None
    return {}


def snapshot_ahead(ckpts: Checkpoints, snapshot: Path | None) -> dict[str, Any] | None:
    """The snapshot's contents when it holds a later step than the run's last checkpoint (or the
    run has none), else None."""
    snap = read_snapshot(snapshot)
    if snap is None:
        return None
    last = ckpts.last
    if last is None:
        return snap
    config = json.loads((last / "config.json").read_text())
    ahead = int(snap["loop"]["step"]) > int(config.get("meta", {}).get("trained_steps", 0))
    return snap if ahead else None


def start_codec(
    ckpts: Checkpoints,
    resume: bool,
    rt: Runtime,
    fresh: Callable[[], CodecContract],
    snapshot: Path | None = None,
) -> tuple[CodecContract, dict[str, Any] | None]:
    """The codec to train: on ``resume``, the last checkpoint's (with its saved state) or the
    ``snapshot``'s when that is further along — a new machine, or a stretch run elsewhere (on a
    GPU) — with its weights and loop state (``saved["from_snapshot"]`` tells the loop that the
    optimizers start afresh); else ``fresh()``."""
    if not resume:
        return fresh(), None
    from icmbridge.codec.store import load_codec

    snap = snapshot_ahead(ckpts, snapshot)
    if snap is not None:
        if rt.is_main:
            print(
                f"resuming from the snapshot {snapshot} at step {snap['loop']['step']} (weights "
                "and schedule; the optimizer's moments start afresh, with a short warm-up)"
            )
        return load_codec(snapshot), {"loop": snap["loop"], "from_snapshot": True}
    last, saved = ckpts.load_state()
    if rt.is_main:
        print(f"resuming from {last} at step {saved['loop']['step']}")
    return load_codec(last), saved


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise InputError(f"{run_dir} has no run.json: not a training run folder")
    return json.loads(path.read_text())


def prepare_run_dir(rt: Runtime, run_dir: Path, config: dict[str, Any]) -> None:
    """Create the run folder and record the run's settings (main rank), with a clear error."""
    if not rt.is_main:
        return
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        starts: list[Any] = []
        with contextlib.suppress(OSError, ValueError, AttributeError):
            starts = list(json.loads((Path(run_dir) / "run.json").read_text()).get("starts", []))
        write_run_config(run_dir, {**config, "starts": [*starts, run_environment(rt)]})
    except OSError as exc:
        raise InputError(f"cannot write the run folder {run_dir}: {exc.strerror or exc}") from None


def run_environment(rt: Runtime) -> dict[str, Any]:
    """What the settings do not say but the trained bits depend on (e.g. the thread count: float
    sums are split differently), recorded at every start or resume of a run."""
    import platform
    from datetime import UTC, datetime

    from icmbridge import __version__

    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "icmbridge": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(rt.device),
        "world_size": rt.world_size,
        "threads": torch.get_num_threads(),
    }


def write_run_config(run_dir: Path, config: dict[str, Any]) -> None:
    from icmbridge.utils.atomic import atomic_write_bytes

    atomic_write_bytes(Path(run_dir) / "run.json", (json.dumps(config, indent=2) + "\n").encode())


# ---------------------------------------------------------------------------- random state


def rng_states(rt: Runtime) -> list[dict[str, Any]]:
    """Every rank's global random state (torch CPU and CUDA, NumPy, Python), gathered on all
    ranks (a collective: every rank calls it at the same step).

    Why: the data order, the crops and the quantisation noise here come from generators seeded
    by (seed, step), but task networks draw from the global generator — torchvision's detection
    heads sample proposals with ``torch.randperm`` in training mode — so an exact resume needs
    the global state of the moment the checkpoint was written.
    """
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # as a tensor and plain numbers, so that the state loads with weights_only=True
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if not rt.distributed:
        return [state]
    states: list[Any] = [None] * rt.world_size
    dist.all_gather_object(states, state)
    return states


def restore_rng_states(rt: Runtime, states: list[dict[str, Any]] | None) -> None:
    """Put back this rank's state saved by :func:`rng_states` (checkpoints written before it
    existed carry none: then nothing changes)."""
    import random

    import numpy as np

    if not states:
        return
    if len(states) != rt.world_size:
        raise InputError(
            f"the checkpoint was written by {len(states)} process(es), this run has "
            f"{rt.world_size}: an exact resume needs the same number"
        )
    state = states[rt.rank]
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    keys = keys.numpy().astype(np.uint32) if isinstance(keys, Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys, *rest))
    random.setstate(state["python"])


# ---------------------------------------------------------------------------- schedules


def checkpoint_due(steps_done: int, every: int, total: int) -> bool:
    """A checkpoint is written every ``every`` steps and after the last one."""
    return steps_done % every == 0 or steps_done == total


def save_checkpoint(
    rt: Runtime,
    ckpts: Checkpoints,
    step: int,
    codec: CodecContract,
    meta: Callable[[], dict[str, Any]],
    state: Callable[[], dict[str, Any]],
) -> None:
    """The main rank writes the checkpoint (meta and state built only there); every rank waits
    for it, so none runs ahead of a checkpoint it might have to resume from."""
    if rt.is_main:
        ckpts.save(step, codec, meta(), state())
    if rt.distributed:
        dist.barrier()


def cosine_lr(step: int, total: int, base: float, warmup: int = 100, floor: float = 0.05) -> float:
    """Linear warm-up, then cosine decay to ``floor·base`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def schedule_lr(
    step: int,
    total: int,
    base: float,
    warmup: int = 100,
    schedule: str = "cosine",
    rewarm_from: int | None = None,
) -> float:
    """The learning rate of ``step``: :func:`cosine_lr`, or ``constant`` after the warm-up (an
    open-ended run that accumulates, e.g. for a scaling curve). ``rewarm_from``: the step at
    which the optimizer restarted (from a snapshot), warmed up again over ``warmup`` steps."""
    lr = (
        cosine_lr(step, total, base, warmup)
        if schedule == "cosine"
        else (base * min(1.0, (step + 1) / max(1, warmup)))
    )
    if rewarm_from is not None and warmup > 0:
        lr *= min(1.0, (step - rewarm_from + 1) / warmup)
    return lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ---------------------------------------------------------------------------- logging


class Logger:
    """TensorBoard scalars/images on the main rank; a no-op elsewhere."""

    def __init__(self, rt: Runtime, run_dir: Path, enabled: bool = True) -> None:
        self.writer = None
        if rt.is_main and enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(run_dir) / "tb"))

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        if self.writer:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def image(self, step: int, tag: str, image: Tensor) -> None:
        if self.writer:
            self.writer.add_image(tag, image.clamp(0, 1), step)

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def progress(rt: Runtime, total: int, initial: int, desc: str) -> Iterator[int] | Any:
    from tqdm import tqdm

    return tqdm(
        range(initial, total),
        total=total,
        initial=initial,
        desc=desc,
        disable=not rt.is_main,
        dynamic_ncols=True,
        mininterval=1.0,
    )
