"""SIGKILL a training command over and over, resuming each time, until it finishes (shared by the
train and finetune crash tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from icmbridge.train.runtime import Checkpoints


def run_with_kills(
    first: Sequence[str], resume: Sequence[str], run: Path, max_delay: float, seed: int
) -> int:
    """Start ``first``, then ``resume`` after each kill; returns how many kills it took.

    Each attempt is killed at a random moment up to ``max_delay`` seconds after it wrote a new
    checkpoint: it always makes progress, never more than a few steps, whatever the machine's
    speed and start-up time, so kills land mid-step and mid-write alike. stderr goes to a file:
    tqdm's output cannot fill a pipe and block the child.
    """
    rng = torch.Generator().manual_seed(seed)
    kills = 0
    with open(run.parent / f"{run.name}.stderr.log", "wb") as log:
        while True:
            before = Checkpoints(run).last
            proc = subprocess.Popen(
                list(resume if before is not None else first), stdout=subprocess.DEVNULL,
                stderr=log,
            )  # fmt: skip
            while proc.poll() is None and Checkpoints(run).last == before:
                time.sleep(0.02)
            try:
                proc.wait(timeout=max_delay * torch.rand(1, generator=rng).item())
                assert proc.returncode == 0, (run.parent / f"{run.name}.stderr.log").read_text()
                return kills
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                assert kills < 60, "the run never finished"
