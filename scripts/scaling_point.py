"""One point of a training run's scaling curve: a model scored on Kodak at its training cost.

Reads a model folder written by ``icmbridge train`` (a checkpoint or a ``--snapshot``), codes
every Kodak image into a real bitstream, and appends one JSON line to ``--log``: the step, the CPU
and wall-clock hours the run had spent to get there (accumulated over all its starts), the pooled
bpp, the mean PSNR over RGB and, unless ``--no-people``, ColorVideoVDP (JOD) and SSIMULACRA 2 of
the 8-bit decoded images (a fork's ``branch.json`` adds its parent's hours and names the branch).
Kodak is never trained on, so the curve is measured on held-out images.
With ``--anchor avif`` (the default) the same images are also coded by AVIF at each image's byte
budget of the model (never more bytes) and the row carries the paired gaps to it, with 95 %
bootstrap intervals: how far the run is from the classical codec it must beat.

    python scripts/scaling_point.py results/scaling/mbt64-mse/snapshot \
        --log results/scaling/mbt64-mse/curve.jsonl [--set kodak] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model folder (checkpoint or snapshot)")
    parser.add_argument("--log", required=True, help="JSON-lines file the point is appended to")
    parser.add_argument("--set", default="kodak", help="evaluation set (default kodak)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-people", action="store_true", help="skip ColorVideoVDP/SSIMULACRA 2")
    parser.add_argument(
        "--anchor", default="avif", help="classical codec at the same bytes per image, or none"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from icmbridge.codec import bitstream
    from icmbridge.codec.store import load_codec
    from icmbridge.data import get_set
    from icmbridge.imageio import array_to_tensor
    from icmbridge.metrics.fidelity import psnr

    folder = Path(args.model)
    config = json.loads((folder / "config.json").read_text())
    loop: dict = {}
    if (folder / "snapshot.json").is_file():
        loop = json.loads((folder / "snapshot.json").read_text())["loop"]
    else:  # a checkpoint folder: its training state
        from icmbridge.train.runtime import STATE_FILE

        loop = torch.load(folder / STATE_FILE, weights_only=True)["loop"]
    people = None
    if not args.no_people:
        from icmbridge.metrics.people import PeopleMetrics

        people = PeopleMetrics()
    codec = load_codec(folder)
    t0 = time.perf_counter()
    bits, pixels, psnrs, jods, ss2 = 0, 0, [], [], []
    anchor: dict[str, list[float]] = {"bpp": [], "psnr": [], "cvvdp_jod": [], "ssimulacra2": []}
    above = 0  # images the anchor cannot code in as few bytes (its lowest setting is used)
    for sample in get_set(args.set, "test"):
        x = array_to_tensor(sample.image)
        data = bitstream.encode(codec, x)
        x_hat = bitstream.decode(codec, data)
        bits += 8 * len(data)
        pixels += x.shape[2] * x.shape[3]
        decoded = (x_hat[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        original = sample.image
        psnrs.append(psnr(original, decoded))
        if people is not None:
            scores = people(original, decoded)
            jods.append(scores["cvvdp_jod"])
            ss2.append(scores["ssimulacra2"])
        if args.anchor != "none":
            from icmbridge.baselines.classical import code_at_bpp

            coded = code_at_bpp(args.anchor, original, 8 * len(data) / original[..., 0].size)
            anchor["bpp"].append(coded.bpp)
            above += coded.above_target
            anchor["psnr"].append(psnr(original, coded.decoded))
            if people is not None:
                scores = people(original, coded.decoded)
                anchor["cvvdp_jod"].append(scores["cvvdp_jod"])
                anchor["ssimulacra2"].append(scores["ssimulacra2"])
    from icmbridge.train.runtime import read_branch

    branch = read_branch(folder)  # a fork: its hours add to those of the run it left
    row = {
        "step": int(loop.get("step", config.get("meta", {}).get("trained_steps", 0))),
        "cpu_hours": round(
            float(loop.get("cpu_seconds", 0.0)) / 3600 + branch.get("parent_cpu_hours", 0.0), 6
        ),
        "wall_hours": round(float(loop.get("wall_seconds", 0.0)) / 3600, 6),
        "set": args.set,
        "images": len(psnrs),
        "bpp": round(bits / pixels, 5),
        "psnr": round(float(np.mean(psnrs)), 3),
        "cvvdp_jod": round(float(np.mean(jods)), 4) if jods else None,
        "ssimulacra2": round(float(np.mean(ss2)), 3) if ss2 else None,
        "eval_seconds": round(time.perf_counter() - t0, 1),
    }
    if branch:
        row["branch"] = {k: branch.get(k) for k in ("branch", "parent_step", "parent_cpu_hours")}
    if anchor["bpp"]:
        from icmbridge.evaluation.stats import interval, mean_replicates, resample_plan

        ours = {"psnr": psnrs, "cvvdp_jod": jods, "ssimulacra2": ss2}
        row["anchor"] = {
            "codec": args.anchor,
            "bpp": round(float(np.mean(anchor["bpp"])), 5),
            "above_target": above,
        }
        for key, values in anchor.items():
            if key == "bpp" or not values:
                continue
            gap = np.asarray(ours[key]) - np.asarray(values)
            lo, hi = interval(mean_replicates(list(gap), resample_plan(len(gap))), gap.mean())
            row["anchor"][key] = round(float(np.mean(values)), 4)
            row["anchor"][f"gap_{key}"] = [round(float(gap.mean()), 4), round(lo, 4), round(hi, 4)]
    with open(args.log, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
