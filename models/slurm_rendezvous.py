"""torchrun's rendezvous variables from SLURM's, for a process started by ``srun``.

``srun`` starts one process per task and sets ``SLURM_PROCID`` (the global rank),
``SLURM_NTASKS``, ``SLURM_LOCALID`` (the rank on its node) and ``SLURM_JOB_NODELIST``; torch's
``env://`` rendezvous wants ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. The master is the first host of the node list (``scontrol show hostnames``), the
port a function of the job id (every task computes the same one; ``MENAGERIE_MASTER_PORT`` sets
it). Nothing changes when the variables are set already (``torchrun``) or the job has one task.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

PORT_BASE, PORT_SPAN = 20000, 20000


def slurm_rendezvous(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ`` (empty when there is nothing to do)."""
    tasks = int(environ.get("SLURM_NTASKS", "1"))
    if "RANK" in environ or tasks <= 1 or "SLURM_PROCID" not in environ:
        return {}
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        raise RuntimeError("srun set SLURM_PROCID but no SLURM_JOB_NODELIST: cannot find the rendezvous host")
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    port = environ.get("MENAGERIE_MASTER_PORT") or str(PORT_BASE + int(environ.get("SLURM_JOB_ID", "0")) % PORT_SPAN)
    return {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": str(tasks),
        "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": hosts[0],
        "MASTER_PORT": port,
    }


def join_slurm_rendezvous() -> None:
    """Sets torchrun's variables in this process from SLURM's (see the module docstring)."""
    os.environ.update(slurm_rendezvous(os.environ))
