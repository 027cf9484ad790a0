"""Checkpoint faults end in one line that names the file and what to do (issue 11, item 3).

A truncated or corrupt checkpoint is refused as such (not as a foreign pickle, which keeps its own
wording); a full disk while saving one says so, leaves the previous checkpoint and no temporary file.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from effrep_hpc.config import load_config
from effrep_hpc.errors import UserError
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.name=digits", "data.train_size=400", "model.name=digits_mlp", "model.kwargs={widths: [16, 16]}",
        "train.batch_size=64", "train.schedule=constant", "run.progress=false", "run.threads=1"]


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def damaged(good: bytes) -> dict[str, bytes]:
    """Ways a checkpoint file gets damaged: cut short (at several points), emptied, overwritten, replaced by text."""
    zeroed_end = bytearray(good)
    zeroed_end[-200:] = bytes(200)  # the zip's central directory
    return {"half": good[: len(good) // 2], "last bytes cut": good[:-30], "empty": b"", "central directory zeroed": bytes(zeroed_end),
            "text": b"epoch: 3\n", "pickle of junk": b"\x80\x04K\x01.garbage"}


def test_damaged_checkpoints_are_refused_as_truncated_or_corrupt(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    good = save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.randn(2000)}, "epoch": 3}).read_bytes()
    for what, data in damaged(good).items():
        path = tmp_path / f"{what.replace(' ', '_')}.pt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        text = str(info.value)
        assert "truncated or corrupt" in text and str(path) in text and "--overwrite" in text, (what, text)
        assert "arbitrary code" not in text and "\n" not in text, (what, text)
        assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
        assert path.read_bytes() == data, "refusing a file leaves it as it was"
    assert not recwarn.list, "nothing but the one error line: no torch warnings"


@pytest.mark.parametrize(("call", "named"), [(print, "print"), (os.system, f"{os.name}.system")])
def test_a_foreign_pickle_keeps_its_own_message(tmp_path: Path, call: Callable[..., Any], named: str) -> None:
    class Evil:
        def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
            return (call, ("true",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointError, match=rf"arbitrary code\)\. Details: Unsupported global: GLOBAL {named}$"):
        load_checkpoint(path)


def test_train_on_a_truncated_checkpoint_says_so_and_overwrite_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*TINY, f"run.out={out}", "train.epochs=1"]
    run_train(load_config(None, args))
    ckpt = out / "checkpoint.pt"
    cut = ckpt.read_bytes()[:-100]
    ckpt.write_bytes(cut)
    proc = subprocess.run([sys.executable, "-m", "effrep_hpc.cli", "train", "configs/demo/digits.yaml", *args], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=300)
    line = one_error_line(proc)
    assert f"checkpoint {ckpt} is truncated or corrupt" in line and "delete it, or pass --overwrite" in line
    assert ckpt.read_bytes() == cut
    assert run_train(load_config(None, args), overwrite=True).final["epoch"] == 1
    assert load_checkpoint(ckpt)["epoch"] == 1


DISK_FULL = {
    "ENOSPC": (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
    "EDQUOT": (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
    "unexpected pos": (RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 7168 vs 7064"),
                       "no space left on device"),
    "stream writer": (RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), "no space left on device"),
}


@pytest.mark.parametrize("case", DISK_FULL)
def test_a_full_disk_while_saving_says_so_and_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})
    before = path.read_bytes()
    error, words = DISK_FULL[case]

    def full(obj: Any, f: Any, *args: Any, **kw: Any) -> None:
        Path(f).write_bytes(b"partial")  # torch got this far before the disk filled up
        raise error

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError) as info:
        save_checkpoint(path, {"epoch": 2})
    assert str(info.value).startswith(f"{words} while writing {path}; ") and info.value.exit_code == 2
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"], "the partial temporary file is removed"


def test_other_save_errors_are_not_reported_as_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(obj: Any, f: Any, *args: Any, **kw: Any) -> None:
        raise RuntimeError("some other failure")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="^some other failure$"):
        save_checkpoint(tmp_path / "c.pt", {"epoch": 1})


FILL_DISK_AT_EPOCH_2 = """
import errno, sys, torch
from pathlib import Path
from effrep_hpc.cli import main
real = torch.save
def save(obj, f, *args, **kw):
    if Path(f).name.startswith(".checkpoint.pt") and obj.get("epoch") == 2:
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 7168 vs 7064")
    return real(obj, f, *args, **kw)
torch.save = save
sys.exit(main(sys.argv[1:]))
"""


def test_train_on_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", FILL_DISK_AT_EPOCH_2, "train", "configs/demo/digits.yaml", *TINY,
                           f"run.out={out}", "train.epochs=3"], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    line = one_error_line(proc)
    assert line == (f"error: no space left on device while writing {out / 'checkpoint.pt'}; free some space "
                    "(or choose another output path) and run again")
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
