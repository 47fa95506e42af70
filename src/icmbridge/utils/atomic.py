"""Crash-safe file output: write to a temporary name in the same folder, fsync, rename.

A failure at any moment leaves either the previous output or the new one, never a partial file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from icmbridge.errors import InputError


def check_input_file(path: str | os.PathLike[str], what: str) -> Path:
    """Refuse a missing input, or a folder where ``what`` (e.g. "an image file") was expected."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder, expected {what}")
    return path


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work is done, an output whose folder is missing or not writable."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"output folder {str(parent)!r} is not writable")
    if path.is_dir():
        raise InputError(f"output {str(path)!r} is a folder, expected a file name")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _as_if_created(path: Path, umask: int) -> None:
    """Give a temporary file the mode a plain ``open(path, "w")`` would have given it.

    ``mkstemp`` (and safetensors, which writes through one) create private 0600 files; an output
    a user shares or ships must follow the umask like any other file.
    """
    path.chmod(0o666 & ~umask)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds."""
    path = check_output_path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        _as_if_created(tmp, _umask())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def fsync_tree(folder: Path, umask: int | None = None) -> None:
    """fsync every file below ``folder`` (and, given a umask, set the mode it implies)."""
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            if umask is not None:
                _as_if_created(f, umask)
    _fsync_dir(folder)


@contextlib.contextmanager
def atomic_directory(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``folder`` as a whole if the block succeeds."""
    folder = Path(folder)
    if not folder.parent.is_dir():
        raise InputError(f"output folder {str(folder.parent)!r} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    umask = _umask()
    tmp.chmod(0o777 & ~umask)  # mkdtemp's private 0700 would stick to the final folder
    try:
        yield tmp
        fsync_tree(tmp, umask)
        if folder.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent)
            )
            os.rmdir(old)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        _fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
