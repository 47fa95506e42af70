"""Classical codecs at a target bitrate, and the post-filters of the base decoder's output."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from icmbridge.baselines import (
    CODECS,
    PostFilter,
    available_codecs,
    bilateral,
    classical,
    code_at_bpp,
    code_at_quality,
    gaussian,
    get_codec,
    search_filter,
)
from icmbridge.errors import InputError
from icmbridge.metrics import psnr

EXPECTED = {"jpeg", "webp", "avif", "heif", "jpeg2000", "jxl"}

#: A knob setting of good quality per codec (J2K's knob is a compression ratio: lower is better).
GOOD = {"jpeg": 90, "webp": 90, "avif": 80, "heif": 80, "jpeg2000": 8.0, "jxl": 90}


@pytest.fixture(scope="module")
def crop(astronaut: np.ndarray) -> np.ndarray:
    """128² of the face and helmet: texture and edges, small enough for fast searches."""
    return np.ascontiguousarray(astronaut[30:158, 150:278])


def _require(name: str) -> None:
    reason = available_codecs()[name]
    if reason is not None:
        pytest.skip(f"{name} unavailable: {reason}")


# ------------------------------------------------------------------------- classical codecs
def test_registry_lists_every_codec_with_a_reason_when_absent() -> None:
    status = available_codecs()
    assert set(status) == set(CODECS) == EXPECTED
    for name, reason in status.items():
        assert reason is None or (isinstance(reason, str) and reason), name
        assert CODECS[name].available() == (reason is None)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_trip_of_a_real_photo(name: str, crop: np.ndarray) -> None:
    _require(name)
    codec = get_codec(name)
    data = codec.encode(crop, GOOD[name])
    out = codec.decode(data)
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert psnr(crop, out) > 30.0
    assert codec.encode(crop, GOOD[name]) == data  # deterministic bytes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_odd_sizes_keep_their_shape(name: str, astronaut: np.ndarray) -> None:
    _require(name)
    odd = np.ascontiguousarray(astronaut[100:145, 200:237])  # 45×37
    res = code_at_quality(name, odd, GOOD[name] if name != "jpeg2000" else 2.0)
    assert res.decoded.shape == odd.shape
    assert psnr(odd, res.decoded) > 25.0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_code_at_bpp_stays_under_target_and_more_bits_give_more_psnr(
    name: str, crop: np.ndarray
) -> None:
    _require(name)
    results = [code_at_bpp(name, crop, t) for t in (0.4, 1.5)]
    for target, res in zip((0.4, 1.5), results, strict=True):
        assert res.name == name
        assert res.bpp == pytest.approx(len(res.data) * 8 / (128 * 128))
        assert res.bpp <= target or res.above_target
        assert res.encode_s >= 0 and res.decode_s >= 0
        np.testing.assert_array_equal(res.decoded, get_codec(name).decode(res.data))
    low, high = results
    assert not high.above_target and high.bpp > low.bpp
    assert psnr(crop, high.decoded) > psnr(crop, low.decoded)
    assert code_at_bpp(name, crop, 0.4).data == low.data  # deterministic search


def test_code_at_bpp_takes_the_largest_rate_under_the_target(crop: np.ndarray) -> None:
    res = code_at_bpp("jpeg", crop, 0.8)
    assert res.bpp <= 0.8 and res.quality < 95
    assert code_at_quality("jpeg", crop, res.quality + 1).bpp > 0.8


def test_unreachable_target_is_flagged_not_hidden(crop: np.ndarray) -> None:
    res = code_at_bpp("jpeg", crop, 0.001)
    assert res.above_target and res.quality == 1 and res.bpp > 0.001
    j2k = get_codec("jpeg2000")
    if j2k.available():  # decreasing knob: its lowest rate is the largest ratio
        assert code_at_bpp("jpeg2000", crop, 1e-4).quality == j2k.q_max


def test_unavailable_codec_reports_its_reason(
    monkeypatch: pytest.MonkeyPatch, crop: np.ndarray
) -> None:
    real_find_spec = classical.importlib.util.find_spec
    monkeypatch.setattr(
        classical.importlib.util,
        "find_spec",
        lambda n, *a: None if n == "pillow_jxl" else real_find_spec(n, *a),
    )
    reason = available_codecs()["jxl"]
    assert reason is not None and "pillow-jxl-plugin" in reason
    with pytest.raises(InputError, match="not available.*pillow-jxl-plugin"):
        code_at_bpp("jxl", crop, 0.5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda im: code_at_bpp("mpeg", im, 0.5), "unknown classical codec"),
        (lambda im: code_at_bpp("jpeg", im.astype(np.float32) / 255, 0.5), "uint8"),
        (lambda im: code_at_bpp("jpeg", im[..., 0], 0.5), r"\(H, W, 3\)"),
        (lambda im: code_at_bpp("jpeg", im, 0.0), "positive"),
        (lambda im: code_at_quality("jpeg", im, 100), "outside"),
        (lambda im: code_at_quality("jpeg", im, 50.5), "integer"),
        (lambda im: get_codec("jpeg").decode(b"not a jpeg"), "cannot decode"),
    ],
)
def test_bad_inputs_raise_input_errors(call, match: str, crop: np.ndarray) -> None:
    with pytest.raises(InputError, match=match):
        call(crop)


# ------------------------------------------------------------------------------ post-filters
@pytest.fixture(scope="module")
def x(crop: np.ndarray) -> torch.Tensor:
    return torch.tensor(crop).permute(2, 0, 1).float() / 255


def test_gaussian_with_tiny_sigma_is_identity(x: torch.Tensor, crop: np.ndarray) -> None:
    for sigma in (0.0, 1e-3):
        assert torch.equal(gaussian(x, sigma), x)
        np.testing.assert_array_equal(gaussian(crop, sigma), crop)
    assert not torch.equal(gaussian(x, 1.0), x)
    with pytest.raises(InputError, match="sigma"):
        gaussian(x, -1.0)


def test_filters_keep_type_and_shape(x: torch.Tensor, crop: np.ndarray) -> None:
    assert bilateral(x, 0.1, 1.0).shape == x.shape
    assert bilateral(x[None], 0.1, 1.0).shape == (1, *x.shape)
    out = bilateral(crop, 0.1, 1.0)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == crop.shape


def test_bilateral_removes_noise(x: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(0)
    noisy = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert psnr(x, bilateral(noisy, 0.15, 1.5)) > psnr(x, noisy) + 2.0
    # an edge-preserving filter: a tiny colour sigma leaves the image nearly untouched
    assert psnr(noisy, bilateral(noisy, 1e-3, 1.5)) > 50.0


@pytest.fixture(scope="module")
def pairs(astronaut: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    crops = [
        np.ascontiguousarray(astronaut[i : i + 64, j : j + 64]) for i, j in [(40, 180), (300, 60)]
    ]
    return [(c, code_at_quality("jpeg", c, 8).decoded) for c in crops]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a).permute(2, 0, 1) / 255.0


@pytest.mark.parametrize(
    "kind, grid",
    [
        ("gaussian", {"sigma": [0.3, 0.8, 1.5]}),
        ("bilateral", {"sigma_color": [0.05, 0.3], "sigma_spatial": [1.0, 2.0]}),
    ],
)
def test_search_filter_finds_the_brute_force_best(kind: str, grid, pairs) -> None:
    best, best_psnr = search_filter(kind, pairs, grid)
    scores = {}
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        f = PostFilter(kind, params)
        scores[values] = np.mean([psnr(_t(o), f.apply(_t(d))) for o, d in pairs])
    want = max(scores, key=scores.get)
    assert best == dict(zip(grid, want, strict=True))
    assert best_psnr == pytest.approx(scores[want], abs=1e-4)
    assert best_psnr > np.mean([psnr(o, d) for o, d in pairs])  # JPEG q8 blocks: filtering helps


def test_search_filter_default_grid_and_errors(pairs) -> None:
    params, value = search_filter("gaussian", pairs)
    assert set(params) == {"sigma"} and np.isfinite(value)
    with pytest.raises(InputError, match="kind"):
        search_filter("median", pairs)
    with pytest.raises(InputError, match="grid"):
        search_filter("bilateral", pairs, {"sigma": [1.0]})
    with pytest.raises(InputError, match="at least one"):
        search_filter("gaussian", [])


def test_postfilter_interface() -> None:
    f = PostFilter("bilateral", {"sigma_color": 0.1, "sigma_spatial": 1.5})
    assert str(f) == "bilateral(sigma_color=0.1, sigma_spatial=1.5)"
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(PostFilter("identity").apply(img), img)
    with pytest.raises(InputError, match="unknown post-filter"):
        PostFilter("median", {})
    with pytest.raises(InputError, match="takes parameters"):
        PostFilter("gaussian", {"sigma_color": 1.0})


def _reference_gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The separable Gaussian written out: taps exp(-d²/2σ²) over ±ceil(3σ), normalised."""
    import math

    import torch.nn.functional as F

    r = math.ceil(3.0 * sigma)
    d = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-(d**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    b, c, h, w = x.shape
    y = F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(F.conv2d(y, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def _reference_bilateral(x: torch.Tensor, sc: float, ss: float) -> torch.Tensor:
    """The bilateral filter written out tap by tap: spatial × RGB-distance weights."""
    import math

    import torch.nn.functional as F

    r = min(7, max(1, math.ceil(2.0 * ss)))
    _, _, h, w = x.shape
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    num, den = torch.zeros_like(x), torch.zeros_like(x[:, :1])
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            s = xp[:, :, r + dy : r + dy + h, r + dx : r + dx + w]
            wgt = torch.exp(-(s - x).pow(2).sum(1, keepdim=True) / (2 * sc * sc))
            wgt = wgt * math.exp(-(dy * dy + dx * dx) / (2 * ss * ss))
            num, den = num + wgt * s, den + wgt
    return (num / den).clamp(0, 1)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_gaussian_is_the_written_out_filter(x: torch.Tensor, sigma: float) -> None:
    ref = _reference_gaussian(x[None], sigma)[0]
    assert (gaussian(x, sigma) - ref).abs().max() < 2e-6


@pytest.mark.parametrize(("sc", "ss"), [(0.05, 1.0), (0.1, 1.5), (0.4, 3.0)])
def test_bilateral_is_the_written_out_filter(x: torch.Tensor, sc: float, ss: float) -> None:
    ref = _reference_bilateral(x[None], sc, ss)[0]
    assert (bilateral(x, sc, ss) - ref).abs().max() < 2e-6
