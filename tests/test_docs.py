"""The README names only paths that exist, and stays short enough to read."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("src/", "weights/", "results/", "scripts/", "benchmarks/", "tests/", "docs/", ".ci/")
NAMED = ("README.md", "RELIABILITY.md", "Makefile", "pyproject.toml", "requirements.txt")


def named_paths(text: str) -> set[str]:
    """Repository paths in backticks or in the layout block (``src/...``, ``weights/...``)."""
    paths = set()
    for token in re.findall(r"`([^`\s]+)`", text) + re.findall(r"^\s*([a-z]+/)\s", text, re.M):
        token = token.rstrip(".,:;)")
        if token.startswith(TOP) or token in NAMED:
            paths.add(token)
    return paths


def test_readme_names_only_existing_paths() -> None:
    text = (ROOT / "README.md").read_text()
    paths = named_paths(text)
    assert len(paths) > 10, "the path check found almost nothing: is the README's style changed?"
    missing = sorted(p for p in paths if not any(ROOT.glob(p)) and not (ROOT / p).exists())
    assert not missing, f"README names paths that do not exist: {missing}"


def test_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
