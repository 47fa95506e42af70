"""Classical image codecs (JPEG, WebP, AVIF, HEIF, JPEG 2000, JPEG XL) at a target bitrate.

The paper compares its learned codec with classical codecs *at the same real bitrate*, so the unit
here is bytes on disk: ``bpp = len(bitstream) · 8 / (H · W)``, container headers included (no
estimated rates). Every codec goes through Pillow (HEIF through ``pillow_heif``), runs single
threaded (deterministic bytes, and fair timings on a shared machine) and takes an ``(H, W, 3)``
``uint8`` RGB array.

Each codec has one native quality knob with a known range and direction; :func:`code_at_bpp`
searches it for the largest bitrate that does not exceed a target::

    res = code_at_bpp("webp", image, 0.15)
    res.bpp, res.quality, res.decoded  # real bpp <= 0.15 (or res.above_target), knob, uint8 array

The search assumes the bitrate grows monotonically with the knob, which holds to within a few
bytes for all of these encoders; on a rare non-monotonic step it still returns a point that is
within the target, just maybe not the very largest one.

Codecs whose library is missing stay in the registry: :func:`available_codecs` says why, and using
them raises :class:`~icmbridge.errors.InputError` with that reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, features

from icmbridge.errors import InputError

#: The JPEG XL plugin version this module was checked with (optional dependency).
JXL_PLUGIN_REQUIREMENT = "pillow-jxl-plugin==1.3.8"

#: Bisection steps for codecs whose knob is continuous (JPEG 2000's compression ratio).
FLOAT_SEARCH_STEPS = 24


def _check_image(image: np.ndarray) -> np.ndarray:
    """Refuse anything but an ``(H, W, 3)`` uint8 array: silent casts would change the bytes."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image: expected a numpy.ndarray (H, W, 3) uint8, got {type(image)}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"image: expected shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(
            f"image: expected dtype uint8, got {image.dtype}; convert float images in [0, 1] "
            "with (x * 255).round().astype(np.uint8)"
        )
    return np.ascontiguousarray(image)


def _pillow_encode(fmt: str, **options: object) -> Callable[[np.ndarray, float], bytes]:
    def encode(image: np.ndarray, quality: float) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(image, "RGB").save(buf, format=fmt, **options, **_quality_kw(fmt, quality))
        return buf.getvalue()

    return encode


def _quality_kw(fmt: str, quality: float) -> dict[str, object]:
    if fmt == "JPEG2000":  # the knob is the compression ratio versus raw 24-bit RGB
        return {"quality_mode": "rates", "quality_layers": [float(quality)]}
    return {"quality": int(quality)}


def _pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _heif_encode(image: np.ndarray, quality: float) -> bytes:
    import pillow_heif

    buf = io.BytesIO()
    heif = pillow_heif.from_bytes(
        mode="RGB", size=(image.shape[1], image.shape[0]), data=image.tobytes()
    )
    heif.save(buf, quality=int(quality))
    return buf.getvalue()


def _heif_decode(data: bytes) -> np.ndarray:
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    out = np.asarray(heif)
    return np.ascontiguousarray(out[..., :3])


def _pillow_feature(feature: str, what: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if features.check(feature):
            return None
        return f"this Pillow build has no {what} support (features.check({feature!r}) is False)"

    return check


def _heif_reason() -> str | None:
    if importlib.util.find_spec("pillow_heif") is None:
        return "pillow_heif is not installed (pip install pillow-heif)"
    import pillow_heif

    info = pillow_heif.libheif_info()
    if not info.get("HEIF"):
        return "pillow_heif was built without an HEVC encoder (libheif_info()['HEIF'] is empty)"
    return None


def _jxl_reason() -> str | None:
    if importlib.util.find_spec("pillow_jxl") is None:
        return f"the JPEG XL plugin is not installed (pip install {JXL_PLUGIN_REQUIREMENT})"
    importlib.import_module("pillow_jxl")  # registers the JXL format with Pillow
    return None


@dataclass(frozen=True)
class ClassicalCodec:
    """One classical codec and its quality knob.

    ``q_min``/``q_max`` bound the knob; ``increasing`` says whether a larger value gives more bytes
    (JPEG 2000's compression ratio gives fewer). ``integer`` knobs are searched exactly, the others
    by bisection (in log space when ``log_scale``).
    """

    name: str
    description: str
    q_min: float
    q_max: float
    increasing: bool
    integer: bool
    _encode: Callable[[np.ndarray, float], bytes]
    _decode: Callable[[bytes], np.ndarray]
    _reason: Callable[[], str | None]
    log_scale: bool = False

    def unavailable_reason(self) -> str | None:
        """``None`` if the codec can be used here, else why not (missing library or plugin)."""
        return self._reason()

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def _require(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise InputError(f"codec {self.name!r} is not available: {reason}")

    def check_quality(self, quality: float) -> float:
        if not (isinstance(quality, int | float) and math.isfinite(quality)):
            raise InputError(f"{self.name}: quality must be a finite number, got {quality!r}")
        if self.integer and quality != int(quality):
            raise InputError(f"{self.name}: quality must be an integer, got {quality}")
        if not self.q_min <= quality <= self.q_max:
            raise InputError(
                f"{self.name}: quality {quality} outside [{self.q_min:g}, {self.q_max:g}]"
            )
        return int(quality) if self.integer else float(quality)

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        """The codec's bitstream (a complete file) of ``image`` at ``quality``."""
        self._require()
        return self._encode(_check_image(image), self.check_quality(quality))

    def decode(self, data: bytes) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB of a bitstream written by :meth:`encode`."""
        self._require()
        if not data:
            raise InputError(f"{self.name}: cannot decode an empty bitstream")
        try:
            return self._decode(bytes(data))
        except (OSError, ValueError, SyntaxError, RuntimeError) as e:
            raise InputError(f"{self.name}: cannot decode the bitstream ({e})") from e


CODECS: dict[str, ClassicalCodec] = {
    c.name: c
    for c in [
        ClassicalCodec(
            "jpeg",
            "Pillow libjpeg, optimized Huffman tables, 4:2:0",
            1,
            95,
            True,
            True,
            _pillow_encode("JPEG", optimize=True),
            _pillow_decode,
            _pillow_feature("jpg", "JPEG"),
        ),
        ClassicalCodec(
            "webp",
            "Pillow libwebp lossy, method 6 (slowest, best)",
            0,
            100,
            True,
            True,
            _pillow_encode("WEBP", method=6),
            _pillow_decode,
            _pillow_feature("webp", "WebP"),
        ),
        ClassicalCodec(
            "avif",
            "Pillow AVIF plugin (libavif, AV1 intra), speed 6, 4:2:0, 1 thread",
            0,
            100,
            True,
            True,
            _pillow_encode("AVIF", speed=6, max_threads=1),
            _pillow_decode,
            _pillow_feature("avif", "AVIF"),
        ),
        ClassicalCodec(
            "heif",
            "pillow_heif (libheif + x265, HEVC intra), 4:2:0",
            0,
            100,
            True,
            True,
            _heif_encode,
            _heif_decode,
            _heif_reason,
        ),
        ClassicalCodec(
            "jpeg2000",
            "Pillow OpenJPEG, irreversible 9/7 wavelet; knob = compression ratio vs 24 bpp",
            2.0,
            2000.0,
            False,
            False,
            _pillow_encode("JPEG2000", irreversible=True),
            _pillow_decode,
            _pillow_feature("jpg_2000", "JPEG 2000"),
            log_scale=True,
        ),
        ClassicalCodec(
            "jxl",
            "pillow-jxl-plugin (libjxl), effort 7, 1 thread; quality 0..99 (100 is refused)",
            0,
            99,
            True,
            True,
            _pillow_encode("JXL", effort=7, num_threads=1),
            _pillow_decode,
            _jxl_reason,
        ),
    ]
}


def get_codec(name: str) -> ClassicalCodec:
    """The registered codec ``name`` (whether or not it is available)."""
    try:
        return CODECS[name]
    except KeyError:
        raise InputError(
            f"unknown classical codec {name!r}; known: {', '.join(sorted(CODECS))}"
        ) from None


def available_codecs() -> dict[str, str | None]:
    """Every registered codec → ``None`` if usable here, else the reason it is not."""
    return {name: codec.unavailable_reason() for name, codec in CODECS.items()}


class CodedResult(NamedTuple):
    """One image coded by a classical codec; ``bpp`` counts the real bytes of ``data``."""

    name: str
    quality: float
    bpp: float
    data: bytes
    decoded: np.ndarray
    encode_s: float
    decode_s: float
    above_target: bool = False


def _bpp(data: bytes, image: np.ndarray) -> float:
    return len(data) * 8.0 / (image.shape[0] * image.shape[1])


def _finish(
    codec: ClassicalCodec,
    image: np.ndarray,
    quality: float,
    data: bytes,
    encode_s: float,
    above: bool,
) -> CodedResult:
    t0 = time.perf_counter()
    decoded = codec.decode(data)
    decode_s = time.perf_counter() - t0
    if decoded.shape != image.shape:
        raise RuntimeError(
            f"{codec.name} decoded {decoded.shape} from an image of {image.shape}"
        )  # a library bug, not a user error
    return CodedResult(
        codec.name, quality, _bpp(data, image), data, decoded, encode_s, decode_s, above
    )


def code_at_quality(codec_name: str, image: np.ndarray, quality: float) -> CodedResult:
    """Encode and decode ``image`` at the codec's native ``quality`` (timed separately)."""
    codec = get_codec(codec_name)
    image = _check_image(image)
    quality = codec.check_quality(quality)
    t0 = time.perf_counter()
    data = codec.encode(image, quality)
    return _finish(codec, image, quality, data, time.perf_counter() - t0, False)


def code_at_bpp(codec_name: str, image: np.ndarray, target_bpp: float) -> CodedResult:
    """Code ``image`` at the largest real bitrate ≤ ``target_bpp`` that the quality knob reaches.

    Bisection on the knob (≈7 encodes for a 0..100 knob, :data:`FLOAT_SEARCH_STEPS` for JPEG 2000),
    deterministic for a given image and library build. When even the lowest-rate setting exceeds
    the target, that setting is returned with ``above_target=True`` so that tables can mark it
    instead of silently comparing at a higher rate. ``encode_s`` is the time of the one encode
    that produced ``data``, not of the whole search.
    """
    codec = get_codec(codec_name)
    image = _check_image(image)
    if not (isinstance(target_bpp, int | float) and math.isfinite(target_bpp) and target_bpp > 0):
        raise InputError(f"target_bpp must be a positive number, got {target_bpp!r}")
    codec._require()

    cache: dict[float, tuple[bytes, float]] = {}

    def trial(q: float) -> tuple[bytes, float]:
        if q not in cache:
            t0 = time.perf_counter()
            data = codec.encode(image, q)
            cache[q] = (data, time.perf_counter() - t0)
        return cache[q]

    # position t in [0, 1] → knob value, with the bitrate growing in t
    lo_q, hi_q = (codec.q_min, codec.q_max) if codec.increasing else (codec.q_max, codec.q_min)
    lowest, highest = trial(_knob(codec, lo_q)), trial(_knob(codec, hi_q))
    if _bpp(lowest[0], image) > target_bpp:
        return _finish(codec, image, _knob(codec, lo_q), *lowest, True)
    if _bpp(highest[0], image) <= target_bpp:
        return _finish(codec, image, _knob(codec, hi_q), *highest, False)

    if codec.integer:
        # invariant: bpp(lo) <= target < bpp(hi), integers along the "more bytes" direction
        sign = 1 if codec.increasing else -1
        lo, hi = int(lo_q), int(hi_q)
        while abs(hi - lo) > 1:
            mid = lo + sign * (abs(hi - lo) // 2)
            if _bpp(trial(mid)[0], image) <= target_bpp:
                lo = mid
            else:
                hi = mid
        best = lo
    else:
        lo_t, hi_t = 0.0, 1.0
        for _ in range(FLOAT_SEARCH_STEPS):
            mid = (lo_t + hi_t) / 2
            if _bpp(trial(_position(codec, lo_q, hi_q, mid))[0], image) <= target_bpp:
                lo_t = mid
            else:
                hi_t = mid
        best = _position(codec, lo_q, hi_q, lo_t)
    return _finish(codec, image, best, *trial(best), False)


def _knob(codec: ClassicalCodec, q: float) -> float:
    return int(q) if codec.integer else float(q)


def _position(codec: ClassicalCodec, a: float, b: float, t: float) -> float:
    """Knob value a fraction ``t`` of the way from ``a`` to ``b`` (geometric when log-scaled)."""
    if t == 0.0:
        return float(a)
    if codec.log_scale:
        return float(math.exp(math.log(a) + t * (math.log(b) - math.log(a))))
    return float(a + t * (b - a))
