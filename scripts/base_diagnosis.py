"""What limits a base run: its rate-distortion cost on the photos it trained on and on others.

For each model folder (a checkpoint, a ``--snapshot``, or ``REV:PATH`` of a snapshot committed
in git history) it runs the codec's forward pass in eval mode (rounded latents, the likelihood
bits the training loss estimates) over whole photos of

* ``train``: BSDS500 train + val, the 400 photos the long run trains on (a fixed subset);
* ``held-out``: BSDS500 test, 200 photos of the same kind it never saw (a fixed subset);
* ``kodak``: the 24 Kodak images every curve point is scored on,

and appends one JSON line per model (a fork's ``branch.json`` names its branch and the parent's
CPU-hours, which its own hours add to): bpp, PSNR and the training objective
J = bpp + λ·255²·MSE (λ from the run's settings) on each set. A held-out J that stalls while the
training J still falls is over-fitting; both stalling at the same level is the optimiser or the
model's capacity. Cheap (a minute a model on one thread): it codes no bitstream and runs no
people's metric; ``scripts/scaling_point.py`` does that for the points the card reports.

    python scripts/base_diagnosis.py results/scaling/mbt64-mse/snapshot \
        7e434c9:results/scaling/mbt64-mse/snapshot --label 18500 --label 16000 \
        --log results/scaling/diagnosis.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

SNAPSHOT_FILES = ("config.json", "model.safetensors", "snapshot.json")


def materialise(spec: str, tmp: Path) -> Path:
    """A model folder for ``spec``: a path, or ``REV:PATH`` read out of git history."""
    if ":" not in spec or Path(spec).exists():
        return Path(spec)
    rev, path = spec.split(":", 1)
    out = tmp / rev
    out.mkdir(parents=True, exist_ok=True)
    # the snapshot's files, and a fork's branch.json (kept beside the snapshot folder)
    wanted = [(f"{path}/{name}", name) for name in SNAPSHOT_FILES]
    wanted.append((f"{Path(path).parent.as_posix()}/branch.json", "branch.json"))
    for source, name in wanted:
        blob = subprocess.run(["git", "show", f"{rev}:{source}"], capture_output=True, check=False)
        if blob.returncode == 0:
            (out / name).write_bytes(blob.stdout)
    return out


def rd_on(codec, samples, lam: float) -> dict[str, float]:
    """Mean bpp (likelihood bits), PSNR and J = bpp + λ·255²·MSE over whole images."""
    from icmbridge.imageio import array_to_tensor

    bpps, psnrs, costs = [], [], []
    with torch.no_grad():
        for sample in samples:
            x = array_to_tensor(sample.image)
            out = codec(x)
            pixels = x.shape[-2] * x.shape[-1]
            bits = sum(torch.log2(v).sum().neg().item() for v in out["likelihoods"].values())
            mse = torch.mean((out["x_hat"].clamp(0, 1) - x) ** 2).item()
            bpps.append(bits / pixels)
            psnrs.append(-10 * np.log10(mse))
            costs.append(bits / pixels + lam * 255**2 * mse)
    return {
        "bpp": round(float(np.mean(bpps)), 5),
        "psnr": round(float(np.mean(psnrs)), 3),
        "J": round(float(np.mean(costs)), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model folders or REV:PATH of snapshots")
    parser.add_argument("--label", action="append", default=[], help="a name per model")
    parser.add_argument("--log", required=True, help="JSON-lines file the rows are appended to")
    parser.add_argument("--images", type=int, default=100, help="photos per BSDS500 set")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from icmbridge.codec.store import load_codec
    from icmbridge.data import get_set
    from icmbridge.train.runtime import read_branch, read_snapshot

    rng = np.random.default_rng(0)

    def subset(spec: str) -> list:
        samples = get_set(spec)
        keep = sorted(rng.choice(len(samples), min(args.images, len(samples)), replace=False))
        return [samples[i] for i in keep]

    sets = {
        "train": subset("bsds:trainval"),
        "held_out": subset("bsds:test"),
        "kodak": get_set("kodak"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(args.models):
            folder = materialise(spec, Path(tmp))
            config = json.loads((folder / "config.json").read_text())
            train_cfg = config.get("meta", {}).get("train_config", {})
            lam = float(train_cfg.get("lambda_mse", 0.0018))
            loop = (read_snapshot(folder) or {}).get("loop", {})
            codec = load_codec(folder).eval()
            branch = read_branch(folder)  # a fork: its hours count from its parent's
            row = {
                "model": spec,
                "branch": branch.get("branch", "main"),
                "label": args.label[i] if i < len(args.label) else spec,
                "step": loop.get("step", config.get("meta", {}).get("trained_steps")),
                "cpu_hours": round(
                    float(loop.get("cpu_seconds", 0.0)) / 3600
                    + branch.get("parent_cpu_hours", 0.0),
                    4,
                ),
                "parent_cpu_hours": branch.get("parent_cpu_hours"),
                "lambda": lam,
                **{name: rd_on(codec, samples, lam) for name, samples in sets.items()},
            }
            row["generalisation_gap_J"] = round(row["held_out"]["J"] - row["train"]["J"], 5)
            with open(args.log, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
