"""People's metrics: ColorVideoVDP (JOD) and SSIMULACRA 2, computed by their authors' packages.

Why these two: the human decoder exists for people, and PSNR / SSIM / our grid scores are pixel
statistics. The field judges image codecs for people with metrics fitted to human ratings:
SSIMULACRA 2 (fitted to the CID22 compression study; 90 visually lossless, 50 medium, below 0
for heavy compression) and ColorVideoVDP (Mantiuk et al. 2024; JOD, 10 = no visible difference,
1 JOD = 75 % of observers prefer the better image). Both are installed from pip (``cvvdp``,
``ssimulacra2``) and run offline: ColorVideoVDP's parameters ship inside its package.

Both score the 8-bit decoded image a user would see (``uint8`` HxWx3, sRGB), never a float
decoder output: scores here equal the packages' own on the saved PNG files. ColorVideoVDP needs a
display model (size, distance, peak luminance); ``standard_fhd`` (24-inch Full HD monitor at
200 cd/m², office light, seen from 2 display heights) is the default, and any SDR display the
package knows can be named (HDR ones expect linear or PQ/HLG pixels, not 8-bit sRGB files).
Nothing is re-implemented: ColorVideoVDP is ``pycvvdp.cvvdp(...).predict`` on the arrays,
SSIMULACRA 2 is ``ssimulacra2.compute_ssimulacra2`` on lossless in-memory PPM files.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from typing import Any

import numpy as np

from icmbridge.errors import InputError
from icmbridge.metrics import catalogue

#: Result keys, in the order tables show them (the catalogue's "people" group).
PEOPLE_KEYS = catalogue.select(group="people")
DEFAULT_DISPLAY = "standard_fhd"
#: Below this side ColorVideoVDP's pyramid and SSIMULACRA 2's scales do not fit; scored as None.
MIN_SIDE = 8
#: Transfer functions of colour spaces that take linear or HDR-encoded pixels, not 8-bit sRGB.
_NOT_SDR = ("linear", "PQ", "HLG")
_PACKAGES = {"cvvdp": "pycvvdp", "ssimulacra2": "ssimulacra2"}
INSTALL = "pip install cvvdp==0.5.7 ssimulacra2==0.3.0 (see the README's setup)"


def _import(module: str) -> Any:
    """Import one of the packages. pycvvdp imports ``torch.utils.benchmark``, whose C++-extension
    module warns on every run where a CUDA folder exists without a GPU; that line says nothing
    about the metric, so it is kept off the user's terminal."""
    import importlib
    import logging

    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return importlib.import_module(module)
    finally:
        log.setLevel(level)


def missing() -> list[str]:
    """The pip names of the two packages that do not import here (empty: both are usable)."""
    out = []
    for dist, module in _PACKAGES.items():
        try:
            _import(module)
        except ImportError:
            out.append(dist)
    return out


def _require() -> None:
    gone = missing()
    if gone:
        raise InputError(
            f"people's metrics need {' and '.join(gone)}, not importable here: {INSTALL}; "
            "or skip them with --no-people-metrics"
        )


@cache
def displays() -> dict[str, str]:
    """ColorVideoVDP's SDR display models, name → description, read from the package's own
    ``display_models.json`` (``$CVVDP_PATH`` included, as the package looks it up)."""
    _require()
    from pycvvdp import utils

    models = utils.json2dict(utils.config_files.find("display_models.json", []))
    spaces = utils.json2dict(utils.config_files.find("color_spaces.json", []))
    out = {}
    for name, model in models.items():
        eotf = spaces.get(model.get("colorspace", "sRGB"), {}).get("EOTF", "sRGB")
        if eotf not in _NOT_SDR:
            out[name] = str(model.get("name", name)).strip()
    return out


def check_display(name: str) -> str:
    """``name`` if ColorVideoVDP knows it as an SDR display, else a one-line error naming them."""
    known = displays()
    if name not in known:
        raise InputError(
            f"--display {name!r} is not one of ColorVideoVDP's SDR displays: {', '.join(known)}"
        )
    return name


def _ppm(image: np.ndarray) -> io.BytesIO:
    """A lossless in-memory image file: what ``compute_ssimulacra2`` opens with Pillow."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PPM")
    buf.seek(0)
    return buf


def _uint8_rgb(image: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise InputError(f"{name}: expected an 8-bit HxWx3 array (what a user sees)")
    if image.shape[2] != 3:
        raise InputError(f"{name}: expected 3 channels, got {image.shape[2]}")
    return np.ascontiguousarray(image)


class PeopleMetrics:
    """ColorVideoVDP and SSIMULACRA 2 of a decoded 8-bit image against its original.

    One instance keeps ColorVideoVDP's model (its set-up reads the package's calibration files)
    and reuses it for every image. Call it as ``people(original, decoded)`` →
    ``{"cvvdp_jod": ..., "ssimulacra2": ...}``; images with a side below :data:`MIN_SIDE` get None.
    """

    def __init__(self, display: str = DEFAULT_DISPLAY) -> None:
        _require()
        import torch

        self.display = check_display(display)
        self._cvvdp = _import("pycvvdp").cvvdp(
            display_name=self.display, device=torch.device("cpu"), quiet=True
        )

    def info(self) -> dict[str, Any]:
        """What computed the scores: package versions and the display model (for results)."""
        return {
            "keys": list(PEOPLE_KEYS),
            "cvvdp": metadata.version("cvvdp"),
            "display": self.display,
            "display_description": displays()[self.display],
            "ssimulacra2": metadata.version("ssimulacra2"),
        }

    def cvvdp_jod(self, original: np.ndarray, decoded: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            jod, _ = self._cvvdp.predict(decoded, original, dim_order="HWC")
        return float(jod)

    @staticmethod
    def ssimulacra2(original: np.ndarray, decoded: np.ndarray) -> float:
        from ssimulacra2 import compute_ssimulacra2

        return float(compute_ssimulacra2(_ppm(original), _ppm(decoded)))

    def __call__(self, original: np.ndarray, decoded: np.ndarray) -> dict[str, float | None]:
        a, b = _uint8_rgb(original, "original"), _uint8_rgb(decoded, "decoded")
        if a.shape != b.shape:
            raise InputError(f"original and decoded differ in shape: {a.shape} vs {b.shape}")
        if min(a.shape[:2]) < MIN_SIDE:
            return dict.fromkeys(PEOPLE_KEYS)
        return {"cvvdp_jod": self.cvvdp_jod(a, b), "ssimulacra2": self.ssimulacra2(a, b)}


# ------------------------------------------------------------------------ command-line options
def people_from_args(args: argparse.Namespace) -> PeopleMetrics | None:
    """The metrics of parsed ``--display`` and ``--no-people-metrics`` (None when skipped); a
    bad display or a missing package is a one-line error before any coding starts."""
    if not getattr(args, "people_metrics", True):
        return None
    return PeopleMetrics(getattr(args, "display", DEFAULT_DISPLAY))


def people_argv(args: argparse.Namespace) -> list[str]:
    """The options as words, for the command line a results file records."""
    if not getattr(args, "people_metrics", True):
        return ["--no-people-metrics"]
    display = getattr(args, "display", DEFAULT_DISPLAY)
    return [] if display == DEFAULT_DISPLAY else ["--display", display]


def people_options(args: argparse.Namespace) -> dict[str, Any]:
    """``people_metrics`` and ``display`` keywords of parsed options (the display checked only
    when the metrics are computed), for ``run_demo`` and ``run_ablation``."""
    return {
        "people_metrics": args.people_metrics,
        "display": check_display(args.display) if args.people_metrics else DEFAULT_DISPLAY,
    }


def people_info(people: PeopleMetrics | None) -> Mapping[str, Any] | None:
    """What a results file records about the people's metrics (None: not computed)."""
    return None if people is None else people.info()
