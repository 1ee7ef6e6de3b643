"""DDP with 2 gloo processes computes the same training steps as one process with 2 accumulated micro-batches.

Rank r trains on every other image of each global batch; one process with
``accumulation=2`` splits its batch the same way, so BatchNorm sees the same
images per forward and the summed gradients equal DDP's averaged ones.
"""

import json
import os
import socket
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from menagerie.models.data.folders import write_synthetic
from menagerie.models.train_resnet import TrainConfig, train


def settings(data, batch_size, accumulation):
    return TrainConfig(
        data=data,
        arch="resnet8",
        loader="torchvision",
        epochs=2,
        batch_size=batch_size,
        accumulation=accumulation,
        optimizer="lars",
        lr=1.0,
        warmup_epochs=0.5,
        eval_every=1,
        target=1.0,
        image_size=16,
        augment=False,
        workers=0,
        seed=5,
    )


def _rank(rank, port, data, out):
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    import torch

    torch.set_num_threads(1)
    result = train(settings(data, batch_size=4, accumulation=1))
    if rank == 0:
        out.write_text(
            json.dumps({"losses": result.step_losses, "processes": result.processes, "evaluations": result.evaluations})
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_images(root: Path) -> Path:
    """``root`` with 4 classes of 8 training and 3 validation images, 20 px (also test_cluster's images)."""
    write_synthetic(root / "train", 4, 8, size=20, seed=2)
    write_synthetic(root / "val", 4, 3, size=20, seed=3)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("ddp"))


def test_two_gloo_processes_match_one_process(data, tmp_path, monkeypatch):
    out = tmp_path / "ddp.json"
    # Spawned processes import _rank from this module by name, on the parent's sys.path: the checkout's root
    # there makes `tests` importable (pytest imported this module by its file).
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    mp.start_processes(_rank, args=(free_port(), data, out), nprocs=2, join=True, start_method="spawn")
    distributed = json.loads(out.read_text())
    single = train(settings(data, batch_size=8, accumulation=2))
    assert distributed["processes"] == 2 and len(distributed["losses"]) == len(single.step_losses) == 8
    assert distributed["losses"] == pytest.approx(single.step_losses, rel=1e-4, abs=1e-5)
    assert [e["epoch"] for e in distributed["evaluations"]] == [1, 2]
