"""Quality metrics: pixel fidelity (PSNR, SSIM, MS-SSIM), people's metrics (ColorVideoVDP,
SSIMULACRA 2) and checkerboard artifact scores."""

from icmbridge.metrics.artifacts import (
    ArtifactScores,
    artifact_db,
    artifact_db_batch,
    artifact_scores,
    grid_energy_ratio_db,
    grid_energy_ratio_db_batch,
    phase_variance,
    phase_variance_batch,
    residual_grid_db,
    residual_grid_db_batch,
)
from icmbridge.metrics.fidelity import (
    ms_ssim,
    ms_ssim_batch,
    psnr,
    psnr_batch,
    ssim,
    ssim_batch,
    to_image_batch,
)
from icmbridge.metrics.people import DEFAULT_DISPLAY, PEOPLE_KEYS, PeopleMetrics

__all__ = [
    "DEFAULT_DISPLAY",
    "PEOPLE_KEYS",
    "ArtifactScores",
    "PeopleMetrics",
    "artifact_db",
    "artifact_db_batch",
    "artifact_scores",
    "grid_energy_ratio_db",
    "grid_energy_ratio_db_batch",
    "ms_ssim",
    "ms_ssim_batch",
    "phase_variance",
    "phase_variance_batch",
    "psnr",
    "psnr_batch",
    "residual_grid_db",
    "residual_grid_db_batch",
    "ssim",
    "ssim_batch",
    "to_image_batch",
]
