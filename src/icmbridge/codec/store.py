"""Saving and loading codecs: safetensors weights + a JSON config, by name or by path.

A model is a folder holding ``model.safetensors`` and ``config.json``. Shipped models live in
``weights/NAME/`` (override the folder with ``ICMBRIDGE_WEIGHTS``); training writes the same
layout into its checkpoints, so a checkpoint loads exactly like a shipped model. Loading leaves the
codec in eval mode with its CDF tables ready: ``update()`` is never the caller's job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from icmbridge.codec.model import CodecConfig, CodecContract
from icmbridge.errors import InputError
from icmbridge.utils.atomic import atomic_directory

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "icmbridge-codec"
#: Newest model-folder format read: 1 = our icm architecture, 2 = any architecture (``arch``),
#: 3 = a human decoder whose synthesis differs from the base's (``decoder``, see .decoders).
FORMAT_VERSION = 3


def weights_dir() -> Path:
    env = os.environ.get("ICMBRIDGE_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "weights"


def available_models() -> list[str]:
    root = weights_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / WEIGHTS_FILE).is_file())


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Find a model folder from a shipped name, a folder, a ``.safetensors`` file or a run dir."""
    path = Path(name_or_path)
    candidates = [path, path / "checkpoints" / "last"]
    if path.suffix == ".safetensors":
        candidates.insert(0, path.parent)
    if not path.is_absolute() and len(path.parts) == 1:
        candidates.append(weights_dir() / path)
    for folder in candidates:
        if (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file():
            return folder
    shipped = ", ".join(available_models()) or "none"
    raise InputError(
        f"no model at {str(name_or_path)!r}: give a shipped name ({shipped}) or a folder with "
        f"{WEIGHTS_FILE} and {CONFIG_FILE}"
    )


def read_config(folder: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {folder / CONFIG_FILE}: {exc}") from None
    if cfg.get("format") != FORMAT:
        raise InputError(f"{folder / CONFIG_FILE} is not an icmbridge codec config")
    if cfg.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"{folder} was written by a newer icmbridge; upgrade to load it")
    return cfg


def build_codec(config: CodecConfig | str, arch: str = "icm") -> CodecContract:
    """A randomly initialised codec of ``arch`` with a named size configuration or sizes."""
    from icmbridge.codec.archs import build_arch

    if isinstance(config, str):
        return build_arch(arch, config)
    return build_arch(arch, config.to_dict())


def load_codec(
    name_or_path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> CodecContract:
    """Load a codec of any registered architecture, ready to code (eval mode, CDF tables)."""
    from icmbridge.codec.archs import build_arch, codec_class, is_user_arch

    folder = resolve_model_path(name_or_path)
    cfg = read_config(folder)
    arch = cfg.get("arch", "icm")
    try:
        state = load_file(folder / WEIGHTS_FILE)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise InputError(f"cannot read {folder / WEIGHTS_FILE}: {exc}") from None
    try:
        if is_user_arch(arch):  # sizes from the tensor shapes, as the user's class reads them
            codec = codec_class(arch).from_state_dict(state)
        else:
            codec = build_arch(arch, dict(cfg["codec"]))
    except (KeyError, TypeError) as exc:
        raise InputError(f"{folder / CONFIG_FILE}: bad codec sizes ({exc})") from None
    if cfg.get("decoder"):  # a human decoder whose synthesis differs from the base's
        from icmbridge.codec.decoders import install_decoder

        install_decoder(codec, cfg["decoder"])
    try:
        codec.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(
            f"{folder / WEIGHTS_FILE} does not fit the codec sizes in its config "
            f"{cfg['codec']}: {' '.join(first[:3])}"
        ) from None
    codec.to(device).eval()
    if not codec.ready_to_code():
        codec.update(force=True)
    codec.meta = cfg.get("meta", {})  # type: ignore[attr-defined]
    return codec


def codec_state(codec: CodecContract, half: bool = False) -> dict[str, torch.Tensor]:
    """The state dict as safetensors wants it: contiguous CPU tensors, no shared storage.

    ``half`` stores the transforms' float tensors as float16 (loading casts them back to
    float32); the entropy models (their parameters, scale table and CDF tables) stay exact, so
    the tables still match what they were built from.
    """
    from compressai.entropy_models import EntropyModel

    exact = tuple(
        name + "."
        for name, m in codec.named_modules()  # type: ignore[attr-defined]
        if isinstance(m, EntropyModel)
    )
    state = {}
    for k, v in codec.state_dict().items():  # type: ignore[attr-defined]
        v = v.detach().to("cpu")
        if half and v.is_floating_point() and not k.startswith(exact):
            v = v.to(torch.float16)
        state[k] = v.contiguous().clone()
    return state


def write_model(
    folder: Path, codec: CodecContract, meta: dict[str, Any] | None = None, half: bool = False
) -> None:
    """Write ``model.safetensors`` + ``config.json`` into an existing folder (no atomicity)."""
    if not codec.ready_to_code():
        codec.update(force=True)
    save_file(codec_state(codec, half), str(folder / WEIGHTS_FILE))
    cfg = {
        "format": FORMAT,
        # icm folders stay version 1 (older releases read them); others need this release.
        "format_version": 1 if codec.arch == "icm" else 2,
        "arch": codec.arch,
        "codec": codec.sizes(),
        "meta": meta or {},
    }
    from icmbridge.codec.decoders import decoder_spec

    spec = decoder_spec(codec)
    if spec.arch != "same":  # only then version 3: older releases say "upgrade", not a KeyError
        cfg["decoder"] = spec.to_dict()
        cfg["format_version"] = 3
    (folder / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save_codec(
    codec: CodecContract,
    folder: str | os.PathLike[str],
    meta: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Atomically (re)place a model folder: a crash leaves the old one or the new one, whole.

    ``half``: see :func:`codec_state` (the saved model is then not this one bit for bit).
    """
    folder = Path(folder)
    with atomic_directory(folder) as tmp:
        write_model(tmp, codec, meta, half)
    return folder
