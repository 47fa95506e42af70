"""Base ICM training: rate + task loss through a frozen machine-task network (+ optional MSE).

    loss = w_rate · bpp  +  λ_task · task(x̂, x)  +  λ_mse · 255² · MSE(x̂, x)

``bpp`` is the estimated rate of ŷ and ẑ from the likelihoods; ``task`` is the task's own loss
(label-free distillation by default; ``task_loss="supervised"`` scores x̂ against the crop's
annotations instead, e.g. a COCO set with a torchvision detector); the MSE term uses
CompressAI's 255² scaling so that λ_mse reads like CompressAI's λ. ``w_rate`` is 1, or steered
towards ``target_bpp`` when one is given. The entropy bottleneck's auxiliary loss has its own
optimizer, as in CompressAI.

Read top to bottom: the loss's parts, then :class:`Training`, the hooks of the shared loop
(:mod:`icmbridge.train.loop`): build, one step, what to log and save.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from icmbridge.codec.model import CodecContract
from icmbridge.codec.store import build_codec, load_codec
from icmbridge.errors import InputError
from icmbridge.train import runtime as rtm
from icmbridge.train.config import TASK_LOSSES, TrainConfig, check_task_loss
from icmbridge.train.loop import Loop, LoopState, formatted

__all__ = ["TASK_LOSSES", "TrainConfig", "Training", "check_task_loss", "train"]


def bpp_from_likelihoods(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated bits per pixel of a batch: Σ −log2 p over all latents / (B·H·W)."""
    return sum(-torch.log2(lk).sum() for lk in likelihoods.values()) / num_pixels  # type: ignore


def build_training_data(names: list[str], crop: int, seed: int):
    from icmbridge.data import get_set
    from icmbridge.data.images import TrainCrops

    samples = []
    for name in names:
        samples += get_set(name, "train")  # lazy sets (COCO) are read crop by crop
    if not samples:
        raise InputError(f"no training images in {names}")
    return TrainCrops(samples, crop=crop, samples_per_epoch=10**9, seed=seed)


def validation_images(n: int = 2) -> list[torch.Tensor]:
    """A few held-out photos for monitoring (never selection): real bpp and PSNR in the logs."""
    from icmbridge.data import get_set
    from icmbridge.imageio import array_to_tensor

    samples = get_set("photos", "test")[:n]
    return [array_to_tensor(s.image[:256, :256]) for s in samples]


def compute_task_loss(
    task: Any, x_hat: torch.Tensor, x: torch.Tensor, data: Any, ids: torch.Tensor, mode: str
) -> torch.Tensor:
    """The task loss of a batch: ``distill`` pulls the task's outputs on x̂ towards those on x
    (any images); ``supervised`` scores x̂ against each crop's annotations, moved with it."""
    if mode == "supervised":
        targets = [
            {k: v.to(x.device) for k, v in data.target(int(i) % len(data)).items()} for i in ids
        ]
        return task.loss(x_hat, x, targets)
    return task.loss(x_hat, x)


@torch.no_grad()
def measure(codec: CodecContract, images: list[torch.Tensor]) -> dict[str, float]:
    """Real bitstream bpp and PSNR of ``images`` (codec temporarily in eval mode)."""
    from icmbridge.codec import bitstream

    was_training = codec.training
    codec.eval()
    codec.update(force=True)
    bpps, psnrs = [], []
    for x in images:
        data = bitstream.encode(codec, x)
        x_hat = bitstream.decode(codec, data)
        bpps.append(8 * len(data) / x[0, 0].numel())
        psnrs.append(float(-10 * torch.log10(F.mse_loss(x_hat, x))))
    codec.train(was_training)
    return {"bpp": sum(bpps) / len(bpps), "psnr": sum(psnrs) / len(psnrs)}


def net_aux_optimizer(
    codec: torch.nn.Module, conf: dict[str, dict[str, Any]]
) -> dict[str, torch.optim.Optimizer]:
    """CompressAI's ``net_aux_optimizer`` (``compressai.optimizers``): one optimizer for the
    network, one for the entropy bottlenecks' ``quantiles`` (the aux loss), disjoint, each over
    its parameters sorted by name."""
    from compressai.optimizers import net_aux_optimizer as compressai_net_aux

    return compressai_net_aux(codec, conf)


def _in_sorted_order(
    opt_state: dict[str, Any], codec: torch.nn.Module, saved: dict[str, Any], key: str
) -> dict[str, Any]:
    """An optimizer state saved before the parameters were sorted by name (checkpoints without
    ``param_order``), re-indexed to the sorted order, so such runs still resume exactly."""
    if saved.get("param_order") == "sorted":
        return opt_state
    names = [
        n
        for n, p in codec.named_parameters()
        if p.requires_grad and n.endswith(".quantiles") == (key == "aux")
    ]
    new_index = {n: i for i, n in enumerate(sorted(names))}
    old_to_new = {i: new_index[n] for i, n in enumerate(names)}
    group = dict(opt_state["param_groups"][0])
    group["params"] = sorted(old_to_new[i] for i in group["params"])
    return {
        "state": {old_to_new[i]: v for i, v in opt_state["state"].items()},
        "param_groups": [group],
    }


@dataclass
class TrainState(LoopState):
    """The loop state of ``train``: the steered rate weight (log scale) and, after a restart
    from a snapshot (fresh optimizer moments), the step the learning rate warmed up again from."""

    log_w_rate: float = 0.0
    rewarm_from: int | None = None

    def to_dict(self) -> dict[str, Any]:  # the order of earlier versions' snapshot.json
        d = super().to_dict()
        order = ["step", "log_w_rate", "bad_steps", "skipped", "cpu_seconds", "wall_seconds"]
        return {k: d[k] for k in [*order, *(k for k in d if k not in order)]}


class Training(Loop):
    """``icmbridge train``: rate + task (+ MSE) on the whole codec, entropy bottleneck aux loss."""

    command = "train"
    bad_step_hint = "lower --lr or the λ weights"
    cfg: TrainConfig

    def build(self) -> None:
        from icmbridge.tasks import build_task, parse_task_options

        cfg, rt = self.cfg, self.rt
        self.snapshot = Path(cfg.snapshot) if cfg.snapshot else None
        fresh = lambda: load_codec(cfg.init) if cfg.init else build_codec(cfg.codec, cfg.arch)  # noqa: E731
        codec, self.saved = rtm.start_codec(self.ckpts, self.resume, rt, fresh, self.snapshot)
        self.codec = codec
        codec.to(rt.device).train()
        self.task = (  # λ_task = 0 (rate + MSE only) needs no task network
            build_task(
                cfg.task, weights_path=cfg.task_weights, **parse_task_options(cfg.task_options)
            ).to(rt.device)
            if cfg.lambda_task > 0
            else None
        )
        self.data = build_training_data(cfg.data, cfg.crop, cfg.seed)
        check_task_loss(cfg.task_loss, self.data, cfg.data)
        # CompressAI's split: the entropy bottlenecks' quantiles get their own optimizer
        optimizers = net_aux_optimizer(
            codec,
            {"net": {"type": "Adam", "lr": cfg.lr}, "aux": {"type": "Adam", "lr": cfg.aux_lr}},
        )
        self.opt, self.aux_opt = optimizers["net"], optimizers["aux"]
        self.state = TrainState()
        saved = self.saved
        if saved is not None and saved.get("from_snapshot"):  # optimizers start afresh
            loop = {**saved["loop"], "rewarm_from": saved["loop"]["step"]}
            self.state = TrainState.from_dict(loop)
        elif saved is not None:
            self.opt.load_state_dict(_in_sorted_order(saved["optimizer"], codec, saved, "net"))
            self.aux_opt.load_state_dict(
                _in_sorted_order(saved["aux_optimizer"], codec, saved, "aux")
            )
            self.state = TrainState.from_dict(saved["loop"])

    def prepare(self) -> None:
        self.model: torch.nn.Module = self.codec
        if self.rt.distributed:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.codec, [n for n, _ in self.codec.named_parameters() if n.endswith("quantiles")]
            )
            self.model = DistributedDataParallel(self.codec, broadcast_buffers=False)
        self.val = validation_images() if self.rt.is_main else []

    def step(self, step: int) -> tuple[bool, dict[str, float] | None]:
        cfg, rt, state, opt = self.cfg, self.rt, self.state, self.opt
        lr = rtm.schedule_lr(
            step, cfg.steps, cfg.lr, cfg.warmup, cfg.lr_schedule, state.rewarm_from
        )
        rtm.set_lr(opt, lr)
        x, ids = rtm.step_batch(self.data, step, cfg.batch_size, rt)
        x = x.to(rt.device)
        out = self.model(x, sample_seeds=ids + cfg.seed * 10**9)
        x_hat = out["x_hat"]
        bpp = bpp_from_likelihoods(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
        mse = F.mse_loss(x_hat, x)
        task_loss = (
            compute_task_loss(self.task, x_hat, x, self.data, ids, cfg.task_loss)
            if self.task is not None
            else torch.zeros((), device=rt.device)
        )
        self.w_rate = math.exp(state.log_w_rate)
        loss = self.w_rate * bpp + cfg.lambda_task * task_loss + cfg.lambda_mse * 255**2 * mse

        ok = rtm.all_finite(rt, loss)
        if ok:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], cfg.clip)
            ok = rtm.all_finite(rt, grad_norm)
        if not ok:
            opt.zero_grad(set_to_none=True)
            return False, None
        opt.step()
        self.aux_opt.zero_grad(set_to_none=True)
        aux = self.codec.aux_loss()
        aux.backward()
        self.aux_opt.step()
        terms = rtm.mean_over_ranks(
            rt,
            {
                "loss": loss.item(),
                "bpp": bpp.item(),
                "task": task_loss.item(),
                "psnr": -10 * math.log10(max(mse.item(), 1e-10)),
                "aux": aux.item(),
            },
        )
        if cfg.target_bpp is not None:  # steer the rate weight (log scale) towards the target
            err = math.log(max(terms["bpp"], 1e-6) / cfg.target_bpp)
            state.log_w_rate = min(7.0, max(-7.0, state.log_w_rate + cfg.rate_gain * err))
        return True, terms

    def postfix(self, terms: dict[str, float]) -> dict[str, str]:
        return formatted({**terms, "w": self.w_rate}, bpp=".3f", task=".4f", psnr=".1f", w=".2f")

    def scalars(self, terms: dict[str, float]) -> dict[str, float]:
        lr = self.opt.param_groups[0]["lr"]
        return {**terms, "w_rate": self.w_rate, "lr": lr, "skipped": self.state.skipped}

    def held_out(self, step: int) -> None:
        if not self.val:
            return
        codec, val = self.codec, self.val
        held_out = measure(codec, val)
        self.log.scalars(step, held_out, prefix="heldout")
        self.log.image(step, "heldout/x_hat", codec.eval()(val[0])["x_hat"][0].detach())
        codec.train()
        self.bar.write(
            f"step {self.state.step}: held-out {held_out['bpp']:.3f} bpp, {held_out['psnr']:.2f} dB"
        )

    def meta(self, step: int) -> dict[str, Any]:
        return {"trained_steps": step, "train_config": asdict(self.cfg)}

    def training_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.opt.state_dict(),
            "aux_optimizer": self.aux_opt.state_dict(),
            "param_order": "sorted",  # net_aux_optimizer's order of parameters
        }

    def saved_checkpoint(self, step: int) -> None:
        if self.snapshot is not None and self.rt.is_main:
            rtm.write_snapshot(self.snapshot, self.codec, self.meta(step), self.state.to_dict())


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train a base ICM codec; returns the folder of the final checkpoint."""
    return Training(cfg, resume).run()
