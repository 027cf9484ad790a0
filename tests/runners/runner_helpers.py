"""What the runner tests share: running `effrep` in a subprocess (serial or under mpiexec) and killing it mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def effrep_cmd(*args: str, mpi: int = 0) -> list[str]:
    """The command line of `effrep ARGS`, under `mpiexec -n MPI` when ``mpi`` > 0."""
    if mpi:
        return [str(MPIEXEC), "-n", str(mpi), sys.executable, "-m", "mpi4py", "-m", "effrep_hpc.cli", *args]
    return [sys.executable, "-m", "effrep_hpc.cli", *args]


def effrep(*args: str, mpi: int = 0, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `effrep ARGS` from the repository root with one thread per process; raise with its output if it fails."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = effrep_cmd(*args, mpi=mpi)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def kill_when_done(cmd: list[str], path: Path, wanted: int, *, timeout: float = 200) -> None:
    """Start ``cmd``, SIGKILL its whole session once ``path``'s ``done`` mask counts ``wanted`` points, wait for its writer to go."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists():
            with h5py.File(path, "r", locking=False) as f:
                if int(f["done"][()].sum()) >= wanted:
                    break
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail(f"the job finished before the kill (wanted {wanted} points done)")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Mpiexec's ranks run in sessions of their own and exit once their launcher is gone.
    owner = json.loads(Path(str(path) + ".lock").read_text())["pid"]
    deadline = time.time() + 30
    while time.time() < deadline and Path(f"/proc/{owner}").exists():
        time.sleep(0.1)
