"""`effrep hessian` and `effrep curvature` end to end: values at their points, ranks, kill and resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

from effrep_hpc.config import load_config
from effrep_hpc.data import load_dataset
from effrep_hpc.landscape import curvature as C
from effrep_hpc.landscape.evaluate import subset
from effrep_hpc.runners import curvature as R
from effrep_hpc.runners.landscape import load_model
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.surface import read_surface
from tests.runners.runner_helpers import ROOT, effrep, effrep_cmd, kill_when_done

CONFIG = ROOT / "configs/demo/digits.yaml"
SAMPLES = 64
MODEL = "model.kwargs={widths: [8, 8, 8]}"  # a digits CNN of 1.3k weights: eigsh checks it in seconds
SMALL = (MODEL, f"hessian.train_size={SAMPLES}", "run.progress=false", "run.threads=1", "hessian.density_probes=1",
         "hessian.density_steps=10", "hessian.trace_probes=4", "hessian.max_iter=60")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    run_train(load_config(CONFIG, [f"run.out={out}", MODEL, "train.epochs=3", "train.milestones=[2]", "run.progress=false"]))
    return out


def map_args(trained: Path, path: Path, *extra: str) -> list[str]:
    return ["curvature", str(CONFIG), f"run.out={trained}", f"hessian.map={path}", *SMALL, *extra]


def _independent_extremes(trained: Path, coords: tuple[float, float], directions: dict[str, dict[str, np.ndarray]]) -> tuple[float, float]:
    """Largest and smallest eigenvalue at w0 + a*dx + b*dy by torch.autograd.functional.hvp + scipy's eigsh."""
    cfg = load_config(CONFIG, [f"run.out={trained}", MODEL])
    model = load_model(trained / "checkpoint.pt", cfg, torch.device("cpu")).double().eval()
    ds = load_dataset("digits")
    x, y = subset(ds.x_train, ds.y_train, SAMPLES, cfg.data.seed)
    x = x.double()
    names = [n for n, p in model.named_parameters() if p.dim() > 1]  # landscape.bias_bn=ignore
    params = dict(model.named_parameters())
    point = [params[n].detach() + coords[0] * torch.from_numpy(directions["x"][n]).double()
             + coords[1] * torch.from_numpy(directions["y"][n]).double() for n in names]
    shapes = [p.shape for p in point]
    sizes = [p.numel() for p in point]

    def loss(*ws: torch.Tensor) -> torch.Tensor:
        state = {**{n: p.detach() for n, p in params.items()}, **dict(zip(names, ws))}
        out = torch.func.functional_call(model, state, (x,))
        return torch.nn.functional.cross_entropy(out, y)

    def matvec(v: np.ndarray) -> np.ndarray:
        parts = torch.split(torch.from_numpy(np.asarray(v, dtype=np.float64).ravel()), sizes)
        vs = tuple(p.reshape(s) for p, s in zip(parts, shapes))
        _, hv = torch.autograd.functional.hvp(loss, tuple(point), vs)
        return torch.cat([h.reshape(-1) for h in hv]).numpy()

    dim = sum(sizes)
    op = sla.LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)
    top = sla.eigsh(op, k=1, which="LA", tol=1e-10, return_eigenvectors=False)[0]
    low = sla.eigsh(op, k=1, which="SA", tol=1e-10, return_eigenvectors=False)[0]
    return float(top), float(low)


def test_map_values_equal_an_independent_computation_at_their_points(trained: Path, tmp_path: Path) -> None:
    path = tmp_path / "map.h5"
    proc = effrep(*map_args(trained, path, "landscape.x=-0.5:0.5:3", "landscape.y=-0.5:0.5:2", "hessian.tol=1e-7",
                            "hessian.max_iter=200"))
    assert proc.stdout.strip().splitlines()[-1] == f"surface: {path}"
    data = read_surface(path)
    assert data["done"].all() and set(R.MAP_METRICS) <= set(data)
    with h5py.File(path) as f:
        directions = {a: {k: f[f"directions/{a}"][k][()] for k in f[f"directions/{a}"]} for a in ("x", "y")}
    for j, i in [(0, 0), (1, 2)]:
        a, b = data["xcoordinates"][i], data["ycoordinates"][j]
        top, low = _independent_extremes(trained, (a, b), directions)
        assert data["max_eig"][j, i] == pytest.approx(top, rel=1e-4), (j, i)
        assert data["min_eig"][j, i] == pytest.approx(low, rel=1e-4, abs=1e-6 * abs(top)), (j, i)
        assert data["eig_ratio"][j, i] == pytest.approx(abs(low / top), rel=1e-3, abs=1e-6)
        assert data["hvps"][j, i] >= 2


def test_point_result_json_resume_and_refusal(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    args = ["hessian", str(CONFIG), f"run.out={trained}", f"hessian.out={out}", *SMALL, "hessian.k=2", "--json"]
    first = json.loads(effrep(*args).stdout.strip().splitlines()[-1])
    assert set(first) >= {"top_eigenvalues", "min_eigenvalue", "trace", "trace_stderr", "hvps"}
    assert len(first["top_eigenvalues"]) == 2 and first["top_eigenvalues"][0] >= first["top_eigenvalues"][1]
    assert first["min_eigenvalue"] <= first["top_eigenvalues"][1] and first["trace_stderr"] > 0
    stored = json.loads(out.read_text())
    assert stored["density"]["grid"] and stored["samples"] == SAMPLES
    # the same command reads the file back (same numbers, no new products); other settings are refused
    assert json.loads(effrep(*args).stdout.strip().splitlines()[-1]) == first
    before = out.read_bytes()
    proc = effrep(*args[:-2], "hessian.k=3", "--json", check=False)
    assert proc.returncode == 2 and "hessian.k: 2 -> 3" in proc.stderr and out.read_bytes() == before


def test_values_are_stored_as_computed_without_clamping(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The original code's reduce clamps positive minima to 1 and maxima below -1 to -1; ours stores what it got."""
    fake = iter([(2.5, 0.75), (-3.0, -7.0), (4.0, -1.5), (-0.5, -2.0)])

    def eigen(op: C.HessianOperator, k: int = 1, **kw: object) -> C.EigenResult:
        top, low = next(fake)
        op.hvps += 3
        return C.EigenResult((top,), low, (0.0,), 0.0, 3, True, (top,))

    monkeypatch.setattr(C, "hessian_eigenvalues", eigen)
    cfg = load_config(CONFIG, [f"run.out={trained}", f"hessian.map={tmp_path / 'm.h5'}", *SMALL,
                               "landscape.x=-1:1:2", "landscape.y=-1:1:2", "dist.backend=serial", "landscape.tile_size=4"])
    data = read_surface(R.run_curvature(cfg))
    np.testing.assert_array_equal(data["max_eig"].ravel(), [2.5, -3.0, 4.0, -0.5])
    np.testing.assert_array_equal(data["min_eig"].ravel(), [0.75, -7.0, -1.5, -2.0])
    np.testing.assert_allclose(data["eig_ratio"].ravel(), [0.3, 7.0 / 3.0, 0.375, 4.0])


# slow (~30 s): the loss-scan version of this (tests/runners/test_landscape.py) runs by default on the same driver.
@pytest.mark.slow
@pytest.mark.mpi
def test_two_ranks_and_a_killed_map_resumed_equal_one_rank(trained: Path, tmp_path: Path) -> None:
    grid = ("landscape.x=-1:1:6", "landscape.y=-1:1:5", "landscape.tile_size=1", "hessian.tol=1e-2")
    effrep(*map_args(trained, tmp_path / "one.h5", *grid, "dist.backend=serial"))
    effrep(*map_args(trained, tmp_path / "two.h5", *grid), mpi=2)
    one, two = read_surface(tmp_path / "one.h5"), read_surface(tmp_path / "two.h5")
    for name in R.MAP_METRICS:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    path = tmp_path / "killed.h5"
    kill_when_done(effrep_cmd(*map_args(trained, path, *grid), mpi=2), path, int(np.random.default_rng().integers(2, 12)))
    with h5py.File(path, "r", locking=False) as f:
        partial = f["done"][()].copy()
        assert 0 < partial.sum() < partial.size and np.isnan(f["max_eig"][()][~partial]).all()
    effrep(*map_args(trained, path, *grid), mpi=2)
    resumed = read_surface(path)
    assert resumed["done"].all()
    for name in R.MAP_METRICS:
        np.testing.assert_array_equal(one[name], resumed[name], err_msg=name)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hessian.method=arnoldi", "hessian.method"),
        ("hessian.k=0", "hessian.k"),
        ("hessian.k=5000", "exceeds the"),
        ("hessian.tol=0", "hessian.tol"),
        ("hessian.tol=-1e-3", "hessian.tol"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(trained: Path, tmp_path: Path, override: str, message: str) -> None:
    for command, key in (("hessian", "hessian.out"), ("curvature", "hessian.map")):
        out = tmp_path / f"{command}.out"
        proc = effrep(command, str(CONFIG), f"run.out={trained}", f"{key}={out}", *SMALL, "hessian.max_iter=100000",
                      "landscape.x=-1:1:2", "landscape.y=-1:1:2", override, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
        assert not out.exists() and not list(tmp_path.glob(f"*{command}*"))
