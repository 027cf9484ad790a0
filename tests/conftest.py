"""Shared test setup: one torch thread (the CI machine has two cores), deterministic algorithms.

Markers for tests that start external programs skip those tests, with the reason, when the program is
missing: ``mpi`` (``mpiexec``), ``torchrun`` (``torchrun``), ``slurm`` (``sbatch``; only when not root,
since as root tests/launch/conftest.py installs and starts the local SLURM itself, and fails if it cannot).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the analysis tests must also run where torch is absent
    pass


_SESSION_START = __import__("time").time()


def find_program(name: str) -> str | None:
    """``name`` beside the running Python, in the repository's .venv, or on PATH; None when missing."""
    for candidate in (Path(sys.executable).with_name(name), ROOT / ".venv" / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def _missing_program_reason(marker: str) -> str | None:
    if marker == "mpi" and find_program("mpiexec") is None:
        return "needs mpiexec (pip install mpich, or a system MPI on PATH)"
    if marker == "torchrun" and find_program("torchrun") is None:
        return "needs torchrun (installed with torch)"
    if marker == "slurm" and shutil.which("sbatch") is None and os.geteuid() != 0:
        return f"needs sbatch: start the local SLURM with `sudo bash {ROOT / 'slurm' / 'local-cluster.sh'} start`"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests whose marker names a program that is not installed (see the module docstring)."""
    reasons: dict[str, str | None] = {}
    for item in items:
        for marker in ("mpi", "torchrun", "slurm"):
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in reasons:
                reasons[marker] = _missing_program_reason(marker)
            if reasons[marker] is not None:
                item.add_marker(pytest.mark.skip(reason=reasons[marker]))


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001 - pytest hook signature
    """Remove the shared-memory segments MPICH left in /dev/shm during this session (it never does)."""
    import glob

    for path in glob.glob("/dev/shm/mpich_shm_*"):
        try:
            if os.stat(path).st_mtime >= _SESSION_START:
                os.unlink(path)
        except OSError:
            pass
