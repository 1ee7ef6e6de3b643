import os

# Each pytest-xdist worker gets its share of the cores: torch's default, a thread per core in every worker and in
# every command a test starts, oversubscribes the CPU, and its threads then spin against each other (this cut the
# suite from 451 s to 381 s on 2 cores). Set before torch is imported, and inherited by the commands.
# A lone os.environ call, with no assignment, keeps the imports below at the top of the module for ruff (E402).
os.environ.setdefault(
    "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
)

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
