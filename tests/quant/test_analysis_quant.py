"""analysis/quant.py: torch-free, the table's means and stds, the figures, the commands and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.cli import main as analysis_main
from analysis.quant import load_sweep, summarize
from effrep_hpc.store.sweep import CURVE_FIELDS, HIST_BINS, RunRecord, RunSpec, prepare_sweep, run_names, write_run

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def make_sweep(path: Path) -> dict[tuple[str, int], list[float]]:
    """FP (float) and BC/SR at 1 and 2 bits, 3 seeds each; one SR run failed. Returns final test errors."""
    keys = [("fp", 32, s) for s in range(3)] + [(a, b, s) for a in ("bc", "sr") for b in (1, 2) for s in range(3)]
    runs = [
        RunSpec(name, {"algorithm": a, "bits": b, "lr": 0.1, "batch_size": 64, "seed": s}, f"{a} {b} {s}\n")
        for name, (a, b, s) in zip(run_names(len(keys)), keys)
    ]
    prepare_sweep(path, runs, config_yaml="", epochs=5)
    rng = np.random.default_rng(0)
    errors: dict[tuple[str, int], list[float]] = {}
    for i, (a, b, s) in enumerate(keys):
        if (a, b, s) == ("sr", 2, 2):
            write_run(path, i, RunRecord("failed", error="diverged: training loss nan in epoch 2", curves=[]))
            continue
        acc = 90 + 5 * rng.random(5)
        rows = [
            {k: 0.0 for k in CURVE_FIELDS} | {"epoch": e + 1, "test_acc": acc[e], "train_loss": 1.0 / (e + 1)} for e in range(5)
        ]
        hist_q = np.zeros(HIST_BINS) if a != "fp" else None
        if hist_q is not None:
            hist_q[[10, 89]] = 50
        hist_float = np.ones(HIST_BINS) if a in ("fp", "bc") else None
        write_run(path, i, RunRecord("done", curves=rows, hist_float=hist_float, hist_quant=hist_q))
        errors.setdefault((a, b), []).append(100 - acc[-1])
    return errors


def test_importing_analysis_quant_does_not_import_torch() -> None:
    code = "import sys, analysis.quant, analysis.cli; sys.exit('torch' in sys.modules or 'effrep_hpc' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr or "analysis.quant imported torch or effrep_hpc"


def test_table_has_mean_and_std_over_seeds_and_counts_failures(tmp_path: Path) -> None:
    path = tmp_path / "sweep.h5"
    errors = make_sweep(path)
    rows = {(r["algorithm"], r["bits"]): r for r in summarize(load_sweep(path))}
    assert set(rows) == {("fp", 32), ("bc", 1), ("bc", 2), ("sr", 1), ("sr", 2)}
    for key, values in errors.items():
        assert rows[key]["test_error_mean"] == pytest.approx(np.mean(values))
        assert rows[key]["test_error_std"] == pytest.approx(np.std(values, ddof=1))
    assert (rows[("sr", 2)]["done"], rows[("sr", 2)]["failed"], rows[("sr", 2)]["runs"]) == (2, 1, 3)
    assert rows[("bc", 1)]["train_loss_mean"] == pytest.approx(0.2)


def test_table_command_prints_rows_and_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sweep.h5"
    errors = make_sweep(path)
    assert analysis_main(["quant-table", str(path), "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    fp_line = next(line for line in out.splitlines() if line.startswith("fp"))
    assert "float" in fp_line and f"{np.mean(errors[('fp', 32)]):.2f} ± {np.std(errors[('fp', 32)], ddof=1):.2f}" in fp_line
    assert "failed: run_0014 (SR, 2 bit, lr 0.1, seed 2): diverged" in out
    assert (tmp_path / "t.csv").read_text().startswith("algorithm,bits,runs,done,failed,")


def test_plots_command_writes_curves_error_vs_bits_and_histograms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sweep.h5"
    make_sweep(path)
    assert analysis_main(["quant-plots", str(path), "--out", str(tmp_path / "figs")]) == 0
    wrote = [Path(line.split(": ", 1)[1]) for line in capsys.readouterr().out.splitlines() if line.startswith("wrote: ")]
    assert sorted(p.name for p in wrote) == sorted(
        ["sweep_curves_train_loss.png", "sweep_curves_test_error.png", "sweep_error_vs_bits.png", "sweep_hist.png"]
    )
    for p in wrote:
        assert p.read_bytes()[:8] == PNG


def test_markov_command_plots_the_json(tmp_path: Path) -> None:
    data = {"problem": {"mu": 1, "sigma": 1, "delta": 1, "wstar": 0, "bc_limit": 0.0},
            "excess": {"sr": {"0.1": 0.25, "0.01": 0.25}, "bc": {"0.1": 0.05, "0.01": 0.005}}}
    src = tmp_path / "markov.json"
    src.write_text(json.dumps(data))
    assert analysis_main(["quant-markov", str(src)]) == 0
    assert (tmp_path / "markov.png").read_bytes()[:8] == PNG


def test_wrong_inputs_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import h5py

    other = tmp_path / "surface.h5"
    with h5py.File(other, "w") as f:
        f.attrs["kind"] = "surface"
    assert analysis_main(["quant-table", str(other)]) == 2
    assert "not a quantization sweep file (kind='surface')" in capsys.readouterr().err
    assert analysis_main(["quant-table", str(tmp_path / "missing.h5")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert analysis_main(["quant-markov", str(bad)]) == 2
    assert "quant markov --json" in capsys.readouterr().err
