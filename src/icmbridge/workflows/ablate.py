"""``icmbridge ablate``: the paper's Table 1 and the questions it leaves open, on our data.

Every row finetunes the same base with the same steps and seed, then is evaluated alike on the
held-out set (default: the face benchmark with MTCNN). Rows:

* Table 1: 3×64², 3×32², 5×64², 1×64², 3×128², 3×128² low impact;
* the λ_a = 0 control (same layers, MSE only): does the adversarial term remove the artifacts,
  or would MSE finetuning alone have done it?
* the first row from two more seeds: the noise floor every other difference is read against;
* a λ_a sweep (trade-off between task AP50 and PSNR / artifact score);
* K = 1…4 finetuned synthesis layers (which layers carry the artifacts).

Every decoder reads the same bitstreams of the base (``compare_decoders``, as ``compare`` and
``demo`` do), scored with one task on one set: ``--set``, ``--task`` (``--task-weights``,
``--task-option``) make the table for any data and task network, e.g. ``--task fasterrcnn
--task-weights W.pth --set coco:ANN.json``. Results go to OUT/results.json (the results schema;
``icmbridge report OUT -o PAGE`` shows Table 1) and OUT/table1.md, runs to OUT/runs/ (resumable: a
finished row is not run again; rows with the same settings are run once), decoded images to
OUT/decoded/ for the report. Keep --threads the same across resumed runs: trained weights differ
in their last bits with the thread count, and AP50 on a few dozen images feels even that.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from icmbridge.errors import InputError
from icmbridge.metrics.people import DEFAULT_DISPLAY
from icmbridge.train.config import LOW_IMPACT, PAPER_PATCHES

CONTROL = "λ_a = 0 control (MSE only)"
REPEATS = ["3 patches 64×64, seed 1", "3 patches 64×64, seed 2"]
"""Table 1's first row from other seeds: the spread that chance alone gives."""
"""The λ_a sweep's end point: the same finetuning without the adversarial term."""
TABLE1 = [
    ("3 patches 64×64", {"patches": 3, "patch_size": 64}),
    ("3 patches 32×32", {"patches": 3, "patch_size": 32}),
    ("5 patches 64×64", {"patches": 5, "patch_size": 64}),
    ("1 patch 64×64", {"patches": 1, "patch_size": 64}),
    # the presets' rows (icmbridge.train.config: --preset paper, --preset li)
    ("3 patches 128×128", dict(PAPER_PATCHES)),
    ("3 patches 128×128, LI", {**PAPER_PATCHES, **LOW_IMPACT}),
    (CONTROL, {"patches": 3, "patch_size": 64, "lambda_a": 0.0}),
    # the first row again from another seed: how far rows differ by chance alone
    *[(label, {"patches": 3, "patch_size": 64, "seed": i}) for i, label in enumerate(REPEATS, 1)],
]
LAMBDA_SWEEP = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
LAYER_SWEEP = [1, 2, 3, 4]


def rows(parts: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(part, label, finetune options) of every row to run."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    if "table1" in parts:
        out += [("table1", label, opts) for label, opts in TABLE1]
    if "lambda" in parts:
        out += [("lambda", f"λ_a = {v:g}", {"lambda_a": v}) for v in LAMBDA_SWEEP]
    if "layers" in parts:
        out += [("layers", f"K = {k}", {"layers": f"first:{k}"}) for k in LAYER_SWEEP]
    return out


def _slug(label: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in label.lower())
    return "-".join(t for t in keep.split("-") if t)


def run_ablation(
    base: str,
    out: Path,
    steps: int,
    seed: int,
    n_images: int,
    parts: list[str],
    set_spec: str = "faces:test",
    task: Any = None,
    data: list[str] | None = None,
    command: str | None = None,
    people_metrics: bool = True,
    display: str = DEFAULT_DISPLAY,
) -> dict[str, Any]:
    """Finetune every row from ``base`` (a finished row is not run again), then compare all
    decoders on one set of ``base``'s bitstreams with :func:`compare_decoders` and one task
    (None: ``face``), and with ColorVideoVDP (on ``display``) and SSIMULACRA 2 unless
    ``people_metrics`` is False. Returns the results with ``rows`` (every row's scores)."""
    import torch

    from icmbridge.data import get_set
    from icmbridge.evaluation.core import task_reference
    from icmbridge.metrics.people import PeopleMetrics, people_info
    from icmbridge.tasks import build_task
    from icmbridge.workflows.compare import compare_decoders

    if steps < 1 or n_images < 1:
        raise InputError("--steps and --images must be ≥ 1")
    people = PeopleMetrics(display) if people_metrics else None  # refused before any training
    out.mkdir(parents=True, exist_ok=True)
    samples = get_set(set_spec, "test")[:n_images]
    if not samples:
        raise InputError(f"{set_spec} holds no images")
    task = task if task is not None else build_task("face")

    table, decoders = _finetune_rows(base, out, steps, seed, parts, data)

    print(f"scoring {len(decoders) + 1} decoders on {len(samples)} images", file=sys.stderr)
    compared = compare_decoders(
        base,
        decoders,
        [],
        samples,
        task,
        out,
        descriptions={r["key"]: r["config"] for r in table if "same_as" not in r},
        people=people,
    )
    codecs = compared["codecs"]
    for row in table:
        entry = codecs[row["key"]]
        row.update({k: entry.get(k) for k in ("mean", "ci", "vs", "images")})
    gts = [s.target() for s in samples]
    results: dict[str, Any] = {
        "base": base,
        "steps": steps,
        "seed": seed,
        # float sums depend on the thread count, and so do trained weights at the last bits
        "threads": torch.get_num_threads(),
        "set": f"{set_spec} (first {len(samples)})",
        "task": task.name,
        "ground_truth": "annotations" if all(g is not None for g in gts) else "pseudo",
        "uncompressed": task_reference(task, samples),
        "command": command or f"icmbridge ablate --base {base} --steps {steps}",
        "codecs": codecs,
        "rows": table,
        "people_metrics": people_info(people),
    }
    _write(out, results)
    return results


def _finetune_rows(
    base: str, out: Path, steps: int, seed: int, parts: list[str], data: list[str] | None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Finetune every row not finished yet, each distinct experiment once.

    Returns the table (base first, then one row per label) and the decoders to compare (key →
    run folder).
    """
    from icmbridge.train.finetune import PAPER_RECIPE, FinetuneConfig, finetune
    from icmbridge.train.runtime import Checkpoints

    todo = rows(parts)
    # rows that differ only in their label (e.g. Table 1's 3×64², λ_a = 1e-3 and K = 2 are all the
    # defaults) are one experiment: run it once and list it under every label
    ran: dict[str, dict[str, Any]] = {}
    table: list[dict[str, Any]] = [
        {"part": "base", "config": "Base codec", "key": "base", "options": {}}
    ]
    decoders: dict[str, str] = {}
    for i, (part, label, opts) in enumerate(todo, 1):
        run_dir = out / "runs" / _slug(label)
        cfg = replace(  # the paper's rows: its recipe, then the row's change
            FinetuneConfig(
                out=str(run_dir),
                base=base,
                steps=steps,
                seed=seed,
                tensorboard=False,
                checkpoint_every=max(steps // 4, 1),
                **({"data": list(data)} if data else {}),
            ),
            **{**{k: v for k, v in PAPER_RECIPE.items() if k not in ("steps", "crop")}, **opts},
        )
        identity = json.dumps({k: v for k, v in asdict(cfg).items() if k != "out"}, sort_keys=True)
        row = {"part": part, "config": label, "key": _slug(label), "options": opts}
        if identity in ran:
            first = ran[identity]
            print(f"[{i}/{len(todo)}] {label}: same as {first['config']}", file=sys.stderr)
            row.update(key=first["key"], same_as=first["config"])
        else:
            print(f"[{i}/{len(todo)}] {label}", file=sys.stderr, flush=True)
            last = Checkpoints(run_dir).last
            if (
                last is None
                or json.loads((last / "config.json").read_text())["meta"].get("trained_steps")
                != steps
            ):
                finetune(cfg, resume=last is not None)
            decoders[row["key"]] = str(run_dir)
            ran[identity] = row
        table.append(row)
    return table, decoders


def _rel(value: float | None, ref: float | None) -> float | None:
    if value is None or not ref:
        return None
    return 100 * (value / ref - 1)


def table1_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows in the shape of the paper's Table 1 (relative AP50 change against the base)."""
    base = results["rows"][0]["mean"]
    table = []
    for row in results["rows"]:
        m = row["mean"]
        diff = (row.get("vs") or {}).get("diff") or {}
        table.append(
            {
                "config": row["config"],
                "part": row["part"],
                "same_as": row.get("same_as"),
                "task_ap": m.get("task_ap"),
                "task_ap50": m.get("task_ap50"),
                "psnr": m.get("psnr"),
                "ssim": m.get("ssim"),
                "cvvdp_jod": m.get("cvvdp_jod"),
                "ssimulacra2": m.get("ssimulacra2"),
                "feature_distance": m.get("feature_distance"),
                "artifact_db": m.get("artifact_db"),
                "rel_task_ap50": None
                if row["part"] == "base"
                else _rel(m.get("task_ap50"), base.get("task_ap50")),
                "ci": row.get("ci") or {},
                "vs_base": diff,
            }
        )
    return table


def markdown(results: dict[str, Any]) -> str:
    from icmbridge.evaluation.stats import format_ci, format_diff
    from icmbridge.metrics.catalogue import REL_FMT, get

    def f(r: dict[str, Any], key: str) -> str:
        return get(key).text(r.get(key))

    def with_ci(r: dict[str, Any], key: str) -> str:
        return format_ci(r.get(key), r["ci"].get(key), get(key).fmt)

    def diff(r: dict[str, Any], key: str) -> str:
        return format_diff(r["vs_base"].get(key), get(key).diff_fmt)

    def same(row: dict[str, Any]) -> str:
        return f" (= {row['same_as']})" if row.get("same_as") else ""

    rows = table1_rows(results)
    people = any(r.get("cvvdp_jod") is not None for r in rows)
    lines = [
        f"Base `{results['base']}`, {results['steps']} finetuning steps per row, seed "
        f"{results['seed']}, {results.get('threads', '?')} CPU thread(s), evaluated on "
        f"{results['set']}, task `{results.get('task', '?')}` (AP50 against "
        f"{results.get('ground_truth') or 'annotations'}).",
        "",
        "| Configuration | AP50 ↑ [95% CI] | AP ↑ | PSNR ↑ [95% CI] | SSIM ↑ | Feature dist. ↓ "
        "| Artifact dB ↓ | ΔAP50 rel. vs base [paired 95% CI] | ΔPSNR dB vs base [paired] |"
        + (" JOD ↑ [95% CI] | SSIMULACRA 2 ↑ [95% CI] | ΔJOD vs base [paired] |" if people else ""),
        "|---" * (12 if people else 9) + "|",
    ]
    for r in rows:
        d = r["vs_base"]
        rel = format_diff(d.get("task_ap50"), REL_FMT, rel=True) if d.get("task_ap50") else "—"
        if rel == "—" and r["rel_task_ap50"] is not None:  # results written before intervals
            rel = get("rel_task_ap50").text(r["rel_task_ap50"])
        lines.append(
            f"| {r['config']}{same(r)} | {with_ci(r, 'task_ap50')} "
            f"| {f(r, 'task_ap')} | {with_ci(r, 'psnr')} | "
            f"{f(r, 'ssim')} | {f(r, 'feature_distance')} | "
            f"{f(r, 'artifact_db')} | {rel} | {diff(r, 'psnr')} |"
            + (
                f" {with_ci(r, 'cvvdp_jod')} | "
                f"{with_ci(r, 'ssimulacra2')} | "
                f"{diff(r, 'cvvdp_jod')} |"
                if people
                else ""
            )
        )
    lines += [
        "",
        "Intervals: 95 % bootstrap over the images (AP resampled as a set); differences to the "
        "base are paired over the same image draws, and ~ marks a difference whose interval "
        "covers 0 (not told apart from chance on these images).",
    ]
    note = noise_note(results)
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def noise_note(results: dict[str, Any]) -> str | None:
    """What chance alone moves: the range of Table 1's first row over its seeds."""
    by_config = {r["config"]: r["mean"] for r in results["rows"]}
    runs = [by_config[c] for c in [TABLE1[0][0], *REPEATS] if c in by_config]
    if len(runs) < 2 or TABLE1[0][0] not in by_config:
        return None

    def span(key: str) -> float:
        values = [m[key] for m in runs if m.get(key) is not None]
        return max(values) - min(values) if values else 0.0

    return (
        f"Chance alone: the first row over {len(runs)} seeds spans {span('task_ap50'):.3f} in AP50 "
        f"and {span('psnr'):.3f} dB in PSNR (a lower bound on the noise from so few runs); read "
        "differences between rows of that size as noise."
    )


def _write(out: Path, results: dict[str, Any]) -> None:
    """OUT/results.json (the results schema; ``icmbridge report`` reads it) and OUT/table1.md."""
    from icmbridge.evaluation.results import CodecResult, Results
    from icmbridge.utils.atomic import atomic_write_bytes

    results["table1"] = table1_rows(results)
    results["tradeoff"] = [
        {
            "config": r["config"],
            "lambda_a": r["options"]["lambda_a"],
            "task_ap50": r["mean"].get("task_ap50"),
            "psnr": r["mean"].get("psnr"),
            "cvvdp_jod": r["mean"].get("cvvdp_jod"),
            "ssimulacra2": r["mean"].get("ssimulacra2"),
            "artifact_db": r["mean"].get("artifact_db"),
        }
        for r in results["rows"]
        if r["part"] == "lambda" or r["config"] == CONTROL
    ]
    light = [
        {k: r[k] for k in ("part", "config", "key", "options", "same_as") if k in r}
        for r in results["rows"]
    ]
    Results(
        kind="ablation",
        title="icmbridge ablation (the paper's Table 1 on our data)",
        command=results["command"],
        set=results["set"],
        n_images=len(results["rows"][0]["images"] or []),
        base=str(results["base"]),
        reference="base",
        task=results["task"],
        ground_truth=results["ground_truth"],
        uncompressed=results["uncompressed"],
        threads=results["threads"],
        codecs={k: CodecResult.from_dict(v) for k, v in results["codecs"].items()},
        table1=results["table1"],
        table1_note=noise_note(results),
        tradeoff=results["tradeoff"],
        people_metrics=results.get("people_metrics"),
        extra={"steps": results["steps"], "seed": results["seed"], "rows": light},
    ).write(out / "results.json")
    atomic_write_bytes(out / "table1.md", markdown(results).encode())


def load_ablation(out: Path) -> dict[str, Any]:
    """An ablation's results.json back as :func:`run_ablation` returns it (rows with scores)."""
    from icmbridge.evaluation.results import Results

    res = Results.read(Path(out) / "results.json")
    if res.kind != "ablation":
        raise InputError(f"{out}/results.json holds {res.kind} results, not an ablation")
    codecs = {k: c.to_dict() for k, c in res.codecs.items()}
    rows = [{**r, **codecs[r["key"]]} for r in res.extra["rows"]]
    for r in rows:
        r.pop("kind", None)
        r.pop("description", None)
    return {
        "base": res.base,
        "steps": res.extra["steps"],
        "seed": res.extra["seed"],
        "threads": res.threads,
        "set": res.set,
        "task": res.task,
        "ground_truth": res.ground_truth,
        "uncompressed": res.uncompressed,
        "command": res.command,
        "codecs": codecs,
        "rows": rows,
        "table1": res.table1,
        "tradeoff": res.tradeoff,
        "people_metrics": res.people_metrics,
    }


def run(args: argparse.Namespace) -> int:
    import shlex

    from icmbridge.metrics.people import people_argv, people_options
    from icmbridge.tasks import task_argv, task_from_args

    parts = args.only or ["table1", "lambda", "layers"]
    words = ["icmbridge", "ablate", "--base", args.base, "--steps", str(args.steps)]
    words += ["--seed", str(args.seed), "--set", args.set, *task_argv(args)]
    words += ["--images", str(args.images)] + (["--data", ",".join(args.data)] if args.data else [])
    words += [w for p in args.only or [] for w in ("--only", p)] + people_argv(args)
    words += ["-o", args.out]
    results = run_ablation(
        args.base,
        Path(args.out),
        args.steps,
        args.seed,
        args.images,
        parts,
        set_spec=args.set,
        task=task_from_args(args),
        data=args.data,
        command=shlex.join(words),
        **people_options(args),
    )
    print(markdown(results))
    print(f"written: {Path(args.out) / 'results.json'}, {Path(args.out) / 'table1.md'}")
    return 0
