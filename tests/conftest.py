"""Shared fixtures: small real images and a small codec saved the way training saves models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icmbridge.codec.model import CONFIGS, ICMCodec
from icmbridge.codec.store import available_models, load_codec, save_codec
from icmbridge.imageio import array_to_tensor


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def photo(astronaut: np.ndarray) -> torch.Tensor:
    """A 96×136 crop of a packaged photo: odd to the codec's factor 64 on both sides."""
    return array_to_tensor(astronaut[40:136, 150:286])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """A small randomly initialised codec, written as a model folder (with CDF tables)."""
    torch.manual_seed(1234)
    codec = ICMCodec(CONFIGS["tiny"]).eval()
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_codec(codec, folder, meta={"purpose": "tests"})
    return folder


@pytest.fixture()
def tiny_codec(tiny_model_dir) -> ICMCodec:
    return load_codec(tiny_model_dir)


@pytest.fixture(scope="session")
def base_codec() -> ICMCodec:
    if "base" not in available_models():
        pytest.skip("weights/base not trained yet")
    return load_codec("base")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (CI runs `make test-slow`)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
