"""The training loop shared by ``train`` and ``finetune``: one skeleton, the steps as hooks.

:meth:`Loop.run` reads top to bottom like the loop of any small trainer::

    validate the settings ─► processes and device ─► run folder (run.json) ─► seed
    build (models, data, optimizers; on --resume the saved state) ─► done already? stop
    logger ─► prepare (DDP, held-out data, warm-ups) ─► the saved random state
    for each step:  step() ─► bad-step count ─► after_step() (health) ─► progress and logs
                    ─► CPU and wall time ─► checkpoint (held-out check first) ─► --stop-at

What differs between the two commands is in their subclass of :class:`Loop`
(:class:`icmbridge.train.base.Training`, :class:`icmbridge.train.finetune.Finetuning`): how to
build, one optimisation step, what to log and save. The state that goes from step to step (and
into every checkpoint as ``loop``) is a dataclass, :class:`LoopState`, written and read in the
format of the string-keyed dict earlier versions saved, so their checkpoints and snapshots resume
exactly.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch

from icmbridge.codec.model import CodecContract
from icmbridge.errors import IcmError
from icmbridge.train import runtime as rtm
from icmbridge.train.config import RunConfig


@dataclass
class LoopState:
    """What a run carries from step to step, saved in every checkpoint as ``loop``."""

    step: int = 0
    bad_steps: int = 0  # NaN/inf steps in a row
    skipped: int = 0  # NaN/inf steps in all
    cpu_seconds: float = 0.0  # CPU time and wall-clock spent in the loop, over every start
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form: a plain dict (fields left at None are left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> LoopState:
        """Read a saved ``loop`` (fields it lacks keep their defaults: older runs' format)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    def count_bad_step(self, step: int, limit: int, hint: str) -> None:
        """Count a skipped NaN/inf step; stop with a clear error once they persist."""
        self.skipped += 1
        self.bad_steps += 1
        if self.bad_steps > limit:
            raise IcmError(
                f"losses or gradients were NaN/inf for {self.bad_steps} steps in a row at step "
                f"{step}: {hint}, or check the data"
            )


def formatted(values: dict[str, float], **specs: str) -> dict[str, str]:
    """The ``values`` named in ``specs``, each formatted with its spec (progress-bar fields)."""
    return {name: format(values[name], spec) for name, spec in specs.items()}


class Loop:
    """The skeleton of a training run; subclasses fill in the hooks below ``run``."""

    command: ClassVar[str]  # "train" or "finetune": run.json, the progress bar
    bad_step_hint: ClassVar[str]  # what to try when the losses stay NaN/inf
    codec: CodecContract
    state: LoopState
    saved: dict[str, Any] | None  # the training state resumed from, None for a fresh run

    def __init__(self, cfg: RunConfig, resume: bool = False) -> None:
        self.cfg, self.resume = cfg, resume
        self.run_dir = Path(cfg.out)
        self.ckpts = rtm.Checkpoints(self.run_dir)

    def run(self) -> Path:
        """Train; returns the folder of the final checkpoint."""
        cfg = self.cfg
        cfg.validate()
        self.rt = rtm.setup_runtime(cfg.device, cfg.threads)
        try:
            rtm.prepare_run_dir(self.rt, self.run_dir, {"command": self.command, **asdict(cfg)})
            torch.manual_seed(cfg.seed)
            self.build()
            if self.state.step >= min(cfg.steps, cfg.stop_at or cfg.steps):
                return self.ckpts.last or self.run_dir
            self.log = rtm.Logger(self.rt, self.run_dir, cfg.tensorboard)
            self.prepare()
            # the global generators as they were when the checkpoint was written (task networks
            # draw from them, e.g. torchvision's proposal samplers): resume is exact for every task
            rtm.restore_rng_states(self.rt, (self.saved or {}).get("rng"))
            self.loop()
            self.log.close()
            return self.ckpts.last or self.run_dir
        finally:
            rtm.teardown_runtime(self.rt)

    def loop(self) -> None:
        cfg, state, rt = self.cfg, self.state, self.rt
        self.bar = bar = rtm.progress(rt, cfg.steps, state.step, self.command)
        self.start()
        t0 = time.perf_counter()
        clock = (time.perf_counter(), time.process_time())
        for step in bar:
            ok, terms = self.step(step)
            state.step = step + 1
            if ok:
                state.bad_steps = 0
            else:  # every rank skips the step together; the run goes on to its checkpoints
                state.count_bad_step(step, cfg.max_bad_steps, self.bad_step_hint)
            self.after_step(terms)
            if terms and rt.is_main and (step % cfg.log_every == 0 or step + 1 == cfg.steps):
                bar.set_postfix(**self.postfix(terms))
                sec_per_step = (time.perf_counter() - t0) / (step + 1 - bar.initial)
                self.log.scalars(step, {**self.scalars(terms), "sec_per_step": sec_per_step})
            now = (time.perf_counter(), time.process_time())
            state.wall_seconds += now[0] - clock[0]
            state.cpu_seconds += now[1] - clock[1]
            due = rtm.checkpoint_due(state.step, cfg.checkpoint_every, cfg.steps)
            if due:
                if rt.is_main:
                    self.held_out(step)
                self.save(state.step)
            if cfg.stop_at is not None and state.step >= cfg.stop_at:
                if not due:
                    self.save(state.step)
                break
            clock = (time.perf_counter(), time.process_time())  # monitoring is not training

    def save(self, step: int) -> None:
        """A checkpoint of ``step`` (the model, its metadata, the training state)."""
        rngs = rtm.rng_states(self.rt)  # on every rank (a collective under torchrun)
        rtm.save_checkpoint(
            self.rt,
            self.ckpts,
            step,
            self.codec,
            lambda: self.meta(step),
            lambda: {**self.training_state(), "loop": self.state.to_dict(), "rng": rngs},
        )
        self.saved_checkpoint(step)

    # ------------------------------------------------------------------------ the hooks

    def build(self) -> None:
        """Models, task, data and optimizers; sets ``codec``, ``state`` and ``saved`` (resumed
        from a checkpoint when ``resume``). Runs right after the seed: it decides the weights."""
        raise NotImplementedError

    def prepare(self) -> None:
        """What a run that has steps left needs before its loop (DDP, held-out data, warm-up)."""

    def start(self) -> None:
        """Called once the progress bar exists, before the first step."""

    def step(self, step: int) -> tuple[bool, dict[str, float] | None]:
        """One optimisation step: (whether it was finite and applied, its logged terms)."""
        raise NotImplementedError

    def after_step(self, terms: dict[str, float] | None) -> None:
        """Checks after each step (e.g. the discriminator's health), before logging."""

    def postfix(self, terms: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows of a logged step."""
        return {}

    def scalars(self, terms: dict[str, float]) -> dict[str, float]:
        """What TensorBoard gets of a logged step."""
        return terms

    def held_out(self, step: int) -> None:
        """Monitoring on held-out images before each checkpoint (main rank only)."""

    def meta(self, step: int) -> dict[str, Any]:
        """The model's metadata in the checkpoint of ``step`` (config.json's ``meta``)."""
        raise NotImplementedError

    def training_state(self) -> dict[str, Any]:
        """Optimizers and the like, saved beside ``loop`` and ``rng``."""
        raise NotImplementedError

    def saved_checkpoint(self, step: int) -> None:
        """Called on every rank after the checkpoint of ``step`` is written."""
