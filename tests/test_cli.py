"""The `effrep` command line: help texts, the model listing, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from effrep_hpc.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("train", "models", "landscape", "merge", "analyze"):
        assert name in out


@pytest.mark.parametrize("name", subcommands())
def test_every_subcommand_explains_itself(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main([name, "--help"])
    except SystemExit as exc:
        code = exc.code
    assert code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and len(out.splitlines()) >= 4


def test_models_json_lists_every_model_with_counts(capsys: pytest.CaptureFixture[str]) -> None:
    from effrep_hpc.models import list_models

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == list_models()
    assert rows["resnet56"]["flops"] == pytest.approx(1.25e8, rel=0.01)
    assert rows["resnet56"]["params"] == pytest.approx(8.5e5, rel=0.01)
    assert rows["vgg16"]["input_shape"] == [3, 32, 32]


def test_models_table_and_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "resnet20", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "269,722" in out and "resnet56" not in out
    assert main(["models", "resnet5"]) == 2
    assert "did you mean 'resnet56'" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "effrep"
    if not exe.exists():
        pytest.skip("package not installed in this environment (run make test)")
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "effrep-hpc" in proc.stdout
