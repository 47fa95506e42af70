"""Non-learned baselines: classical codecs at a target bitrate, and post-filters of x̂."""

from icmbridge.baselines.classical import (
    CODECS,
    ClassicalCodec,
    CodedResult,
    available_codecs,
    code_at_bpp,
    code_at_quality,
    get_codec,
)
from icmbridge.baselines.postfilter import (
    DEFAULT_GRIDS,
    PostFilter,
    bilateral,
    gaussian,
    search_filter,
)

__all__ = [
    "CODECS",
    "DEFAULT_GRIDS",
    "ClassicalCodec",
    "CodedResult",
    "PostFilter",
    "available_codecs",
    "bilateral",
    "code_at_bpp",
    "code_at_quality",
    "gaussian",
    "get_codec",
    "search_filter",
]
