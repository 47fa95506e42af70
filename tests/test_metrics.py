"""Fidelity metrics, and the artifact scores on synthetic grids, noise, JPEG and blur."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from skimage import data

from icmbridge.errors import InputError
from icmbridge.metrics import (
    artifact_db,
    artifact_db_batch,
    artifact_scores,
    ms_ssim,
    phase_variance,
    psnr,
    psnr_batch,
    residual_grid_db,
    ssim,
    ssim_batch,
)
from icmbridge.metrics.artifacts import grid_mask

PERIOD = 16


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a).permute(2, 0, 1).float() / 255.0


@pytest.fixture(scope="module")
def photo8() -> np.ndarray:
    """A 256×256 natural crop (face, hair, background: textured and flat areas)."""
    return np.ascontiguousarray(data.astronaut()[:256, 128:384])


@pytest.fixture(scope="module")
def photo(photo8: np.ndarray) -> torch.Tensor:
    return _tensor(photo8)


def _tile(period: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(period, period, generator=g)
    return (t - t.mean()) / t.std()


def _add_pattern(x: torch.Tensor, tile: torch.Tensor, amplitude: float) -> torch.Tensor:
    """x + amplitude/255 · tile repeated from the top-left corner (the codec's grid origin)."""
    h, w = x.shape[-2:]
    p = tile.shape[0]
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (x + tile[ii % p, jj % p] * amplitude / 255.0).clamp(0, 1)


def _jpeg(a: np.ndarray, quality: int) -> torch.Tensor:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return _tensor(np.asarray(Image.open(buf).convert("RGB")))


# ------------------------------------------------------------------------------------- fidelity
def test_psnr_identical_is_inf_and_offset_is_exact(photo: torch.Tensor) -> None:
    assert psnr(photo, photo) == math.inf
    flat = torch.full((3, 40, 50), 0.5)
    assert psnr(flat, flat + 0.1) == pytest.approx(20.0, abs=1e-4)  # mse 0.01 -> 20 dB
    assert psnr(flat[None], flat[None] - 0.01) == pytest.approx(40.0, abs=1e-3)


def test_psnr_batch_and_numpy_inputs(photo8: np.ndarray, photo: torch.Tensor) -> None:
    noisy = photo + 0.02 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(1))
    noisy = noisy.clamp(0, 1)
    values = psnr_batch(torch.stack([photo, noisy]), torch.stack([noisy, noisy]))
    assert values.shape == (2,) and values[1] == math.inf
    assert values[0] == pytest.approx(psnr(photo, noisy))
    assert psnr(photo8, photo8) == math.inf  # HxWx3 uint8 accepted
    assert psnr(photo8, photo) == math.inf  # and mixes with the canonical tensor


def test_ssim_and_ms_ssim(photo: torch.Tensor) -> None:
    assert ssim(photo, photo) == pytest.approx(1.0, abs=1e-6)
    blurred = _tensor(
        np.asarray(
            Image.fromarray((photo.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(2)
            )
        )
    )
    assert 0 < ssim(photo, blurred) < 0.95
    assert ms_ssim(photo, photo) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(photo, blurred) < 1.0
    assert ms_ssim(photo[:, :160, :], photo[:, :160, :]) is None  # 5 scales need a side ≥ 161
    assert ms_ssim(photo[:, :161, :], photo[:, :161, :]) is not None
    assert ssim_batch(photo[None].repeat(3, 1, 1, 1), photo[None].repeat(3, 1, 1, 1)).shape == (3,)


@pytest.mark.parametrize(
    "a, b",
    [
        (torch.rand(3, 20, 20), torch.rand(3, 20, 21)),  # shape mismatch
        (torch.rand(3, 20, 20) * 2, torch.rand(3, 20, 20)),  # out of [0, 1]
        (torch.rand(4, 20, 20), torch.rand(4, 20, 20)),  # not RGB
        (torch.randint(0, 255, (3, 20, 20)), torch.randint(0, 255, (3, 20, 20))),  # int tensor
    ],
)
def test_fidelity_rejects_bad_inputs(a: torch.Tensor, b: torch.Tensor) -> None:
    with pytest.raises(InputError):
        psnr(a, b)


def test_single_image_functions_refuse_batches() -> None:
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(InputError, match="psnr_batch"):
        psnr(x, x)


# ------------------------------------------------------------------------------------ artifacts
def test_identical_images_score_zero(photo: torch.Tensor) -> None:
    s = artifact_scores(photo, photo)[0]
    assert s.artifact_db == pytest.approx(0.0, abs=1e-9)
    assert s.residual_grid_db == pytest.approx(0.0, abs=1e-9)
    assert s.phase_variance == 0.0
    flat = torch.full((3, 64, 64), 0.3)  # no energy anywhere: the 8-bit floor keeps it finite
    assert artifact_db(flat, flat) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("period", [16, 4, 2])  # the codec's grid, a ~4 px GAN grid, a 1 px checker
def test_periodic_pattern_scores_high_and_grows_with_amplitude(
    photo: torch.Tensor, period: int
) -> None:
    tile = _tile(period, seed=period)
    scores = [artifact_db(photo, _add_pattern(photo, tile, a)) for a in (1, 2, 4, 8)]
    assert scores[1] > 3.0  # ±2/255 is already visible on flat areas
    assert all(
        b > a + 2.0 for a, b in zip(scores, scores[1:], strict=False)
    )  # ~ +6 dB per doubling
    assert (
        residual_grid_db(photo, _add_pattern(photo, tile, 2)) > 20.0
    )  # the residual is the pattern


def test_gaussian_noise_reads_about_zero(photo: torch.Tensor) -> None:
    # White noise adds the same expected energy to every bin; the ratio moves only by the image's
    # own grid energy it is added to (and sampling noise over ~200 bins): measured |·| < 0.3 dB
    # for σ ≤ 5/255 on three photos, so 0.75 dB is a tolerance, not a fit.
    g = torch.Generator().manual_seed(3)
    noisy = (photo + torch.randn(photo.shape, generator=g) * 3 / 255).clamp(0, 1)
    assert abs(artifact_db(photo, noisy)) < 0.75
    assert abs(residual_grid_db(photo, noisy)) < 0.75  # the calibrated median: 0 dB for noise


@pytest.mark.parametrize("quality", [5, 10, 30])
def test_jpeg_reads_at_most_about_zero(
    photo8: np.ndarray, photo: torch.Tensor, quality: int
) -> None:
    # JPEG's 8 px blocks lie on the grid of 16, but it removes more energy there than its block
    # edges add: -3 to 0 dB measured, so a 0.5 dB threshold separates it from any visible grid.
    assert artifact_db(photo, _jpeg(photo8, quality)) <= 0.5


@pytest.mark.parametrize("radius", [1, 2])
def test_blur_reads_below_zero(photo8: np.ndarray, photo: torch.Tensor, radius: int) -> None:
    blurred = _tensor(np.asarray(Image.fromarray(photo8).filter(ImageFilter.GaussianBlur(radius))))
    assert artifact_db(photo, blurred) <= 0.0


def test_any_size_and_input_type(photo8: np.ndarray, photo: torch.Tensor) -> None:
    x = photo[:, :77, :131]  # not multiples of 16: cropped to 64×128 at the bottom/right
    x_hat = _add_pattern(x, _tile(PERIOD, 0), 4)
    assert artifact_db(x, x_hat) > 3.0
    assert artifact_db(x, x_hat) == pytest.approx(artifact_db(x[:, :64, :128], x_hat[:, :64, :128]))
    # numpy uint8 HxWx3 gives the same as the canonical tensor
    assert artifact_db(photo8, photo8) == pytest.approx(0.0, abs=1e-9)
    u8 = (x_hat.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert artifact_db(photo8[:77, :131], u8) == pytest.approx(
        artifact_db(x, torch.from_numpy(u8).permute(2, 0, 1).float() / 255), abs=1e-6
    )
    with pytest.raises(InputError, match="at least 32"):
        artifact_db(photo[:, :31, :], photo[:, :31, :])


def test_batch_matches_single(photo: torch.Tensor) -> None:
    a = _add_pattern(photo, _tile(PERIOD, 1), 2)
    batch = artifact_db_batch(torch.stack([photo, photo]), torch.stack([a, photo]))
    assert batch.shape == (2,)
    assert batch[0].item() == pytest.approx(artifact_db(photo, a))
    assert batch[1].item() == pytest.approx(0.0, abs=1e-9)


def test_phase_variance_of_a_known_pattern_and_parseval(photo: torch.Tensor) -> None:
    flat = torch.full((3, 64, 96), 0.5)
    tile = _tile(PERIOD, 2)
    # a pure pattern 4/255 · tile: the per-phase means are the tile itself, in 8-bit units
    expected = 16.0 * tile.var(unbiased=False).item()
    assert phase_variance(flat, _add_pattern(flat, tile, 4)) == pytest.approx(expected, rel=1e-4)
    # Parseval: phase variance = residual power on the grid bins / (H'W')², the same information
    g = torch.Generator().manual_seed(5)
    x_hat = (photo + torch.randn(photo.shape, generator=g) * 0.02).clamp(0, 1)
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(3, 1, 1)
    r = ((x_hat.double() - photo.double()) * w).sum(0) * 255
    power = torch.fft.fft2(r).abs().pow(2)[grid_mask(256, 256, PERIOD)].sum().item()
    assert phase_variance(photo, x_hat) == pytest.approx(power / 256**4, rel=1e-6)
