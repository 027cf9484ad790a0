"""analysis/quant.py: torch-free, the table's means and stds, the figures, the commands and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.cli import main as analysis_main
from analysis.quant import MAX_HIST_PANELS, compare, histogram_figure, load_sweep, schedule_text, summarize, versus_figure
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


# --- last-N averages, two sweeps compared, histograms (issue 12, items 5 and 7) -------------------------------


def write_sweep(path: Path, runs: list[dict], epochs: int) -> list[dict]:
    """Runs given as dicts: key (grid values), loss/acc/lr per epoch (None: the run failed), hist_float, hist_quant."""
    specs = [RunSpec(name, r["key"], f"{name}\n") for name, r in zip(run_names(len(runs)), runs)]
    prepare_sweep(path, specs, config_yaml="", epochs=epochs)
    for i, r in enumerate(runs):
        if r.get("loss") is None:
            write_run(path, i, RunRecord("failed", error="diverged", curves=[]))
            continue
        rows = [{k: 0.0 for k in CURVE_FIELDS} | {"epoch": e + 1, "train_loss": r["loss"][e], "test_acc": r["acc"][e],
                                                   "lr": r["lr"][e]} for e in range(epochs)]
        write_run(path, i, RunRecord("done", curves=rows, hist_float=r.get("hist_float"), hist_quant=r.get("hist_quant")))
    return runs


def lr_runs(rng: np.random.Generator, *, drop: bool, epochs: int = 12, failed: tuple = ()) -> list[dict]:
    """BC and SR at 1 bit, seeds 0-2, noisy losses; the lr lowered 10x from epoch 9 when ``drop``."""
    lr = np.where(np.arange(epochs) >= 8, 0.1, 1.0) if drop else np.ones(epochs)
    return [
        {"key": {"algorithm": a, "bits": 1, "lr": 1.0, "batch_size": 64, "seed": s},
         "loss": None if (a, s) in failed else rng.uniform(0.01, 1.0, epochs),
         "acc": rng.uniform(80, 100, epochs), "lr": lr}
        for a in ("bc", "sr") for s in range(3)
    ]


def tail(run: dict, n: int) -> float:
    return float(np.mean(run["loss"][-n:]))


def test_last_n_epochs_are_averaged_per_run_before_mean_and_std_over_seeds(tmp_path: Path) -> None:
    runs = write_sweep(tmp_path / "s.h5", lr_runs(np.random.default_rng(1), drop=True), 12)
    for last in (1, 5):
        rows = {r["algorithm"]: r for r in summarize(load_sweep(tmp_path / "s.h5"), last=last)}
        for alg in ("bc", "sr"):
            per_run = [tail(r, last) for r in runs if r["key"]["algorithm"] == alg]
            errors = [100 - np.mean(r["acc"][-last:]) for r in runs if r["key"]["algorithm"] == alg]
            assert rows[alg]["train_loss_mean"] == pytest.approx(np.mean(per_run))
            assert rows[alg]["train_loss_std"] == pytest.approx(np.std(per_run, ddof=1))
            assert rows[alg]["test_error_mean"] == pytest.approx(np.mean(errors))


def test_versus_pairs_runs_by_seed_and_gives_ratio_per_seed_and_of_means(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(2)
    dropped = write_sweep(tmp_path / "dropped.h5", lr_runs(rng, drop=True), 12)
    constant = write_sweep(tmp_path / "constant.h5", lr_runs(rng, drop=False, failed=(("sr", 2),)), 12)
    a, b = load_sweep(tmp_path / "dropped.h5"), load_sweep(tmp_path / "constant.h5")
    assert (schedule_text(a), schedule_text(b)) == ("lr x0.1 from epoch 9", "constant lr")
    rows = {r["algorithm"]: r for r in compare(a, b, last=4)}
    for alg, seeds in (("bc", [0, 1, 2]), ("sr", [0, 1])):
        mine = [tail(r, 4) for r in dropped if r["key"]["algorithm"] == alg and r["key"]["seed"] in seeds]
        theirs = [tail(r, 4) for r in constant if r["key"]["algorithm"] == alg and r["key"]["seed"] in seeds]
        ratios = np.array(theirs) / np.array(mine)
        row = rows[alg]
        assert row["pairs"] == len(seeds) and row["unpaired"] == 3 - len(seeds)
        assert row["train_loss_mean"] == pytest.approx(np.mean(mine))
        assert row["versus_train_loss_mean"] == pytest.approx(np.mean(theirs))
        assert row["ratio_of_means"] == pytest.approx(np.mean(theirs) / np.mean(mine))
        assert row["ratio_mean"] == pytest.approx(ratios.mean())
        assert row["ratio_std"] == pytest.approx(ratios.std(ddof=1))
        assert (row["ratio_min"], row["ratio_max"]) == pytest.approx((ratios.min(), ratios.max()))

    csv = tmp_path / "cmp.csv"
    args = ["quant-table", str(tmp_path / "dropped.h5"), "--versus", str(tmp_path / "constant.h5"), "--last", "4"]
    assert analysis_main([*args, "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert f"A = {tmp_path / 'dropped.h5'} (lr x0.1 from epoch 9)" in out and "(constant lr)" in out
    bc_line = next(line for line in out.splitlines() if line.startswith("bc "))
    assert f"{rows['bc']['ratio_mean']:.2f} ± {rows['bc']['ratio_std']:.2f}" in bc_line
    assert "2 (+1 unpaired)" in next(line for line in out.splitlines() if line.startswith("sr "))
    header = csv.read_text().splitlines()[0].split(",")
    assert {"ratio_of_means", "ratio_mean", "ratio_std", "epochs_averaged"} <= set(header)


def test_last_and_metric_mistakes_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_sweep(tmp_path / "s.h5", lr_runs(np.random.default_rng(3), drop=True), 12)
    assert analysis_main(["quant-table", str(tmp_path / "s.h5"), "--last", "13"]) == 2
    assert "--last 13: the finished runs of" in capsys.readouterr().err
    assert analysis_main(["quant-table", str(tmp_path / "s.h5"), "--metric", "test_loss"]) == 2
    assert "--metric chooses what --versus compares" in capsys.readouterr().err
    assert analysis_main(["quant-table", str(tmp_path / "s.h5"), "--last", "0"]) == 2


def test_versus_figure_draws_both_sweeps_and_shades_the_averaged_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    dropped = write_sweep(tmp_path / "dropped.h5", lr_runs(rng, drop=True), 12)
    write_sweep(tmp_path / "constant.h5", lr_runs(rng, drop=False), 12)
    fig = versus_figure(load_sweep(tmp_path / "dropped.h5"), load_sweep(tmp_path / "constant.h5"), last=4)
    (ax,) = [a for a in fig.axes if a.get_visible()]
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    drops = [line.get_xdata() for line in ax.get_lines() if line.get_label().startswith("_")]
    assert [list(x) for x in drops] == [[8.5, 8.5]]  # the lr changes between epochs 8 and 9
    assert set(lines) == {f"{a}, {t} (3 seeds)" for a in ("BC", "SR") for t in ("lr x0.1 from epoch 9", "constant lr")}
    bc = np.mean([r["loss"] for r in dropped if r["key"]["algorithm"] == "bc"], axis=0)
    np.testing.assert_allclose(lines["BC, lr x0.1 from epoch 9 (3 seeds)"].get_ydata(), bc)
    assert ax.get_yscale() == "log"
    (span,) = [p for p in ax.patches if "last 4 epochs" in p.get_label()]  # epochs 9..12 of 12
    assert (span.get_x(), span.get_x() + span.get_width()) == pytest.approx((8.5, 12.5))
    assert analysis_main(["quant-plots", str(tmp_path / "dropped.h5"), "--versus", str(tmp_path / "constant.h5"),
                          "--last", "4", "--out", str(tmp_path / "figs")]) == 0
    wrote = {Path(line.split(": ", 1)[1]).name for line in capsys.readouterr().out.splitlines() if line.startswith("wrote: ")}
    assert {"dropped_versus_train_loss.png", "dropped_versus_test_error.png"} <= wrote


def hist_runs(lrs: list[float]) -> list[dict]:
    """BC (float copy with a few weights in the edge bins) and SR (49% / 51% at -1 / +1) at 1 bit, 2 seeds per lr."""
    from effrep_hpc.store.sweep import HIST_BINS

    bell = np.exp(-0.5 * ((np.arange(HIST_BINS) - 49.5) / 12) ** 2) * 100
    bc_float = np.round(bell)
    bc_float[0], bc_float[-1] = 7, 3
    bc_quant = np.zeros(HIST_BINS)
    bc_quant[[10, 90]] = bc_float.sum() / 2
    sr_quant = np.zeros(HIST_BINS)
    sr_quant[[10, 90]] = 490, 510
    ones = np.ones(3)
    return [
        {"key": {"algorithm": a, "bits": 1, "lr": lr, "batch_size": 64, "seed": s}, "loss": ones, "acc": ones, "lr": ones,
         "hist_float": bc_float if a == "bc" else None, "hist_quant": bc_quant if a == "bc" else sr_quant}
        for a in ("bc", "sr") for lr in lrs for s in range(2)
    ]


def test_histograms_one_panel_per_lr_edge_bins_reported_and_a_readable_log_axis(tmp_path: Path) -> None:
    runs = write_sweep(tmp_path / "h.h5", hist_runs([0.1, 0.3]), 3)
    sweep = load_sweep(tmp_path / "h.h5")
    fig = histogram_figure(sweep)
    axes = [a for a in fig.axes if a.get_visible()]
    titles = [a.get_title() for a in axes]
    assert len(axes) == 4 and all("(2 runs)" in t for t in titles)
    assert sorted(t.splitlines()[0] for t in titles) == sorted(
        f"{a}, 1 bit, lr={lr:g} (2 runs)" for a in ("BC", "SR") for lr in (0.1, 0.3))
    float_counts = runs[0]["hist_float"]
    edge = (float_counts[0] + float_counts[-1]) / float_counts.sum()
    bc_title = next(t for t in titles if t.startswith("BC"))
    assert f"{edge:.2%} of float copy beyond ±{sweep.hist_edges[-2]:g}" in bc_title
    inner = (sweep.hist_edges[1], sweep.hist_edges[-2])
    smallest = float(min(float_counts[float_counts > 0][1:-1])) / float_counts.sum()  # ignore the edge bins
    for ax in axes:
        lo, hi = ax.get_ylim()
        assert ax.get_yscale() == "log" and hi / lo >= 10 and lo <= smallest and hi >= 1.0
        for line in ax.get_lines():
            assert inner[0] <= line.get_xdata().min() and line.get_xdata().max() <= inner[1]
    sr = next(a for a in axes if a.get_title().startswith("SR"))
    heights = sorted(p.get_height() for p in sr.patches if p.get_height() > 0)
    assert heights == pytest.approx([0.49, 0.51]) and sr.get_ylim()[0] <= 0.049
    assert all(a.get_ylabel() for a in axes if a.get_subplotspec().colspan.start == 0)


def test_histograms_say_when_swept_values_are_pooled(tmp_path: Path) -> None:
    lrs = [0.1 * (k + 1) for k in range(MAX_HIST_PANELS // 2 + 1)]  # 2 algorithms x 9 lrs > MAX_HIST_PANELS panels
    write_sweep(tmp_path / "h.h5", hist_runs(lrs), 3)
    axes = [a for a in histogram_figure(load_sweep(tmp_path / "h.h5")).axes if a.get_visible()]
    assert len(axes) == 2
    for ax in axes:
        assert f"({2 * len(lrs)} runs)" in ax.get_title()
        assert "pooled over lr " + "/".join(f"{v:g}" for v in lrs) in ax.get_title()


@pytest.mark.parametrize("command", ["quant-table", "quant-plots"])
def test_help_shows_each_default_once_and_never_none(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert analysis_main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "None" not in out
    options = out.split("options:", 1)[1].split("\n  -")
    assert all(block.count("default") <= 1 for block in options)
    assert "(default: 1" in out and (command == "quant-table" or "(default: 150)" in out)
