"""atomic_write: the target is either the old file or the complete new one, never half of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from effrep_hpc.store.atomic import atomic_write
from effrep_hpc.store.h5 import atomic_create, open_readonly


def test_success_replaces_the_target_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.json.tmp-")
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_failure_keeps_the_old_target_and_removes_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_hdf5_files_appear_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "s.h5"
    with pytest.raises(ValueError, match="broken"), atomic_create(target) as f:
        f["x"] = [1, 2, 3]
        raise ValueError("broken")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_create(target) as f:
        f["x"] = [1, 2, 3]
    with open_readonly(target) as f:
        assert f["x"][()].tolist() == [1, 2, 3]


def test_a_killed_process_not_yet_reaped_holds_no_lock() -> None:
    import subprocess
    import sys
    import time

    from effrep_hpc.store.atomic import pid_alive

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(proc.pid)
        proc.kill()
        deadline = time.time() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z" and time.time() < deadline:
            time.sleep(0.01)  # killed, but not waited for: a zombie, as a killed study's ranks are for a moment
        assert not pid_alive(proc.pid)  # so the next run takes over its writer lock instead of refusing
    finally:
        proc.wait()
    assert not pid_alive(proc.pid)
