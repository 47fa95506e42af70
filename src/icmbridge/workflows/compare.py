"""``icmbridge compare``: one set of bitstreams, several decoders, classical codecs at its bytes.

The paper's comparison, for any image set and task: every image is coded once with the base
codec's encoder into a real bitstream; the base (machine) decoder and each finetuned decoder
decode *the same bytes*; each classical codec codes every image at that image's base rate (the
largest quality whose file is not larger). Everything is scored alike, every mean carries its 95 %
bootstrap interval over images, and every codec's difference to the base decoder a paired
interval. Scores for people (ColorVideoVDP in JOD, SSIMULACRA 2) are computed on the 8-bit
decoded images by default (--no-people-metrics skips them). Writes OUT/results.json (readable by
``icmbridge report``), OUT/table.md, and the decoded images under OUT/decoded/ for the report's
crops.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icmbridge.errors import InputError

if TYPE_CHECKING:
    from icmbridge.evaluation.core import Coded, PeopleScorer


def _decoders(spec: str) -> dict[str, str]:
    """``human,my=runs/x`` → {"human": "human", "my": "runs/x"}."""
    out: dict[str, str] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        label, _, path = item.partition("=")
        label, path = (label, path) if path else (Path(item).name or item, item)
        if label in out or label == "base":
            raise InputError(f"decoder label {label!r} given twice (name one with LABEL=PATH)")
        out[label] = path
    return out


def compare_decoders(
    base: Any,
    decoders: Mapping[str, Any],
    codecs: Sequence[str],
    samples: list,
    task: Any | None,
    out: Path | None = None,
    progress: bool = False,
    reference: str = "base",
    postfilters: Mapping[str, Any] | None = None,
    descriptions: Mapping[str, str] | None = None,
    people: PeopleScorer | None = None,
) -> dict[str, Any]:
    """The paper's comparison on one set of bitstreams, the one function every command uses.

    Code ``samples`` once with ``base`` (a model name, a path or a loaded codec) into real
    bitstreams; decode *those bytes* with the base decoder and with each of ``decoders`` (label →
    name, path or codec; a decoder not finetuned from ``base`` is refused by fingerprint before
    any coding); apply each of ``postfilters`` (label → :class:`PostFilter`) to the base
    decoder's output; code every image with each classical codec at that image's base bytes;
    score them all with one ``task`` (and ``people``, a
    :class:`~icmbridge.metrics.people.PeopleMetrics`, when given) and paired differences to
    ``reference``.

    With ``out``: the bitstreams go to ``out/bitstreams/``, the decoded images to
    ``out/decoded/LABEL/`` and the originals to ``out/originals/`` (what the report shows).
    Returns ``{"codecs": {label: entry}, "unavailable": {codec: reason}}``, entries in the shape of
    :class:`icmbridge.evaluation.results.CodecResult`.
    """
    from icmbridge.evaluation.core import compare

    postfilters = dict(postfilters or {})
    labels = ["base", *decoders, *postfilters, *codecs]
    if reference not in labels:
        raise InputError(f"--reference {reference!r} is none of: {', '.join(labels)}")
    base_name = base if isinstance(base, str | Path) else "base"
    base_codec, decoder_codecs = _load_decoders(base, base_name, decoders)
    streams, coded = _code_once(base_codec, base_name, decoder_codecs, samples, progress)
    for label, filt in postfilters.items():
        coded[label] = _postfiltered(coded["base"], filt)
    unavailable = _classical_at_base_bytes(codecs, samples, coded, progress)
    _say(f"[compare] scoring {len(coded)} codecs on {len(samples)} images")
    gts = [s.target() for s in samples]
    scored = compare(coded, task, gts, reference=reference, progress=progress, people=people)
    if out is not None:
        _write_images(out, samples, streams, coded)
    return _entries(scored, str(base_name), decoders, postfilters, descriptions, unavailable)


def _load_decoders(
    base: Any, base_name: Any, decoders: Mapping[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """Load the base and the decoders, refusing a foreign decoder before minutes of coding."""
    from icmbridge.codec.bitstream import fingerprint
    from icmbridge.codec.store import load_codec

    base_codec = load_codec(base) if isinstance(base, str | Path) else base
    decoder_codecs = {
        label: load_codec(d) if isinstance(d, str | Path) else d for label, d in decoders.items()
    }
    for label, codec in decoder_codecs.items():  # refuse before minutes of coding, not after
        if fingerprint(codec) != fingerprint(base_codec):
            raise InputError(
                f"decoder {label!r} ({decoders[label]}) was not finetuned from {base_name}: its "
                f"encoder and entropy models ({fingerprint(codec).hex()}) differ from "
                f"{base_name}'s ({fingerprint(base_codec).hex()}), so it cannot read "
                f"{base_name}'s bitstreams"
            )
    return base_codec, decoder_codecs


def _code_once(
    base_codec: Any,
    base_name: Any,
    decoder_codecs: Mapping[str, Any],
    samples: list,
    progress: bool,
) -> tuple[list[bytes], dict[str, list[Coded]]]:
    """Code the set once with the base, then decode those very bytes with every decoder."""
    from icmbridge.evaluation.core import decode_with_model, encode_with_model

    _say(f"[compare] coding {len(samples)} images with {base_name}")
    streams, encode_s = encode_with_model(base_codec, samples, progress)
    coded: dict[str, list[Coded]] = {"base": decode_with_model(base_codec, streams, samples)}
    for c, t in zip(coded["base"], encode_s, strict=True):
        c.encode_s = t
    # every decoder reads the very bytes base wrote (a foreign model is refused by fingerprint)
    for label, codec in decoder_codecs.items():
        _say(f"[compare] decoding with {label}")
        coded[label] = decode_with_model(codec, streams, samples)
    return streams, coded


def _postfiltered(base_coded: list[Coded], filt: Any) -> list[Coded]:
    """A post-filter on the base decoder's output: same bytes and times, filtered pixels."""
    from icmbridge.evaluation.core import Coded

    return [
        Coded(c.name, c.original, filt.apply(c.decoded), c.num_bytes, c.encode_s, c.decode_s)
        for c in base_coded
    ]


def _classical_at_base_bytes(
    codecs: Sequence[str], samples: list, coded: dict[str, list[Coded]], progress: bool
) -> dict[str, str]:
    """Classical codecs at each image's base bytes, into ``coded``; returns those unavailable."""
    from tqdm import tqdm

    from icmbridge.baselines.classical import available_codecs, code_at_bpp
    from icmbridge.evaluation.core import Coded

    unavailable = {c: r for c, r in available_codecs().items() if c in codecs and r}
    for name in (c for c in codecs if c not in unavailable):
        _say(f"[compare] {name} at each image's base rate")
        items, above = [], 0
        bar = tqdm(samples, disable=not progress, leave=False)
        for s, b in zip(bar, coded["base"], strict=True):
            r = code_at_bpp(name, s.image, 8 * b.num_bytes / s.image[..., 0].size)
            items.append(Coded(s.name, s.image, r.decoded, len(r.data), r.encode_s, r.decode_s))
            above += r.above_target
        coded[name] = items
        if above:
            _say(f"[compare] {name}: {above} image(s) above the base rate at its lowest setting")
    return unavailable


def _write_images(
    out: Path, samples: list, streams: list[bytes], coded: dict[str, list[Coded]]
) -> None:
    """The bitstreams, every codec's decoded images and the originals, for the report."""
    from icmbridge.imageio import save_image

    for s, data in zip(samples, streams, strict=True):
        path = _image_path(out / "bitstreams", s.name).with_suffix(".icmb")
        path.write_bytes(data)
    for label, items in coded.items():
        for c in items:
            save_image(c.decoded, _image_path(out / "decoded" / label, c.name))
    for s in samples:
        save_image(s.image, _image_path(out / "originals", s.name))


def _entries(
    scored: dict[str, Any],
    base_name: str,
    decoders: Mapping[str, Any],
    postfilters: Mapping[str, Any],
    descriptions: Mapping[str, str] | None,
    unavailable: dict[str, str],
) -> dict[str, Any]:
    """The scores as result entries, each with its kind and a description."""
    kinds = {
        "base": "ours",
        **{d: "ours" for d in decoders},
        **{f: "postfilter" for f in postfilters},
    }
    descriptions = descriptions or {}
    return {
        "codecs": {
            label: {
                "kind": kinds.get(label, "classical"),
                "description": descriptions.get(label)
                or _describe(label, base_name, {k: str(v) for k, v in decoders.items()}),
                "mean": r["mean"],
                "ci": r["ci"],
                **({"vs": r["vs"]} if "vs" in r else {}),
                **({"params": postfilters[label].params} if label in postfilters else {}),
                "images": r["images"],
            }
            for label, r in scored.items()
        },
        "unavailable": unavailable,
    }


def _image_path(folder: Path, name: str) -> Path:
    """A PNG path for an image name (names of nested sets keep their folders flat)."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (Path(name).with_suffix("").as_posix().replace("/", "__") + ".png")


def _describe(label: str, base: str, decoders: dict[str, str]) -> str:
    if label == "base":
        return f"machine decoder of {base} (writes the bitstreams)"
    if label in decoders:
        return f"decoder {decoders[label]} on {base}'s bitstreams"
    if "+" in label:
        return f"{base}'s decoder followed by a {label.partition('+')[2]} filter"
    return f"{label} at each image's {base} rate"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def markdown(results: dict[str, Any]) -> str:
    """The comparison as a Markdown table: means [95 % CI], then paired differences to base."""
    from icmbridge.evaluation.stats import format_ci, format_diff
    from icmbridge.metrics import catalogue

    codecs = results["codecs"]
    ref = results.get("reference", "base")
    measured = {
        g: any(
            c["mean"].get(k) is not None for c in codecs.values() for k in catalogue.select(group=g)
        )
        for g in ("people", "task")
    }

    def shown(key: str) -> bool:
        return measured.get(catalogue.get(key).group, True)

    cols = [catalogue.get(k) for k in catalogue.COMPACT if shown(k)]
    diffs = [catalogue.get(k) for k in catalogue.COMPACT_DIFF if shown(k)]
    head = [m.title for m in cols] + [
        f"Δ{m.title}{' rel.' if m.relative else ''} vs {ref}" for m in diffs
    ]
    lines = [
        f"{results['set']}, {results['n_images']} images"
        + (f", task `{results['task']}`" if results.get("task") else "")
        + f"; bitstreams from `{results['base']}`.",
        "",
        "| codec | " + " | ".join(head) + " |",
        "|---" * (len(head) + 1) + "|",
    ]
    for label, c in codecs.items():
        m, ci = c["mean"], c.get("ci") or {}
        d = (c.get("vs") or {}).get("diff") or {}
        cells = [format_ci(m.get(x.key), ci.get(x.key), x.fmt) for x in cols]
        cells += [
            format_diff(d.get(x.key), catalogue.REL_FMT if x.relative else x.diff_fmt, x.relative)
            if d
            else "—"
            for x in diffs
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    unc = results.get("uncompressed") or {}
    if unc.get("task_ap50") is not None:
        uci = unc.get("ci") or {}
        lines += [
            "",
            "Uncompressed: "
            + ", ".join(
                f"{catalogue.title(k)} {format_ci(unc.get(k), uci.get(k), catalogue.get(k).fmt)}"
                for k in ("task_ap50", "task_ap")
            )
            + ".",
        ]
    lines += [
        "",
        f"[lo, hi]: 95 % bootstrap interval over images (AP: the set resampled); Δ vs {ref}: "
        "paired over the same image draws, ~ marks a difference whose interval covers 0. "
        "lattice: RMS over the 16×16 grid phases of the mean luma residual, grey levels."
        + (
            f" JOD: ColorVideoVDP (display `{people['display']}`; 10 = no visible difference); "
            "SSIMULACRA 2: 90 visually lossless, 50 medium, below 0 heavy compression."
            if measured["people"] and (people := results.get("people_metrics"))
            else ""
        ),
        "",
        f"Command: `{results['command']}`",
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    import torch

    from icmbridge.data import load_samples
    from icmbridge.evaluation.core import task_reference
    from icmbridge.metrics.people import people_argv, people_from_args, people_info
    from icmbridge.utils.atomic import atomic_write_bytes

    start = time.perf_counter()
    people = people_from_args(args)  # a bad --display is refused before any coding
    samples = load_samples(None, args.set, args.limit)
    from icmbridge.tasks import task_argv, task_from_args

    task = task_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    codecs = [c for c in args.codecs.split(",") if c]
    res = compare_decoders(
        args.base,
        _decoders(args.decoders),
        codecs,
        samples,
        task,
        out if args.images else None,
        progress=sys.stderr.isatty(),
        reference=args.reference,
        people=people,
    )
    command = (
        f"icmbridge compare --base {args.base} --decoders {args.decoders!r} --codecs "
        f"{args.codecs!r} --set {args.set} {shlex.join(task_argv(args) + people_argv(args))}"
        + (f" --limit {args.limit}" if args.limit else "")
        + (f" --reference {args.reference}" if args.reference != "base" else "")
        + f" -o {args.out}"
    )
    from icmbridge.evaluation.results import CodecResult, Results

    gts_known = all(s.target() is not None for s in samples)
    results = Results(
        kind="compare",
        title=f"icmbridge compare: {args.set}",
        command=command,
        set=args.set,
        n_images=len(samples),
        base=args.base,
        reference=args.reference,
        task=task.name if task is not None else None,
        ground_truth=("annotations" if gts_known else "pseudo") if task is not None else None,
        uncompressed=task_reference(task, samples) if task is not None else None,
        threads=torch.get_num_threads(),
        codecs={k: CodecResult.from_dict(v) for k, v in res["codecs"].items()},
        unavailable=res["unavailable"],
        people_metrics=people_info(people),
    )
    results.seconds = round(time.perf_counter() - start, 1)
    results.write(out / "results.json")
    table = markdown(results.to_dict())
    atomic_write_bytes(out / "table.md", table.encode())
    print(table)
    print(f"written: {out / 'results.json'}, {out / 'table.md'} ({results.seconds} s)")
    return 0
