"""A real one-node SLURM cluster for the tests: Debian's slurmctld and slurmd with munge, configured
in a temporary folder, everything on 127.0.0.1, stopped by process id.

Needs the packages ``slurmctld slurmd slurm-client munge`` (``make slurm`` installs them with
apt-get from a root shell); without them ``start`` raises ``Unavailable`` with the reason. No
accounting daemon: ``sacct`` fails, so a task's state comes from ``squeue`` while it is queued or
running and is UNKNOWN after, which ``menagerie collect`` must handle (the records on disk decide).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")


class Unavailable(RuntimeError):
    """The SLURM or munge packages are not installed."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node() -> tuple[str, str]:
    """This machine as ``slurmd -C`` sees it: its name and the node line (CPUs, memory)."""
    line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    fields = dict(part.split("=", 1) for part in line.split())
    return fields["NodeName"], f"CPUs={fields['CPUs']} RealMemory={fields['RealMemory']}"


class Cluster:
    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.processes: list[subprocess.Popen] = []

    def start(self) -> Cluster:
        missing = [name for name in DAEMONS if shutil.which(name) is None]
        if missing:
            raise Unavailable(
                f"SLURM is not installed ({', '.join(missing)} missing): "
                "`make slurm` as root installs slurmctld slurmd slurm-client munge"
            )
        folder = self.folder
        folder.chmod(0o755)  # munged refuses a socket folder others cannot read
        for sub in ("state", "spool", "log"):
            (folder / sub).mkdir(exist_ok=True)
        key = folder / "munge.key"
        subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True)
        self._daemon(
            [
                "munged",
                "-F",
                "-S",
                str(folder / "munge.socket"),
                f"--key-file={key}",
                f"--pid-file={folder / 'munged.pid'}",
                f"--seed-file={folder / 'munge.seed'}",
                f"--log-file={folder / 'log' / 'munged.log'}",
            ]
        )
        self._wait_for(lambda: (folder / "munge.socket").exists(), "munged's socket")
        node, resources = _node()
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=menagerie-tests",
                    "SlurmctldHost=localhost(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={folder / 'munge.socket'}",
                    f"StateSaveLocation={folder / 'state'}",
                    f"SlurmdSpoolDir={folder / 'spool'}",
                    f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                    f"SlurmdPidFile={folder / 'slurmd.pid'}",
                    f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
                    "MinJobAge=3600",
                    "KillWait=2",
                    "MailProg=/bin/true",
                    "ReturnToService=2",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    f"NodeName={node} NodeAddr=127.0.0.1 {resources} State=UNKNOWN",
                    f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
                ]
            )
            + "\n"
        )
        self._daemon(["slurmctld", "-D", "-f", str(self.conf)])
        self._daemon(["slurmd", "-D", "-f", str(self.conf), "-N", node])
        self._wait_for(lambda: "idle" in self.run("sinfo", "-h", "-o", "%T"), "the node to be idle")
        return self

    def run(self, *command: str) -> str:
        """A client command's output ('' when it fails or hangs: a client blocks while slurmctld is down)."""
        try:
            return subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=5).stdout
        except subprocess.TimeoutExpired:
            return ""

    def stop(self) -> None:
        if self.processes:
            self.run("scancel", "--user", "root")
            self._wait_for(lambda: not self.run("squeue", "-h").strip(), "the queue to empty", raise_=False)
        for process in reversed(self.processes):  # slurmd, slurmctld, then munged
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.processes.clear()

    def _daemon(self, command: list[str]) -> None:
        log = open(self.folder / "log" / f"{command[0]}.out", "wb")
        self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def _wait_for(self, ready, what: str, timeout: float = 30.0, raise_: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if any(process.poll() is not None for process in self.processes):
                break
            time.sleep(0.2)
        if raise_:
            logs = "\n".join(
                f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
                for path in sorted((self.folder / "log").glob("*"))
            )
            self.stop()
            raise RuntimeError(f"the test SLURM cluster did not come up: waiting for {what}\n{logs}")
