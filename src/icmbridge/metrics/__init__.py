"""Quality metrics: pixel fidelity (PSNR, SSIM, MS-SSIM), people's metrics (ColorVideoVDP,
SSIMULACRA 2), checkerboard artifact scores, and the catalogue that declares every metric once
(:mod:`icmbridge.metrics.catalogue`).

The functions are imported on first use, so ``from icmbridge.metrics import catalogue`` stays
cheap and torch-free (the CLI reads metric titles without importing torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "artifacts": (
        "ArtifactScores",
        "artifact_db",
        "artifact_db_batch",
        "artifact_scores",
        "grid_energy_ratio_db",
        "grid_energy_ratio_db_batch",
        "phase_variance",
        "phase_variance_batch",
        "residual_grid_db",
        "residual_grid_db_batch",
    ),
    "fidelity": (
        "ms_ssim",
        "ms_ssim_batch",
        "psnr",
        "psnr_batch",
        "ssim",
        "ssim_batch",
        "to_image_batch",
    ),
    "people": ("DEFAULT_DISPLAY", "PEOPLE_KEYS", "PeopleMetrics"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE.get(name)
    if module is None:
        raise AttributeError(f"module 'icmbridge.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"icmbridge.metrics.{module}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_MODULE)
