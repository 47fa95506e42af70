"""Where the tests find the public data sets, and how they skip when a set is absent.

The root is ``$ICMBRIDGE_DATA`` when set, else ``<repo>/../shared/data`` (the repository root is
the parent of ``tests/``). A test that needs a set asks for its folder with :func:`need` (skips
with a clear reason where it is missing) or is marked with :func:`requires`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = "ICMBRIDGE_DATA"


def data_root() -> Path:
    """``$ICMBRIDGE_DATA``, else ``<repo>/../shared/data``."""
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else REPO.parent / "shared" / "data"


def _reason(folder: str) -> str:
    where = f"{ENV}={os.environ[ENV]}" if os.environ.get(ENV, "").strip() else "../shared/data"
    return f"{where}/{folder} not found; set {ENV} to the shared data folder"


def find(folder: str) -> Path | None:
    """``data_root()/folder`` when it is a folder, else None."""
    path = data_root() / folder
    return path if path.is_dir() else None


def need(folder: str) -> Path:
    """``data_root()/folder``, or skip the calling test with a reason that says what to set."""
    path = find(folder)
    if path is None:
        pytest.skip(_reason(folder))
    return path


def requires(*folders: str) -> pytest.MarkDecorator:
    """A marker that skips the test unless every one of ``folders`` is below the data root."""
    missing = [f for f in folders if find(f) is None]
    return pytest.mark.skipif(bool(missing), reason=_reason(missing[0]) if missing else "")
