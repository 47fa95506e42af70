"""Check that the planted-face benchmark is detectable and discriminates low-rate coding.

Runs MTCNN (``build_task("face")``) on the test split uncompressed and after JPEG with the quality
chosen per image as the highest one at or below a bpp target, and prints/writes AP numbers:

    python benchmarks/face_benchmark_check.py [--split test] [--target-bpp 0.2] [-o out.json]

Pass criteria (from the design): AP50 ≥ 0.8 uncompressed; JPEG at 0.1–0.2 bpp loses ≥ 10 %
relative AP50.
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np
import torch
from PIL import Image

from icmbridge.data.faces import face_benchmark
from icmbridge.tasks import build_task


def jpeg_at_most(image: np.ndarray, target_bpp: float) -> tuple[np.ndarray, float, int]:
    """Highest JPEG quality whose size is ≤ target bpp (quality 1 when none is)."""
    best = None
    for q in range(1, 96):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=q, optimize=True)
        bpp = 8 * buf.tell() / (image.shape[0] * image.shape[1])
        if bpp > target_bpp and best is not None:
            break
        best = (buf.getvalue(), bpp, q)
        if bpp > target_bpp:
            break
    data, bpp, q = best
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), bpp, q


def evaluate(task, images: list[np.ndarray], targets: list[dict]) -> dict:
    preds = []
    for im in images:
        x = torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255).unsqueeze(0)
        preds += task.predict(x)
    return task.score(preds, targets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", default="test")
    ap.add_argument("--target-bpp", type=float, nargs="+", default=[0.2, 0.35, 0.6])
    ap.add_argument("--min-face-size", type=int, default=15)
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    samples = face_benchmark(args.split)
    task = build_task("face", min_face_size=args.min_face_size)
    targets = [s.target() for s in samples]
    results = {
        "split": args.split,
        "n_images": len(samples),
        "n_faces": int(sum(len(s.boxes) for s in samples)),
    }
    clean = evaluate(task, [s.image for s in samples], targets)
    results["uncompressed"] = {k: clean[k] for k in ("ap", "ap50", "ap75", "n_pred", "n_gt")}
    print(
        f"uncompressed: AP {clean['ap']:.3f}  AP50 {clean['ap50']:.3f}  "
        f"({int(clean['n_pred'])} predictions, {int(clean['n_gt'])} faces)"
    )
    for target in args.target_bpp:
        coded = [jpeg_at_most(s.image, target) for s in samples]
        r = evaluate(task, [c[0] for c in coded], targets)
        bpp = float(np.mean([c[1] for c in coded]))
        qs = [c[2] for c in coded]
        rel = (clean["ap50"] - r["ap50"]) / clean["ap50"] if clean["ap50"] > 0 else float("nan")
        results[f"jpeg<={target}"] = {
            "bpp": bpp,
            "quality_min": min(qs),
            "quality_max": max(qs),
            "ap": r["ap"],
            "ap50": r["ap50"],
            "ap50_relative_loss": rel,
        }
        print(
            f"JPEG ≤{target} bpp (mean {bpp:.3f}, q {min(qs)}-{max(qs)}): AP {r['ap']:.3f}  "
            f"AP50 {r['ap50']:.3f}  relative AP50 loss {100 * rel:.1f} %"
        )
    results["seconds"] = time.time() - t0
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
