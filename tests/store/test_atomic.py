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
