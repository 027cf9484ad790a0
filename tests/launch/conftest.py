"""Launch tests: the `slurm` marker, and a real one-node SLURM started through slurm/local-cluster.sh.

Tests marked ``slurm`` use the ``local_slurm`` fixture. If the cluster is not running it is started
(installing Debian's slurmctld/slurmd/munge packages the first time, which needs root); if that is not
possible the tests fail with the script's output. They never skip: a CI run without a working SLURM
is a failed run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "slurm" / "local-cluster.sh"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: runs jobs on the local one-node SLURM (slurm/local-cluster.sh)")


def _status() -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def local_slurm() -> str:
    """The partition of a running local SLURM; started here when it is not running."""
    if _status().returncode != 0:
        if os.geteuid() != 0:
            pytest.fail(
                f"the local SLURM is not running and starting it needs root: run `sudo {SCRIPT} start` first\n"
                + _status().stdout
            )
        proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"{SCRIPT} start failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    status = _status()
    if status.returncode != 0 or shutil.which("sbatch") is None:
        pytest.fail(f"the local SLURM does not answer after starting it:\n{status.stdout}\n{status.stderr}")
    return os.environ.get("EFFREP_SLURM_PARTITION", "debug")
