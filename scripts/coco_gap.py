"""Where a model loses to a classical codec on a labelled detection set: per class and per image.

Each image is coded by the model, and by the classical codec at the model's bytes for that image
(the largest file not larger); the task network reads both decodings. Per class: COCO AP50 over
the set for each codec (classes with at least ``--min-boxes`` labelled boxes). Per image: AP50
of each. Writes a JSON and a Markdown table; the model card quotes them.

    python scripts/coco_gap.py --model coco-base --codec avif --set 'coco128?take=32:' \\
        --task-weights $ICMBRIDGE_DATA/weights/yolox-nano/yolox_nano.onnx -o results/coco/gap
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from icmbridge.baselines.classical import code_at_bpp
from icmbridge.codec import bitstream
from icmbridge.codec.store import load_codec
from icmbridge.data import get_set
from icmbridge.imageio import array_to_tensor, tensor_to_array
from icmbridge.tasks.scoring import _coco_eval, _coco_sets
from icmbridge.tasks.yolox import YoloxTask


def ap50_by_class(preds: list[dict], gts: list[dict]) -> dict[int, float]:
    """AP50 of each labelled class over the whole set (COCOeval's precision at IoU 0.5)."""
    images, anns, dets, cats = _coco_sets(preds, gts, "bbox", False, None)
    ev = _coco_eval(images, anns, dets, cats, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, -1]  # IoU .5, all recalls, classes, all areas
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, k]
        if (p > -1).any():
            out[int(cat)] = float(p[p > -1].mean())
    return out


def ap50(pred: dict, gt: dict) -> float:
    """AP50 of one image (NaN without labelled boxes)."""
    from icmbridge.tasks.scoring import coco_score

    return coco_score([pred], [gt])["ap50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--codec", default="avif")
    parser.add_argument("--set", default="coco128?take=32:")
    parser.add_argument("--task-weights", required=True, help="YOLOX .onnx or state dict")
    parser.add_argument("--min-boxes", type=int, default=8)
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args()

    torch.set_num_threads(1)
    samples = get_set(args.set)
    model = load_codec(args.model)
    task = YoloxTask(args.task_weights)
    names = ("ours", args.codec)
    preds: dict[str, list[dict]] = {n: [] for n in names}
    gts, bpp = [], {n: [] for n in names}
    for s in tqdm(samples, desc="coding"):
        x = array_to_tensor(s.image)
        data = bitstream.encode(model, x)
        pixels = s.image[..., 0].size
        ours = tensor_to_array(bitstream.decode(model, data))
        other = code_at_bpp(args.codec, s.image, 8 * len(data) / pixels)
        for n, img, size in ((names[0], ours, len(data)), (names[1], other.decoded, None)):
            preds[n].append(task.predict(array_to_tensor(img))[0])
            bpp[n].append(8 * (size if size is not None else len(other.data)) / pixels)
        gts.append(s.target())
    per_class = {n: ap50_by_class(preds[n], gts) for n in names}
    labels = samples[0].meta.get("class_names") or []
    name_of = {c: labels[c] if c < len(labels) else str(c) for c in range(1000)}
    counts: dict[int, int] = {}
    for g in gts:
        for c in np.asarray(g["labels"]).reshape(-1):
            counts[int(c)] = counts.get(int(c), 0) + 1
    classes = sorted(
        (c for c, k in counts.items() if k >= args.min_boxes),
        key=lambda c: per_class[names[0]].get(c, 0) - per_class[names[1]].get(c, 0),
    )
    per_image = [
        {
            "image": s.name,
            "boxes": int(len(np.asarray(g["labels"]).reshape(-1))),
            **{f"{n}_bpp": round(bpp[n][i], 4) for n in names},
            **{f"{n}_ap50": ap50(preds[n][i], g) for n in names},
        }
        for i, (s, g) in enumerate(zip(samples, gts, strict=True))
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        f"| {name_of[c]} | {counts[c]} | {per_class[names[0]].get(c, 0):.3f} | "
        f"{per_class[names[1]].get(c, 0):.3f} | "
        f"{per_class[names[0]].get(c, 0) - per_class[names[1]].get(c, 0):+.3f} |"
        for c in classes
    ]
    scored = [r for r in per_image if not np.isnan(r["ours_ap50"])]
    scored.sort(key=lambda r: r["ours_ap50"] - r[f"{args.codec}_ap50"])
    worse = sum(r["ours_ap50"] < r[f"{args.codec}_ap50"] for r in scored)
    better = sum(r["ours_ap50"] > r[f"{args.codec}_ap50"] for r in scored)
    md = [
        f"`{args.model}` against {args.codec} at its bytes per image on `{args.set}` "
        f"({len(samples)} images; mean {np.mean(bpp[names[0]]):.3f} against "
        f"{np.mean(bpp[names[1]]):.3f} bpp), YOLOX AP50 per class (≥ {args.min_boxes} boxes), "
        f"worst first:",
        "",
        f"| class | boxes | ours | {args.codec} | ours − {args.codec} |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Per image (AP50 of the image's own boxes, {len(scored)} images with boxes): ours lower "
        f"on {worse}, higher on {better}, equal on {len(scored) - worse - better}. Worst ten:",
        "",
        f"| image | boxes | ours AP50 | {args.codec} AP50 |",
        "|---|---|---|---|",
        *(
            f"| {r['image']} | {r['boxes']} | {r['ours_ap50']:.3f} | "
            f"{r[f'{args.codec}_ap50']:.3f} |"
            for r in scored[:10]
        ),
    ]
    (out / "gap.md").write_text("\n".join(md) + "\n")
    (out / "gap.json").write_text(
        json.dumps(
            {
                "model": args.model,
                "codec": args.codec,
                "set": args.set,
                "per_class_ap50": {
                    name_of[c]: {n: per_class[n].get(c) for n in names} | {"boxes": counts[c]}
                    for c in sorted(counts)
                },
                "per_image": per_image,
            },
            indent=1,
        )
    )
    print("\n".join(md))


if __name__ == "__main__":
    main()
