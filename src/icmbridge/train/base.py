"""Base ICM training: rate + task loss through a frozen machine-task network (+ optional MSE).

    loss = w_rate · bpp  +  λ_task · task(x̂, x)  +  λ_mse · 255² · MSE(x̂, x)

``bpp`` is the estimated rate of ŷ and ẑ from the likelihoods; ``task`` is the task's own loss
(label-free distillation by default; ``task_loss="supervised"`` scores x̂ against the crop's
annotations instead, e.g. a COCO set with a torchvision detector); the MSE term uses
CompressAI's 255² scaling so that λ_mse reads like CompressAI's λ. ``w_rate`` is 1, or steered
towards ``target_bpp`` when one is given. The entropy bottleneck's auxiliary loss has its own
optimizer, as in CompressAI.

Read top to bottom: configuration, setup, the loop, checkpoints.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from icmbridge.codec.model import CodecContract
from icmbridge.codec.store import build_codec, load_codec
from icmbridge.errors import InputError
from icmbridge.train import runtime as rtm
from icmbridge.train.config import TASK_LOSSES, TrainConfig, check_task_loss  # noqa: F401


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


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train a base ICM codec; returns the folder of the final checkpoint."""
    from icmbridge.tasks import build_task, parse_task_options

    cfg.validate()
    rt = rtm.setup_runtime(cfg.device, cfg.threads)
    run_dir = Path(cfg.out)
    ckpts = rtm.Checkpoints(run_dir)
    try:
        rtm.prepare_run_dir(rt, run_dir, {"command": "train", **asdict(cfg)})

        # --- model, task, data, optimizers
        torch.manual_seed(cfg.seed)
        snapshot = Path(cfg.snapshot) if cfg.snapshot else None
        codec, saved = rtm.start_codec(
            ckpts,
            resume,
            rt,
            lambda: load_codec(cfg.init) if cfg.init else build_codec(cfg.codec, cfg.arch),
            snapshot,
        )
        codec.to(rt.device).train()
        task = (  # λ_task = 0 (rate + MSE only) needs no task network
            build_task(
                cfg.task, weights_path=cfg.task_weights, **parse_task_options(cfg.task_options)
            ).to(rt.device)
            if cfg.lambda_task > 0
            else None
        )
        data = build_training_data(cfg.data, cfg.crop, cfg.seed)
        check_task_loss(cfg.task_loss, data, cfg.data)
        # CompressAI's split: the entropy bottlenecks' quantiles get their own optimizer
        optimizers = net_aux_optimizer(
            codec,
            {"net": {"type": "Adam", "lr": cfg.lr}, "aux": {"type": "Adam", "lr": cfg.aux_lr}},
        )
        opt, aux_opt = optimizers["net"], optimizers["aux"]
        main_params = opt.param_groups[0]["params"]
        state: dict[str, Any] = {"step": 0, "log_w_rate": 0.0, "bad_steps": 0, "skipped": 0}

        if saved is not None and saved.get("from_snapshot"):
            state = {**state, **saved["loop"], "rewarm_from": saved["loop"]["step"]}
        elif saved is not None:
            opt.load_state_dict(_in_sorted_order(saved["optimizer"], codec, saved, "net"))
            aux_opt.load_state_dict(_in_sorted_order(saved["aux_optimizer"], codec, saved, "aux"))
            state = saved["loop"]
        # CPU time and wall-clock spent in the loop, accumulated over every start of the run
        state.setdefault("cpu_seconds", 0.0)
        state.setdefault("wall_seconds", 0.0)
        if state["step"] >= min(cfg.steps, cfg.stop_at or cfg.steps):
            return ckpts.last or run_dir

        model: torch.nn.Module = codec
        if rt.distributed:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                codec, [n for n, _ in codec.named_parameters() if n.endswith("quantiles")]
            )
            model = DistributedDataParallel(codec, broadcast_buffers=False)
        log = rtm.Logger(rt, run_dir, cfg.tensorboard)
        val = validation_images() if rt.is_main else []

        def save(step: int) -> None:
            rngs = rtm.rng_states(rt)  # on every rank (a collective under torchrun)
            meta = {"trained_steps": step, "train_config": asdict(cfg)}
            rtm.save_checkpoint(
                rt,
                ckpts,
                step,
                codec,
                lambda: meta,
                lambda: {
                    "optimizer": opt.state_dict(),
                    "aux_optimizer": aux_opt.state_dict(),
                    "loop": dict(state),
                    "rng": rngs,
                    "param_order": "sorted",  # net_aux_optimizer's order of parameters
                },
            )
            if snapshot is not None and rt.is_main:
                rtm.write_snapshot(snapshot, codec, meta, state)

        # the global generators as they were when the checkpoint was written (task networks
        # draw from them, e.g. torchvision's proposal samplers): resume is exact for every task
        rtm.restore_rng_states(rt, saved.get("rng") if saved is not None else None)
        # --- the loop
        bar = rtm.progress(rt, cfg.steps, state["step"], "train")
        t0 = time.perf_counter()
        clock = (time.perf_counter(), time.process_time())
        for step in bar:
            lr = rtm.schedule_lr(
                step, cfg.steps, cfg.lr, cfg.warmup, cfg.lr_schedule, state.get("rewarm_from")
            )
            rtm.set_lr(opt, lr)
            x, ids = rtm.step_batch(data, step, cfg.batch_size, rt)
            x = x.to(rt.device)
            out = model(x, sample_seeds=ids + cfg.seed * 10**9)
            x_hat = out["x_hat"]
            bpp = bpp_from_likelihoods(out["likelihoods"], x.shape[0] * x.shape[2] * x.shape[3])
            mse = F.mse_loss(x_hat, x)
            task_loss = (
                compute_task_loss(task, x_hat, x, data, ids, cfg.task_loss)
                if task is not None
                else torch.zeros((), device=rt.device)
            )
            w_rate = math.exp(state["log_w_rate"])
            loss = w_rate * bpp + cfg.lambda_task * task_loss + cfg.lambda_mse * 255**2 * mse

            ok = rtm.all_finite(rt, loss)
            if ok:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(main_params, cfg.clip)
                ok = rtm.all_finite(rt, grad_norm)
            state["step"] = step + 1
            if not ok:  # every rank skips the step together; the run goes on to its checkpoints
                opt.zero_grad(set_to_none=True)
                rtm.count_bad_step(state, step, cfg.max_bad_steps, "lower --lr or the λ weights")
            else:
                opt.step()
                state["bad_steps"] = 0
                aux_opt.zero_grad(set_to_none=True)
                aux = codec.aux_loss()
                aux.backward()
                aux_opt.step()
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
                if cfg.target_bpp is not None:
                    err = math.log(max(terms["bpp"], 1e-6) / cfg.target_bpp)
                    state["log_w_rate"] = min(
                        7.0, max(-7.0, state["log_w_rate"] + cfg.rate_gain * err)
                    )
            if ok and rt.is_main and (step % cfg.log_every == 0 or step + 1 == cfg.steps):
                bar.set_postfix(
                    bpp=f"{terms['bpp']:.3f}",
                    task=f"{terms['task']:.4f}",
                    psnr=f"{terms['psnr']:.1f}",
                    w=f"{w_rate:.2f}",
                )
                log.scalars(
                    step,
                    {
                        **terms,
                        "w_rate": w_rate,
                        "lr": opt.param_groups[0]["lr"],
                        "skipped": state["skipped"],
                        "sec_per_step": (time.perf_counter() - t0) / (step + 1 - bar.initial),
                    },
                )
            now = (time.perf_counter(), time.process_time())
            state["wall_seconds"] += now[0] - clock[0]
            state["cpu_seconds"] += now[1] - clock[1]
            clock = now
            due = rtm.checkpoint_due(state["step"], cfg.checkpoint_every, cfg.steps)
            if due:
                if rt.is_main and val:
                    held_out = measure(codec, val)
                    log.scalars(step, held_out, prefix="heldout")
                    log.image(step, "heldout/x_hat", codec.eval()(val[0])["x_hat"][0].detach())
                    codec.train()
                    bar.write(
                        f"step {state['step']}: held-out {held_out['bpp']:.3f} bpp, "
                        f"{held_out['psnr']:.2f} dB"
                    )
                save(state["step"])
            if cfg.stop_at is not None and state["step"] >= cfg.stop_at:
                if not due:
                    save(state["step"])
                break
            clock = (time.perf_counter(), time.process_time())  # monitoring is not training
        log.close()
        return ckpts.last or run_dir
    finally:
        rtm.teardown_runtime(rt)
