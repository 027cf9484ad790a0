"""The Markov-chain tool: hand-solved chains, a simulation cross-check, SR's plateau vs BC's decay, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from effrep_hpc.cli import main as effrep
from effrep_hpc.quant.markov import bc_stationary, markov_report, sr_stationary, stationary_distribution


def test_sr_small_case_solved_by_hand() -> None:
    """mu = sigma = D = 1, w* = 0, lr = a <= 1/2.

    From w = 0 the gradient is +-1, so v = -+a and Q_s moves to -1 or +1 with probability a/2 each.
    From w = 1 the gradient is 1 +- 1 in {2, 0}: with 2, v = 1 - 2a goes to 0 with probability 2a; with 0
    it stays. Balance pi(0) a/2 = pi(1) a gives pi = (1/4, 1/2, 1/4) on (-1, 0, 1) for every such a, and
    E[f] - f* = 1/2 (1/4 + 1/4) = 1/4.
    """
    for lr in (0.5, 0.1, 0.01):
        s = sr_stationary(1.0, 1.0, 1.0, lr)
        assert s.values.tolist() == [-1.0, 0.0, 1.0]
        np.testing.assert_allclose(s.probs, [0.25, 0.5, 0.25], atol=1e-12)
        assert s.excess == pytest.approx(0.25, abs=1e-12)
        assert s.residual < 1e-12


def test_bc_small_case_solved_by_hand() -> None:
    """mu = sigma = D = 1, w* = 0, lr = 1/4: w_r moves on intervals of width 1/4.

    Cells: Q_d(w_r) = 0 on [-1/2, 1/2), where the gradient is +-1 and w_r steps -+1/4; Q_d = 1 on [1/2, 1)
    where the gradient is 1 +- 1: w_r steps -1/2 or stays (mirror image for -1). Intervals
    a=[-3/4,-1/2), b, c, d (cell 0 from -1/2 to 1/2), e, f=[1/2, 3/4): f -> f or d, e -> d or f, ...
    Balance at f: pi_e / 2 = pi_f / 2; at e: pi_d / 2 = pi_e. With symmetry pi = (1, 1, 2, 2, 1, 1) / 8,
    so P(|Q_d(w_r)| = 1) = 1/4 and E[f] - f* = 1/2 * 1/4 = 1/8 (SR at the same lr: 1/4).
    """
    b = bc_stationary(1.0, 1.0, 1.0, 0.25)
    assert b.values.tolist() == [-1.0, 0.0, 1.0]
    np.testing.assert_allclose(b.probs, [0.125, 0.75, 0.125], atol=1e-12)
    assert b.excess == pytest.approx(0.125, abs=1e-12)
    assert b.lattice == 0.25


def test_several_closed_classes_are_weighted_by_absorption() -> None:
    # state 0 is transient and falls into absorbing state 1 or 2 with probability 1/2 each
    P = sp.csr_matrix(np.array([[0.0, 0.5, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    pi, classes = stationary_distribution(P, np.array([1.0, 0.0, 0.0]))
    assert classes == 2
    np.testing.assert_allclose(pi, [0.0, 0.5, 0.5])
    pi, _ = stationary_distribution(P, np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(pi, [0.0, 0.0, 1.0])


def simulate(alg: str, mu: float, sigma: float, delta: float, lr: float, wstar: float, *, chains: int, steps: int) -> float:
    """Monte Carlo E[f(w_used)] - f* over many independent chains (an independent check of the exact solve)."""
    rng = np.random.default_rng(0)
    w = np.full(chains, np.floor(wstar / delta + 0.5) * delta)
    w = w + rng.uniform(-delta / 2, delta / 2, chains) if alg == "bc" else w
    acc, count = 0.0, 0
    for t in range(steps):
        s = rng.choice([-1.0, 1.0], size=chains)
        if alg == "sr":
            v = w - lr * (mu * (w - wstar) + s * sigma)
            lower = np.floor(v / delta)
            w = (lower + (rng.random(chains) < v / delta - lower)) * delta
            used = w
        else:
            q = np.floor(w / delta + 0.5) * delta
            w = w - lr * (mu * (q - wstar) + s * sigma)
            used = np.floor(w / delta + 0.5) * delta
        if t >= steps // 2:
            acc += float(np.mean(0.5 * mu * (used - wstar) ** 2))
            count += 1
    return acc / count


@pytest.mark.parametrize("alg", ["sr", "bc"])
def test_exact_solution_agrees_with_simulation_off_the_grid(alg: str) -> None:
    mu, sigma, delta, lr, wstar = 1.0, 2.0, 0.5, 0.1, 0.1
    exact = (sr_stationary if alg == "sr" else bc_stationary)(mu, sigma, delta, lr, wstar).excess
    sim = simulate(alg, mu, sigma, delta, lr, wstar, chains=4000, steps=1200)
    assert sim == pytest.approx(exact, rel=0.05), (alg, exact, sim)


def test_sr_plateaus_while_bc_keeps_shrinking_with_the_learning_rate() -> None:
    lrs = [0.1, 0.03, 0.01, 0.003, 0.001]
    sr = [sr_stationary(1.0, 1.5, 0.5, lr).excess for lr in lrs]
    bc = [bc_stationary(1.0, 1.5, 0.5, lr).excess for lr in lrs]
    assert sr[-1] == pytest.approx(sr[-2], rel=1e-6), "SR's stationary excess must stop depending on lr"
    assert sr[-1] > 0.05
    assert all(b2 < b1 for b1, b2 in zip(bc, bc[1:])), bc
    assert bc[-1] < sr[-1] / 50


def test_bc_with_the_minimum_off_the_grid_settles_at_the_dithering_limit() -> None:
    # w* = 0.1 between grid points 0 and 0.5: Q_d(w_r) dithers with mean w*, excess mu/2 (w* - 0)(0.5 - w*)
    b = bc_stationary(1.0, 2.0, 0.5, 0.001, wstar=0.1)
    assert b.excess == pytest.approx(0.5 * 0.1 * 0.4, rel=1e-3)
    assert float(b.values @ b.probs) == pytest.approx(0.1, abs=2e-3)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: sr_stationary(1.0, 1.0, 1.0, 2.5), "diverges"),
        (lambda: sr_stationary(0.0, 1.0, 1.0, 0.1), "mu must be > 0"),
        (lambda: bc_stationary(1.0, 1.0, 1.0, 0.0031415926535), "short decimal ratios"),
        (lambda: markov_report(1.0, 1.0, 1.0, []), "at least one learning rate"),
        (lambda: bc_stationary(1.0, 1.0, 1.0, 1e-4, max_states=1000), "needs 30002 states"),
    ],
)
def test_bad_problems_are_refused(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_cli_prints_json_per_algorithm_and_lr(capsys: pytest.CaptureFixture[str]) -> None:
    code = effrep(["quant", "markov", "--mu", "1", "--sigma", "1", "--delta", "1", "--lr", "0.1", "0.01", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["excess"]["sr"] == {"0.1": pytest.approx(0.25), "0.01": pytest.approx(0.25)}
    assert out["excess"]["bc"]["0.1"] > out["excess"]["bc"]["0.01"]
    assert {(r["algorithm"], r["lr"]) for r in out["results"]} == {("sr", 0.1), ("bc", 0.1), ("sr", 0.01), ("bc", 0.01)}


def test_cli_writes_the_plot(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "figs" / "markov.png"
    code = effrep(["quant", "markov", "--mu", "1", "--sigma", "1", "--delta", "1", "--lr", "0.1", "0.01", "--plot", str(target)])
    assert code == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot: {target}" in capsys.readouterr().out


def test_cli_reports_a_diverging_learning_rate(capsys: pytest.CaptureFixture[str]) -> None:
    assert effrep(["quant", "markov", "--mu", "1", "--sigma", "1", "--delta", "1", "--lr", "3"]) == 2
    assert "diverges" in capsys.readouterr().err


def test_the_readme_example_output_plots_with_the_analysis_command(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shlex
    from pathlib import Path

    from analysis.cli import main as analysis_main

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("effrep quant markov ")]
    assert lines, "the README shows an `effrep quant markov` command"
    argv = shlex.split(lines[0], comments=True)[1:]
    name = argv[argv.index(">") + 1] if ">" in argv else "readme_markov.json"
    argv = argv[: argv.index(">")] if ">" in argv else argv
    monkeypatch.chdir(tmp_path)
    assert effrep(argv) == 0
    saved = tmp_path / name
    saved.write_text(capsys.readouterr().out)  # what `... > FILE` writes
    result = json.loads(saved.read_text())
    if "--plot" in argv:
        assert Path(result["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert analysis_main(["quant-markov", str(saved)]) == 0
    assert saved.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the output of earlier versions, "plot: PATH" after the JSON, still reads
    saved.write_text(json.dumps(result, indent=1) + "\nplot: markov.png\n")
    assert analysis_main(["quant-markov", str(saved)]) == 0
    saved.write_text(json.dumps(result) + "\nsomething else\n")
    assert analysis_main(["quant-markov", str(saved)]) == 2
    assert "unexpected text after the JSON document" in capsys.readouterr().err
