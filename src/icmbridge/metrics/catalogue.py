"""The metric catalogue: every metric icmbridge reports, declared once.

An entry (:class:`Metric`) says what a metric is called (``title`` in table heads, ``name`` in
sentences, axes and BD-rate lines), its unit, how its numbers are written (``fmt`` in tables and
terminals, ``short`` on the HTML page, ``diff`` for a paired difference), which way is better,
its group (rate, fidelity, people, artifact, task, cost), whether ``compare`` reports a paired
difference for it, whether it is a BD-rate axis, and who computes it. Evaluation
(:func:`icmbridge.evaluation.core.score`), the tables (``compare``, ``demo``, ``ablate``,
``evaluate``), the rate curves and the HTML report all read it; adding a metric is one entry here
plus the function that computes it.

Importing this module is cheap and torch-free (the CLI reads titles from it): who computes a
metric is a dotted name (``"package.module:function"``), resolved only when a score is computed.
An entry whose ``compute`` is set is computed per image by :func:`~icmbridge.evaluation.core.score`
as ``function(x, x_hat)`` on the original and decoded images (1×3×H×W tensors in [0, 1]),
returning a float or None; the others come from one shared step of ``score`` (the rate, the
artifact scores, the people's metrics, the task network) which ``source`` names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

GROUPS = ("rate", "fidelity", "people", "artifact", "task", "cost")


@dataclass(frozen=True)
class Metric:
    """One metric. ``fmt`` / ``short`` / ``diff`` are format specs (``format(value, spec)``)."""

    key: str
    title: str
    group: str
    fmt: str
    better: int = 0  # +1 higher is better, -1 lower is better, 0 neither
    unit: str = ""
    name: str = ""  # in sentences, axes, BD-rate lines (default: title)
    long: str = ""  # the full name where there is room (default: name)
    axis: str = ""  # a plot axis (default: "long (unit)")
    short: str = ""  # on the HTML page (default: fmt)
    diff: str = ""  # a paired difference (default: fmt with a sign)
    paired: bool = False  # compare reports its paired difference to the reference
    relative: bool = False  # …and that difference in per cent of the reference
    interval: bool = True  # its mean gets a 95 % bootstrap interval over images
    set_level: bool = False  # the mean is computed over the set (COCO AP), not over images
    bd_axis: bool = False  # a quality axis of the rate curves' BD-rates
    curve: bool = False  # kept in the points of rate curves
    per_image: bool = True  # in every image row (False: derived by the tables)
    table: bool = True  # a column of the report's full tables (False: counts)
    compute: str | Callable[..., Any] | None = None  # per image: f(x, x_hat) -> float | None
    source: str = ""  # what computes it when ``compute`` is None (documentation)

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"metric {self.key!r}: group {self.group!r} is none of {GROUPS}")
        if self.better not in (-1, 0, 1):
            raise ValueError(f"metric {self.key!r}: better must be -1, 0 or +1")

    @property
    def label(self) -> str:
        return self.name or self.title

    @property
    def full(self) -> str:
        return self.long or self.label

    @property
    def axis_label(self) -> str:
        return self.axis or (f"{self.full} ({self.unit})" if self.unit else self.full)

    @property
    def short_fmt(self) -> str:
        return self.short or self.fmt

    @property
    def diff_fmt(self) -> str:
        return self.diff or signed(self.fmt)

    @property
    def arrow(self) -> str:
        return {1: " ↑", -1: " ↓"}.get(self.better, "")

    def text(self, value: float | None, spec: str | None = None) -> str:
        """``value`` in ``spec`` (default ``fmt``), ``%`` glued on for per-cent metrics."""
        if value is None:
            return "—"
        return format(value, spec or self.fmt) + ("%" if self.unit == "%" else "")

    def with_unit(self, value: float | None, spec: str | None = None) -> str:
        """:meth:`text` followed by the unit, unless the unit is the metric's name (bpp, JOD)."""
        text = self.text(value, spec)
        spoken = self.unit and self.unit != "%" and self.unit != self.full
        return f"{text} {self.unit}" if spoken and text != "—" else text

    def function(self) -> Callable[..., Any] | None:
        """The per-image function, imported on first use (None: computed by a shared step)."""
        if self.compute is None or callable(self.compute):
            return self.compute
        module, _, name = self.compute.partition(":")
        return getattr(importlib.import_module(module), name)


def signed(spec: str) -> str:
    """A format spec with a sign (``.2f`` → ``+.2f``)."""
    return spec if spec.startswith(("+", "-")) else "+" + spec


_FIDELITY = "icmbridge.metrics.fidelity"
_ARTIFACTS = "icmbridge.metrics.artifacts:artifact_scores"
_PEOPLE = "icmbridge.metrics.people:PeopleMetrics"
_TASK = "the task network (icmbridge.tasks.base.MachineTask.score)"

#: Every metric, in the order results files and full tables show them.
_ENTRIES = (
    Metric("bpp", "bpp", "rate", ".4f", short=".3f", unit="bpp", paired=True, curve=True,
           source="real bytes over pixels (icmbridge.evaluation.core.score)"),
    Metric("psnr", "PSNR dB", "fidelity", ".2f", 1, unit="dB", name="PSNR", paired=True,
           bd_axis=True, curve=True, compute=f"{_FIDELITY}:psnr"),
    Metric("ssim", "SSIM", "fidelity", ".3f", 1, paired=True, curve=True,
           compute=f"{_FIDELITY}:ssim_or_none"),
    Metric("ms_ssim", "MS-SSIM", "fidelity", ".3f", 1, paired=True,
           compute=f"{_FIDELITY}:ms_ssim"),
    Metric("cvvdp_jod", "JOD", "people", ".2f", 1, unit="JOD", long="ColorVideoVDP",
           paired=True, bd_axis=True, curve=True, source=_PEOPLE),
    Metric("ssimulacra2", "SSIMULACRA 2", "people", "+.1f", 1, paired=True, bd_axis=True,
           curve=True, source=_PEOPLE),
    Metric("artifact_db", "artifact dB", "artifact", "+.2f", -1, unit="dB", name="artifact",
           short="+.1f", paired=True, source=_ARTIFACTS),
    Metric("residual_grid_db", "residual grid dB", "artifact", "+.1f", -1, unit="dB",
           source=_ARTIFACTS),
    Metric("phase_variance", "phase var.", "artifact", ".3g", -1, paired=True,
           source=_ARTIFACTS),
    Metric("lattice", "lattice", "artifact", ".2f", -1, paired=True,
           source=f"{_ARTIFACTS} (square root of phase_variance)"),
    Metric("hf_kept_db", "HF kept dB", "fidelity", "+.2f", 0, unit="dB", name="HF kept",
           paired=True, table=False, compute="icmbridge.metrics.detail:hf_kept_db"),
    Metric("task_ap", "AP", "task", ".3f", 1, paired=True, relative=True, set_level=True,
           bd_axis=True, curve=True, source=_TASK),
    Metric("task_ap50", "AP50", "task", ".3f", 1, axis="task AP50", paired=True, relative=True,
           set_level=True, bd_axis=True, curve=True, source=_TASK),
    Metric("task_mask_ap", "mask AP", "task", ".3f", 1, set_level=True, interval=False,
           source=_TASK),
    Metric("task_mask_ap50", "mask AP50", "task", ".3f", 1, set_level=True, interval=False,
           source=_TASK),
    Metric("rel_task_ap50", "Δ AP50 rel.", "task", "+.1f", 1, unit="%", per_image=False,
           source="the tables: AP50 relative to the uncompressed images (or the base)"),
    Metric("n_pred", "predictions", "task", "d", set_level=True, interval=False, table=False,
           source=_TASK),
    Metric("n_gt", "ground-truth objects", "task", "d", set_level=True, interval=False,
           table=False, source=_TASK),
    Metric("feature_distance", "feature dist.", "task", ".4f", -1, short=".3f", diff="+.3f",
           paired=True, source="icmbridge.tasks.base:feature_distance"),
    Metric("vgg_distance", "VGG dist.", "fidelity", ".3f", -1,
           source="icmbridge.metrics.vgg:VGGDistance"),
    Metric("encode_s", "encode s", "cost", ".3f", -1, unit="s", source="the coding step"),
    Metric("decode_s", "decode s", "cost", ".3f", -1, unit="s", source="the coding step"),
)  # fmt: skip

METRICS: dict[str, Metric] = {m.key: m for m in _ENTRIES}
#: A relative difference (``rel``: per cent of the reference), e.g. Δ AP50 rel.
REL_FMT = "+.1f"
#: A BD-rate (per cent of the anchor's rate at equal quality).
BD_FMT = "+.1f"

#: The compact tables (``compare``'s table.md): means, then paired differences to the reference.
COMPACT = ("bpp", "psnr", "ssim", "cvvdp_jod", "ssimulacra2", "artifact_db", "lattice",
           "task_ap50", "task_ap")  # fmt: skip
COMPACT_DIFF = ("psnr", "cvvdp_jod", "ssimulacra2", "artifact_db", "lattice", "task_ap50")
#: The report's "vs base" table, in its column order.
REPORT_DIFF = ("psnr", "ssim", "cvvdp_jod", "ssimulacra2", "artifact_db", "lattice",
               "task_ap50", "task_ap", "feature_distance", "bpp")  # fmt: skip
#: The report's headline sentence (human vs base): each key with the words after its value.
HEADLINE = {"psnr": "dB PSNR", "ssim": "SSIM", "cvvdp_jod": "JOD", "ssimulacra2": "SSIMULACRA 2",
            "artifact_db": "dB artifacts"}  # fmt: skip
#: The rate plot's quality axes, in panel order (each against bpp).
RATE_AXES = ("psnr", "task_ap50", "cvvdp_jod", "ssimulacra2")
#: Table 1 of the ablation (the report's table): its metric columns, in order.
TABLE1_COLUMNS = ("task_ap", "task_ap50", "task_mask_ap", "task_mask_ap50", "psnr", "ssim",
          "ms_ssim", "cvvdp_jod", "ssimulacra2", "feature_distance", "vgg_distance",
          "artifact_db")  # fmt: skip


def get(key: str) -> Metric:
    """The entry of ``key``; an unknown key gets a plain one (title = key, 4 significant digits)."""
    found = METRICS.get(key)
    return found if found is not None else Metric(key, key, "fidelity", ".4g", per_image=False)


def select(
    *, group: str | None = None, per_image: bool | None = True, **flags: bool
) -> tuple[str, ...]:
    """Keys of the entries that match, in catalogue order: ``select(paired=True)``,
    ``select(group="people")``, ``select(bd_axis=True)``; ``per_image=None`` includes
    derived ones."""
    return tuple(
        m.key
        for m in METRICS.values()
        if (group is None or m.group == group)
        and (per_image is None or m.per_image == per_image)
        and all(getattr(m, flag) == want for flag, want in flags.items())
    )


def title(key: str) -> str:
    return get(key).title


def register(metric: Metric, *, replace: bool = False) -> Metric:
    """Add ``metric`` to the catalogue (last in table order); every reader picks it up."""
    if metric.key in METRICS and not replace:
        raise ValueError(f"metric {metric.key!r} is already in the catalogue")
    METRICS[metric.key] = metric
    return metric


def unregister(key: str) -> None:
    METRICS.pop(key, None)


@contextmanager
def registered(metric: Metric) -> Iterator[Metric]:
    """``metric`` in the catalogue for the duration of a ``with`` block (tests, experiments)."""
    register(metric)
    try:
        yield metric
    finally:
        unregister(metric.key)


__all__ = [
    "BD_FMT",
    "COMPACT",
    "COMPACT_DIFF",
    "GROUPS",
    "HEADLINE",
    "METRICS",
    "REPORT_DIFF",
    "RATE_AXES",
    "REL_FMT",
    "TABLE1_COLUMNS",
    "Metric",
    "get",
    "select",
    "register",
    "registered",
    "signed",
    "title",
    "unregister",
]
