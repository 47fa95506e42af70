"""``icmbridge import``: a CompressAI checkpoint file in, an icmbridge model folder out.

Accepted, as CompressAI's own tools write or read them: a training checkpoint
(``{"state_dict": ..., "optimizer": ...}``), a bare state dict, keys prefixed ``module.`` (a
DataParallel run), the legacy entropy-bottleneck key names (renamed by CompressAI's loader), and
``.safetensors`` files. Sizes (N, M) come from the tensor shapes (the class's
``from_state_dict``). Anything that does not fit ends in one :class:`InputError` line naming it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from icmbridge.codec.archs import ARCHITECTURES, canonicalize, codec_class
from icmbridge.codec.model import CodecContract
from icmbridge.errors import InputError

#: Keys under which training scripts commonly store the model's state dict.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint file, unwrapped and without ``module.``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such checkpoint file: {str(path)!r}")
    with path.open("rb") as f:
        head = f.read(8)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        elif not head.startswith((b"PK\x03\x04", b"\x80")):  # zip (torch.save) or a pickle
            raise InputError(f"{path} is not a PyTorch checkpoint (neither zip nor pickle)")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except InputError:
        raise
    except pickle.UnpicklingError:
        raise InputError(
            f"{path} holds Python objects other than tensors and plain containers; refusing to "
            "unpickle them (save the model's state_dict)"
        ) from None
    except Exception as exc:  # torch raises many types for files that are no checkpoint
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else "unreadable"
        msg = f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {first})"
        raise InputError(msg) from None
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise InputError(f"{path} holds no state dict (a {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(
            f"{path} is not a model state dict: entry {bad[0]!r} is not a named tensor "
            f"(top-level keys: {', '.join(map(str, list(obj)[:6]))})"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _try_build(arch: str, state: dict[str, torch.Tensor]) -> CodecContract:
    cls = codec_class(arch)
    if not hasattr(cls, "from_state_dict"):
        raise InputError(f"{arch} cannot be imported (no from_state_dict)")
    return cls.from_state_dict(dict(state))


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing key {exc.args[0]!r}"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Error(s) in loading")]
    text = "; ".join(lines) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def import_checkpoint(arch: str, path: str | Path) -> CodecContract:
    """A codec of ``arch`` holding the checkpoint's weights, ready to code, or an InputError."""
    state = read_state_dict(path)
    try:
        codec = _try_build(arch, state)
    except InputError:
        raise
    except (KeyError, RuntimeError, ValueError, IndexError, TypeError) as exc:
        fits = [
            other for other in ARCHITECTURES if other not in ("icm", arch) and _fits(other, state)
        ]
        hint = f"; it looks like a {' or '.join(fits)} checkpoint" if fits else ""
        raise InputError(f"{path} does not fit {arch}: {_why(exc)}{hint}") from None
    canonicalize(codec)
    codec.eval()
    if not codec.ready_to_code():
        codec.update(force=True)
    return codec


def _fits(arch: str, state: dict[str, torch.Tensor]) -> bool:
    try:
        _try_build(arch, state)
    except Exception:
        return False
    return True
