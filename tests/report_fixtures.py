"""A small fake RESULTS_DIR, shaped like the output of `icmbridge demo`, for the report tests."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

SIZE = 256  # images are SIZE × SIZE; the checkerboard fills one SIZE/2 quadrant


def checkerboard(height: int, width: int, amplitude: float = 12.0) -> np.ndarray:
    """A period-16 checkerboard (8-px squares) like a stride-16 transposed-conv decoder's."""
    y, x = np.mgrid[:height, :width]
    return amplitude * np.sign(
        np.cos(2 * np.pi * (x + 0.5) / 16) * np.cos(2 * np.pi * (y + 0.5) / 16)
    )


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([gaussian_filter(img[..., c].astype(np.float64), sigma) for c in range(3)], -1)


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), len(buf.getvalue())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def test_images() -> dict[str, np.ndarray]:
    from skimage import data

    astro = data.astronaut()
    return {
        "astronaut": astro[::2, ::2].copy(),  # the whole photo at half size
        "rocket": astro[0:SIZE, SIZE : 2 * SIZE].copy(),  # top right at full size
    }


def make_results_dir(
    root: Path,
    *,
    quadrant: tuple[int, int] = (1, 0),
    optional: bool = True,
    nulls: bool = False,
) -> Path:
    """Write RESULTS_DIR under ``root``: the base decoder's checkerboard is in ``quadrant`` only.

    ``quadrant`` is (row, column) of the SIZE/2 block; ``optional`` adds table1, tradeoff,
    rate_curves and bd_rate; ``nulls`` blanks most metric values.
    """
    root.mkdir(parents=True, exist_ok=True)
    qy, qx = quadrant
    half = SIZE // 2
    codecs: dict[str, dict[str, Any]] = {}
    kinds = {"base": "ours", "human": "ours", "human-li": "ours", "jpeg": "classical",
             "base+bilateral": "postfilter"}  # fmt: skip
    for label in kinds:
        codecs[label] = {"kind": kinds[label], "description": f"{label} decoder", "images": []}
    codecs["base+bilateral"]["params"] = {"sigma_color": 0.1, "sigma_spatial": 1.5}
    for name, img in test_images().items():
        (root / "originals").mkdir(exist_ok=True)
        Image.fromarray(img).save(root / "originals" / f"{name}.png")
        blurred = _blur(img, 0.8)
        grid = np.zeros_like(blurred)
        grid[qy * half : (qy + 1) * half, qx * half : (qx + 1) * half] = checkerboard(half, half)[
            ..., None
        ]
        jpeg, nbytes = _jpeg(img, 8)
        outputs = {
            "base": (_u8(blurred + grid), 0.25),
            "human": (_u8(blurred), 0.25),
            "human-li": (_u8(_blur(img, 0.7) + 0.3 * grid), 0.25),
            "base+bilateral": (_u8(_blur(blurred + grid, 1.5)), 0.25),
            "jpeg": (jpeg, nbytes * 8 / img.shape[0] / img.shape[1]),
        }
        for label, (dec, bpp) in outputs.items():
            (root / "decoded" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(dec).save(root / "decoded" / label / f"{name}.png")
            art = {"base": 9.5, "human": -1.5, "human-li": 2.0, "base+bilateral": -4.0}
            codecs[label]["images"].append(
                {
                    "name": name,
                    "bpp": bpp,
                    "psnr": None if nulls else _psnr(img, dec),
                    "ssim": None if nulls else 0.8,
                    "artifact_db": art.get(label, 0.1),
                    "task_ap50": None if nulls else 0.9,
                    "vgg_distance": None,
                }
            )
    for label, c in codecs.items():
        keys = ("bpp", "psnr", "ssim", "artifact_db")
        c["mean"] = {
            k: None if nulls and k != "bpp" else float(np.mean([i[k] for i in c["images"]]))
            for k in keys
        }
        ap = {"base": 0.93, "human": 0.91, "human-li": 0.925, "base+bilateral": 0.9, "jpeg": 0.7}
        c["mean"]["task_ap50"] = None if nulls else ap[label]
        c["mean"]["task_ap"] = None if nulls else ap[label] - 0.3
    results: dict[str, Any] = {
        "title": "icmbridge demo",
        "created": "2025-01-01T00:00:00",
        "command": "icmbridge demo",
        "set": "faces:test",
        "task": "face",
        "ground_truth": "pseudo" if nulls else "annotations",
        "uncompressed": {"task_ap": 0.66, "task_ap50": 0.95},
        "codecs": codecs,
    }
    if optional:
        results["table1"] = [
            {"config": "Base codec", "task_ap50": 0.93, "psnr": 27.7, "ssim": 0.71,
             "feature_distance": 0.49, "artifact_db": 9.5, "rel_task_ap50": None},
            {"config": "3 patches 64×64", "task_ap50": 0.913, "psnr": 28.5, "ssim": 0.76,
             "feature_distance": 0.50, "artifact_db": -1.5, "rel_task_ap50": -1.8},
            {"config": "3 patches 128×128, LI", "task_ap50": None, "psnr": 28.1, "ssim": 0.73,
             "feature_distance": 0.47, "artifact_db": 2.0, "rel_task_ap50": 0.0},
        ]  # fmt: skip
        results["tradeoff"] = [
            {"lambda_a": lam, "task_ap50": 0.93 - 2 * lam, "psnr": 27.7 + 5 * lam,
             "artifact_db": 9.5 - 100 * lam} for lam in (0.001, 0.01, 0.05, 0.1)
        ]  # fmt: skip
        results["rate_curves"] = {
            "ours": [{"bpp": b, "psnr": 24 + 8 * b, "task_ap50": 0.8 + 0.4 * b} for b in
                     (0.1, 0.2, 0.3)],
            "jpeg": [{"bpp": b, "psnr": 21 + 9 * b, "task_ap50": 0.5 + 0.6 * b} for b in
                     (0.2, 0.35, 0.5)],
        }  # fmt: skip
        results["bd_rate"] = {"jpeg": {"psnr": -12.3, "task_ap50": -40.1}, "webp": {"psnr": None}}
        results["bd_rate_ci"] = {"jpeg": {"psnr": [-20.5, -4.0], "task_ap50": None}}
        # intervals as `compare` writes them: human's PSNR gain is sure, its AP50 change is not
        for c in codecs.values():
            c["ci"] = {"psnr": [c["mean"]["psnr"] - 0.8, c["mean"]["psnr"] + 0.7]}
        codecs["human"]["vs"] = {
            "reference": "base",
            "diff": {
                "psnr": {"diff": 0.61, "ci": [0.52, 0.70], "covers_zero": False},
                "task_ap50": {"diff": -0.02, "ci": [-0.05, 0.01], "covers_zero": True,
                              "rel": -2.15, "rel_ci": [-5.4, 1.1]},
            },
        }  # fmt: skip
        results["table1"][1]["vs_base"] = {"task_ap50": codecs["human"]["vs"]["diff"]["task_ap50"]}
    (root / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return root


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--virtual-time-budget=2000", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def page_in_browser(page: Path, profile: Path) -> tuple[str, dict[str, str]]:
    """Render ``page`` in headless Chromium: the DOM after its script ran, and the ``data-*``
    attributes of ``<body>``; asserts the script ran and every image loaded."""
    run = _chromium(page, profile, "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", run.stdout)
    assert body, run.stdout[:500]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("ready") == "1", attrs
    assert attrs["images-failed"] == "0", attrs
    assert int(attrs["images-loaded"]) == int(attrs["images-total"]), attrs
    return run.stdout, attrs
