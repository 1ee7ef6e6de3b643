import os

import pytest
import torch

import menagerie.kernels  # noqa: F401  (switches Triton to its interpreter when there is no GPU)


@pytest.fixture(scope="session", autouse=True)
def _ceilings_cache(tmp_path_factory):
    """Measured ceilings go to a per-session folder, not the user's cache."""
    os.environ["MENAGERIE_CACHE_DIR"] = str(tmp_path_factory.mktemp("menagerie-cache"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
