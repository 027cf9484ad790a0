"""The CLI's one error boundary: known failures are one ``error:`` line with their exit code; bugs keep their traceback.

The runner behind every experiment command is replaced by one that raises, so each case shows what
`effrep` prints and returns for that kind of failure, in this process (no MPI, no training).
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import torch

import effrep_hpc.cli.experiments as experiments
from effrep_hpc.cli import main
from effrep_hpc.errors import UserError
from effrep_hpc.store.h5 import FileBusyError

CFG = str(Path(__file__).resolve().parents[2] / "configs" / "demo" / "digits.yaml")


class Diverged(UserError):
    exit_code = 3


def fail_with(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> list[Any]:
    """Make every experiment command raise ``exc`` after its config loaded; the configs it got."""
    seen: list[Any] = []

    def runner(exp: Any, args: Any) -> int:
        seen.append(args.loaded_config)
        raise exc

    monkeypatch.setattr(experiments, "run_experiment", runner)
    return seen


@pytest.mark.parametrize(
    "exc,code,words",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/scratch/x/surface.h5"), 2,
         "no space left on the device writing /scratch/x/surface.h5"),
        (PermissionError(errno.EACCES, "Permission denied", "/readonly/out"), 2, "permission denied: /readonly/out"),
        (FileBusyError("/x/s.h5 is being written by another job"), 2, "/x/s.h5 is being written by another job"),
        (FileNotFoundError("checkpoint /x/c.pt does not exist"), 2, "checkpoint /x/c.pt does not exist"),
        (KeyError("no model named 'vgg99'"), 2, "no model named 'vgg99'"),
        (Diverged("loss is nan at epoch 3"), 3, "loss is nan at epoch 3"),
    ],
)
def test_known_failures_are_one_line_with_their_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: BaseException, code: int, words: str
) -> None:
    seen = fail_with(monkeypatch, exc)
    assert main(["landscape", CFG, "run.progress=false"]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert seen and seen[0].run.progress is False  # the config was loaded once, before the runner


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    fail_with(monkeypatch, TypeError("unsupported operand type(s)"))
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["landscape", CFG])


def test_a_bad_config_is_refused_before_the_runner(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen = fail_with(monkeypatch, AssertionError("the runner must not start"))
    assert main(["landscape", "/nonexistent/digits.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "/nonexistent/digits.yaml" in err and "Traceback" not in err
    assert not seen


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["landscape", CFG, f"run.out={tmp_path}", "run.device=cuda", "dist.backend=serial", "run.threads=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: run.device=cuda") and "run.device=auto or cpu" in err, err
    assert not list(tmp_path.iterdir())
