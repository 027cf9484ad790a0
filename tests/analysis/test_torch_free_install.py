"""`analysis` installs on its own, without torch, and every `python -m analysis` command of the README runs there.

A fresh venv (plain `python -m venv`, no system site-packages) gets effrep-analysis with one `pip install` of
a copy of `analysis/` (as `pip install "./analysis[viz]"` from a clone, or a git URL with
`#subdirectory=analysis`). The README's commands are read from its code blocks when the tests run, so they
follow the README; each runs verbatim in a directory where the files it names were written by this checkout's
own writers (effrep_hpc.store, `effrep quant markov --json`), tiny but in the real formats.

Needs the package index (PyPI, or the one pip is configured with). On 2 cores the whole module takes about
30 s of CPU: the install ~10 s, each command 1-4 s (vtk, pyvista and matplotlib imports, then the figures).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# Which kind of input file each analysis command reads ("surface": 1D or 2D, 2D unless another command says
# otherwise); a command added to the README needs a line here.
INPUT_KIND = {
    "contour": "surface2d", "surface3d": "surface2d", "vtk": "surface2d", "render": "surface2d",
    "compare": "surface", "plot1d": "surface1d", "sensitivity": "sensitivity",
    "quant-table": "sweep", "quant-plots": "sweep", "quant-markov": "markov",
    "convexity": "eigenmap", "spectrum": "hessian", "trajectory": "trajectory", "study": "study",
}
# A kind of file that is also of other kinds: a trajectory file is a 2D surface file with a trajectory/ group.
ALSO = {"surface1d": ("surface",), "surface2d": ("surface",), "trajectory": ("surface2d", "surface")}
OUTPUT_OPTIONS = ("--out", "--csv", "--name")  # options whose value is written, not read
# What a torch-free workstation must not get (effrep-hpc's own requirements beyond numpy, h5py, matplotlib).
NOT_PULLED = ("torch", "effrep-hpc", "scipy", "scikit-learn", "pyyaml", "mnist1d", "tqdm", "mpi4py", "submitit")
MAGIC = {".png": (b"\x89PNG\r\n\x1a\n",), ".pdf": (b"%PDF-",), ".svg": (b"<?xml",), ".vts": (b"<VTKFile", b"<?xml"),
         ".vtp": (b"<VTKFile", b"<?xml")}


def readme_lines(pattern: str) -> list[str]:
    """Lines of the README's code blocks that match ``pattern`` (backslash continuations joined)."""
    lines = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", README.read_text(), flags=re.M | re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if re.match(pattern, line.strip()):
                lines.append(line.strip())
    return lines


def readme_commands() -> list[list[str]]:
    """Every `python -m analysis ...` command of the README as argv (comments dropped)."""
    return [shlex.split(line, comments=True) for line in readme_lines(r"python3? -m analysis\s")]


def input_files(argv: list[str]) -> list[str]:
    """The files a command reads: its .h5 and .json arguments that are not the value of an output option (`study`:
    the directory right after the command)."""
    if argv[3:4] == ["study"]:
        return argv[4:5]
    return [a for prev, a in zip([""] + argv, argv) if a.endswith((".h5", ".json")) and prev not in OUTPUT_OPTIONS]


def input_kind(argv: list[str]) -> str:
    """The kind of file `python -m analysis COMMAND ...` reads (a 2D file for plot1d with --at-x/--at-y)."""
    command = argv[3]
    if command not in INPUT_KIND:
        pytest.fail(f"README runs `python -m analysis {command}`: add the kind of file it reads to INPUT_KIND")
    if command == "plot1d" and any(a.startswith(("--at-x", "--at-y")) for a in argv):
        return "surface2d"
    if command in ("render", "vtk") and any(a in ("--trajectory", "trajectory") for a in argv[4:]):
        return "trajectory"  # render --trajectory, vtk --only trajectory
    return INPUT_KIND[command]


def merged_kind(name: str, known: str | None, kind: str) -> str:
    """The kind of file that serves both a command reading `known` and one reading `kind` (the more specific)."""
    if known is None or known in ALSO.get(kind, ()):
        return kind
    if kind == known or kind in ALSO.get(known, ()):
        return known
    pytest.fail(f"README uses {name} as a {known} file and as a {kind} file")


# --- input files, written by this checkout's writers ---------------------------------------------------------


def write_surface(path: Path, *, ndim: int, tilt: float = 0.0) -> None:
    """A small surface file (as `effrep landscape` writes it) of a bowl with its minimum 0.1 off-centre."""
    from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter

    x = np.linspace(-1.0, 1.0, 13)
    y = np.linspace(-0.8, 1.0, 10) if ndim == 2 else None
    X, Y = np.meshgrid(x, y if y is not None else [0.0])
    loss = ((X - 0.3) ** 2 + 2.0 * (Y + 0.2) ** 2 + tilt * X * Y + 0.1).reshape(-1)
    metrics = {"train_loss": loss, "train_acc": 100 * np.exp(-loss), "test_loss": 1.2 * loss, "test_acc": 90 * np.exp(-loss)}
    spec = SurfaceSpec(x=x, y=y, metrics=list(metrics), config_yaml="model: {name: digits_cnn}\n", model_hash="m",
                       directions_hash="d")
    path.parent.mkdir(parents=True, exist_ok=True)
    with SurfaceWriter(path, spec) as w:
        w.write(np.arange(loss.size), metrics)


def write_trajectory(path: Path) -> None:
    """A PCA-plane scan (as `effrep trajectory` writes it): a 2D surface with the projected path in trajectory/."""
    from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter

    x, y = np.linspace(-0.4, 1.2, 13), np.linspace(-0.5, 0.6, 10)
    X, Y = np.meshgrid(x, y)
    loss = (0.05 + 2.0 * X**2 + 4.0 * Y**2 + X * Y).reshape(-1)
    epoch = np.arange(21)
    t = epoch / epoch[-1]
    px, py = (1.0 - t) ** 2, 0.4 * np.sin(np.pi * t)
    residual = 0.05 * np.sin(np.pi * t)
    path_arrays = {"epoch": epoch, "x": px, "y": py, "residual": residual,
                   "distance": np.sqrt(px**2 + py**2 + residual**2)}
    attrs = {"explained_variance_ratio": np.array([0.7, 0.2]), "explained_variance": np.array([1.4, 0.4]),
             "singular_values": np.array([5.3, 2.8]), "centered": True, "covered": "weights", "method": "svd",
             "snapshots": "runs/demo/train/weights"}
    spec = SurfaceSpec(x=x, y=y, metrics=["train_loss", "train_acc"], config_yaml="model: {name: digits_cnn}\n",
                       model_hash="m", directions_hash="d", attrs={"directions_source": "pca"},
                       trajectory={**path_arrays, "attrs": attrs})
    path.parent.mkdir(parents=True, exist_ok=True)
    with SurfaceWriter(path, spec) as w:
        w.write(np.arange(loss.size), {"train_loss": loss, "train_acc": 100 * np.exp(-loss)})


def write_eigenmap(path: Path) -> None:
    """An eigenvalue map (as `effrep curvature` writes it): a surface file of max_eig, min_eig, eig_ratio, hvps."""
    from effrep_hpc.runners.curvature import MAP_METRICS
    from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter

    x, y = np.linspace(-1.0, 1.0, 7), np.linspace(-1.0, 1.0, 5)
    X, Y = np.meshgrid(x, y)
    top, low = (10.0 + X**2 + Y**2).reshape(-1), (0.3 - 2.0 * np.abs(X * Y)).reshape(-1)
    values = dict(zip(MAP_METRICS, (top, low, np.abs(low / top), np.full(top.size, 25.0))))
    spec = SurfaceSpec(x=x, y=y, metrics=list(MAP_METRICS), config_yaml="model: {name: digits_cnn}\n", model_hash="m",
                       directions_hash="d")
    path.parent.mkdir(parents=True, exist_ok=True)
    with SurfaceWriter(path, spec) as w:
        w.write(np.arange(top.size), values)


def write_study(root: Path) -> None:
    """A study directory as `effrep study` leaves it: study.json (the manifest's documented layout) and, per variant
    and seed, the files of its measurements written by this checkout's writers; one variant's hessian failed."""
    from effrep_hpc.store.curves import MetricsFile

    variants = [{"name": f"net{depth}{'' if short else '_noshort'}", "overrides": {"model.depth": depth},
                 "group": {"depth": depth, "shortcut": short}} for short in (True, False) for depth in (8, 20)]
    runs = []
    for k, variant in enumerate(variants):
        for seed in (0, 1):
            run = f"runs/{variant['name']}/seed{seed}"
            (root / run).mkdir(parents=True, exist_ok=True)
            with MetricsFile(root / run / "metrics.h5", config_yaml="train: {epochs: 2}\n", fields=["epoch", "test_acc"],
                             epochs=2, resume=False) as metrics:
                for epoch in range(2):
                    metrics.write_epoch(epoch, {"epoch": epoch, "test_acc": 80.0 + 5 * epoch + k + seed})
            write_surface(root / run / "scan1d.h5", ndim=1)
            write_surface(root / run / "scan2d.h5", ndim=2, tilt=0.5 * k)
            write_eigenmap(root / run / "curvature.h5")
            write_trajectory(root / run / "trajectory.h5")
            nodes = {kind: {"status": "done", "outputs": {"surface": f"{run}/{kind}.h5"}}
                     for kind in ("scan1d", "scan2d", "curvature", "trajectory")}
            nodes["train"] = {"status": "done", "outputs": {"checkpoint": f"{run}/checkpoint.pt",
                                                            "metrics": f"{run}/metrics.h5"}}
            if k == 3:
                nodes["hessian"] = {"status": "failed", "error": "out of memory", "outputs": {"hessian": f"{run}/hessian.json"}}
            else:
                write_hessian(root / run / "hessian.json")
                nodes["hessian"] = {"status": "done", "outputs": {"hessian": f"{run}/hessian.json"}}
            runs.append({"variant": variant["name"], "seed": seed, "dir": run, "nodes": nodes})
    manifest = {"kind": "study", "schema_version": 1, "name": root.name, "config": "study: {}\n", "variants": variants,
                "seeds": [0, 1], "runs": runs, "pairs": [], "figures": {}, "table": {}}
    (root / "study.json").write_text(json.dumps(manifest, indent=1))


def write_hessian(path: Path) -> None:
    """The result file of `effrep hessian` (store.curvature.write_point), spectral density included."""
    from effrep_hpc.store.curvature import write_point

    grid = np.linspace(-1.0, 12.0, 300)
    density = np.exp(-0.5 * (grid / 0.3) ** 2) / (0.3 * np.sqrt(2 * np.pi))
    write_point(path, {"top_eigenvalues": [11.0, 9.0], "min_eigenvalue": -0.4, "trace": 48.0, "trace_stderr": 2.0,
                       "hvps": 300, "density": {"grid": grid.tolist(), "values": density.tolist(), "sigma": 0.13}})


def write_sensitivity(path: Path) -> None:
    """A sensitivity file (as `effrep prune sensitivity` writes it): 3 layers x 4 ratios x 3 criteria."""
    from effrep_hpc.store.sensitivity import SensitivitySpec, SensitivityWriter

    n = 3
    spec = SensitivitySpec(
        layers=[f"features.{i}" for i in range(n)], ratios=np.array([0.1, 0.3, 0.5, 0.9]),
        criteria=["l1", "random", "largest"], layer_ids=list(range(1, n + 1)), widths=[8] * n,
        kept=np.tile([7, 5, 4, 1], (n, 1)), flops_fraction=np.full((n, 4), 0.9), filter_l1=np.ones((n, 8)),
        arch_name="digits_vgg", eval={"split": "test", "size": None}, baseline_acc=97.5, baseline_loss=0.1,
        config_yaml="prune: {}\n",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with SensitivityWriter(path, spec) as w:
        for flat in range(spec.num_cells):
            w.write(flat, 95.0 - 2.0 * (flat % 12), 0.1 + 0.05 * (flat % 12))


def write_sweep(path: Path, epochs: int = 12) -> None:
    """A sweep file (as `effrep quant sweep` writes it): FP, BC and SR at 1 and 2 bits, 2 seeds, the lr dropped."""
    from effrep_hpc.store.sweep import CURVE_FIELDS, HIST_BINS, RunRecord, RunSpec, prepare_sweep, run_names, write_run

    keys = [("fp", 32, s) for s in range(2)] + [(a, b, s) for a in ("bc", "sr") for b in (1, 2) for s in range(2)]
    runs = [RunSpec(name, {"algorithm": a, "bits": b, "lr": 0.1, "batch_size": 64, "seed": s}, f"{a} {b} {s}\n")
            for name, (a, b, s) in zip(run_names(len(keys)), keys)]
    path.parent.mkdir(parents=True, exist_ok=True)
    prepare_sweep(path, runs, config_yaml="", epochs=epochs)
    rng = np.random.default_rng(0)
    lr = np.where(np.arange(epochs) >= epochs - 4, 0.01, 0.1)
    for i, (a, _, _) in enumerate(keys):
        loss = np.geomspace(1.0, 0.01, epochs) * rng.uniform(0.8, 1.2, epochs)
        rows = [{k: 0.0 for k in CURVE_FIELDS} | {"epoch": e + 1, "train_loss": loss[e], "test_loss": 1.5 * loss[e],
                                                 "test_acc": 95 + 3 * rng.random(), "train_acc": 99.0, "lr": lr[e]}
                for e in range(epochs)]
        hist_q = np.zeros(HIST_BINS) if a != "fp" else None
        if hist_q is not None:
            hist_q[[10, 89]] = 50
        hist_float = np.exp(-np.linspace(-3, 3, HIST_BINS) ** 2) if a in ("fp", "bc") else None
        write_run(path, i, RunRecord("done", curves=rows, hist_float=hist_float, hist_quant=hist_q))


def effrep_argv(argv: list[str]) -> list[str]:
    """`effrep ...` run with this Python (the main environment, torch included)."""
    return [sys.executable, "-m", "effrep_hpc.cli", *argv[1:]]


def write_markov(work: Path, name: str) -> None:
    """The JSON of `effrep quant markov --json`: the README's own command when it writes ``name``, else a small one."""
    argv = ["effrep", "quant", "markov", "--mu", "1", "--sigma", "1", "--delta", "1", "--lr", "0.1", "0.01", "--json"]
    for line in readme_lines(r"effrep quant markov\s"):
        words = shlex.split(line, comments=True)
        if ">" in words[:-1] and Path(words[words.index(">") + 1]) == Path(name):
            argv = words[: words.index(">")]
    done = subprocess.run(effrep_argv(argv), cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"
    json.loads(done.stdout)  # what `> FILE` keeps must be valid JSON
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(done.stdout)


WRITERS = {
    "surface2d": lambda work, name: write_surface(work / name, ndim=2, tilt=0.5 if "large" in name else 0.0),
    "surface1d": lambda work, name: write_surface(work / name, ndim=1),
    "sensitivity": lambda work, name: write_sensitivity(work / name),
    "sweep": lambda work, name: write_sweep(work / name),
    "markov": write_markov,
    "eigenmap": lambda work, name: write_eigenmap(work / name),
    "hessian": lambda work, name: write_hessian(work / name),
    "trajectory": lambda work, name: write_trajectory(work / name),
    "study": lambda work, name: write_study(work / name),
}


# --- fixtures -----------------------------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on the path; bytecode written, so only the first command compiles."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return env | {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"} | extra


@pytest.fixture(scope="module")
def torch_free_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only `pip install "<copy of analysis/>[viz]"` in it; returns its python."""
    base = tmp_path_factory.mktemp("torch_free")
    # A copy of the subdirectory alone: proves it builds without the rest of the checkout (as a git URL with
    # #subdirectory=analysis does) and keeps build output out of the source tree.
    src = base / "src" / "analysis"
    shutil.copytree(ROOT / "analysis", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    venv = base / "venv"
    # Plain venv; pip comes from this environment (`pip --python`), which saves ensurepip's ~10 s.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-compile", "--quiet", f"{src}[viz]"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600, env=_clean_env())
    assert done.returncode == 0, f"{shlex.join(install)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return python


@pytest.fixture(scope="module")
def readme_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every file the README's analysis commands read, at the paths the README gives."""
    work = tmp_path_factory.mktemp("readme")
    kinds: dict[str, str] = {}
    for argv in readme_commands():
        for name in input_files(argv):
            kinds[name] = merged_kind(name, kinds.get(name), input_kind(argv))
    for name, kind in kinds.items():
        WRITERS["surface2d" if kind == "surface" else kind](work, name)
    return work


# --- tests --------------------------------------------------------------------------------------------------


def test_the_root_distribution_leaves_analysis_to_effrep_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    import setuptools

    tomllib = pytest.importorskip("tomllib")
    kwargs: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: kwargs.update(kw))
    runpy.run_path(str(ROOT / "setup.py"))
    assert not [p for p in kwargs["packages"] if p.split(".")[0] == "analysis"], "effrep-hpc packages analysis again"
    assert f"effrep-analysis @ {(ROOT / 'analysis').as_uri()}" in kwargs["install_requires"]
    sub = tomllib.loads((ROOT / "analysis" / "pyproject.toml").read_text())
    assert sub["tool"]["setuptools"]["packages"] == ["analysis"]
    assert sub["project"]["version"] == kwargs["version"]


def test_the_venv_has_analysis_and_neither_torch_nor_effrep_hpc(torch_free_python: Path) -> None:
    code = (
        "import importlib.metadata as md, json, re, analysis.cli;"
        "names = sorted(re.split(r'[ ;<>=!~\\[]', r)[0].lower() for r in md.requires('effrep-analysis'));"
        "print(json.dumps({'requires': names, 'installed': sorted(d.metadata['Name'].lower() for d in md.distributions()),"
        " 'file': analysis.__file__}))"
    )
    done = subprocess.run([str(torch_free_python), "-c", code], capture_output=True, text=True, cwd=torch_free_python.parent,
                          env=_clean_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["requires"] == ["h5py", "matplotlib", "numpy", "pyvista", "vtk"]
    assert not set(info["installed"]) & set(NOT_PULLED), set(info["installed"]) & set(NOT_PULLED)
    assert "site-packages" in info["file"]  # the installed copy, not this checkout
    for module in ("torch", "effrep_hpc"):
        done = subprocess.run([str(torch_free_python), "-c", f"import {module}"], capture_output=True, text=True,
                              cwd=torch_free_python.parent, env=_clean_env(), timeout=60)
        assert done.returncode != 0 and f"No module named '{module}'" in done.stderr


def test_the_readme_commands_are_found() -> None:
    commands = [argv[3] for argv in readme_commands()]  # guards against a README layout this file no longer parses
    assert len(commands) >= 5 and "contour" in commands, commands


@pytest.mark.parametrize("argv", readme_commands(), ids=shlex.join)
def test_readme_command_runs_without_torch(argv: list[str], torch_free_python: Path, readme_workdir: Path) -> None:
    done = subprocess.run([str(torch_free_python), *argv[1:]], cwd=readme_workdir, capture_output=True, text=True,
                          env=_clean_env(MPLCONFIGDIR=str(readme_workdir / ".mpl")), timeout=300)
    assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    wrote = [readme_workdir / line.removeprefix("wrote: ") for line in done.stdout.splitlines() if line.startswith("wrote: ")]
    if not wrote:  # a command that prints its result (quant-table) must print something
        assert done.stdout.strip(), f"{shlex.join(argv)} neither wrote a file nor printed anything"
    for path in wrote:
        assert path.is_file() and path.stat().st_size > 0, path
        magic = MAGIC.get(path.suffix)
        if magic is not None:
            assert path.read_bytes().startswith(magic), path


def _run_blocked(command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python -m analysis COMMAND` on a 2D file with vtk and pyvista unimportable, as where `[viz]` is missing."""
    surface = tmp_path / "scan.h5"
    write_surface(surface, ndim=2)
    code = (
        "import runpy, sys; sys.modules.update(vtkmodules=None, vtk=None, pyvista=None); "
        f"sys.argv = ['analysis', {command!r}, {str(surface)!r}]; runpy.run_module('analysis', run_name='__main__')"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["vtk", "render"])
def test_vtk_and_render_without_viz_say_how_to_install_it(command: str, tmp_path: Path) -> None:
    done = _run_blocked(command, tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "[viz]" in lines[0], done.stderr
    assert not list(tmp_path.glob("scan_*")), "nothing is written"
