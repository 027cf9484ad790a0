"""Shared test setup: one torch thread (the CI machine has two cores), deterministic algorithms."""

from __future__ import annotations

import os
import sys
from pathlib import Path

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


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001 - pytest hook signature
    """Remove the shared-memory segments MPICH left in /dev/shm during this session (it never does)."""
    import glob

    for path in glob.glob("/dev/shm/mpich_shm_*"):
        try:
            if os.stat(path).st_mtime >= _SESSION_START:
                os.unlink(path)
        except OSError:
            pass
