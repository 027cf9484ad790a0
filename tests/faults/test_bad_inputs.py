"""Bad input anywhere ends in one line on stderr, exit code 2, and leaves every file as it was.

Each case is a command a user could type with one thing wrong in it: a typo in a key, a value out of
range, a missing or foreign file, a file of another run, a model without what the command needs. For
each the test asserts exit code 2, exactly one non-empty line on stderr starting with ``error:`` and
without "Traceback", and that no file under the workspace (nor ``runs/`` of the checkout) was
created, changed or removed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CFG = "configs/demo/digits.yaml"
QCFG = "configs/demo/quant_digits.yaml"
PCFG = "configs/demo/prune_digits.yaml"
QUIET = ["run.progress=false", "run.threads=1", "dist.backend=serial"]


def run(args: list[str], module: str = "effrep_hpc.cli") -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    env.pop("SLURM_ARRAY_TASK_ID", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a trained digits CNN, a finished 3x3 scan, a truncated copy of it, a text file and an empty directory."""
    w = tmp_path_factory.mktemp("ws")
    train = run(["train", CFG, f"run.out={w}/train", "train.epochs=1", "train.milestones=[1]", *QUIET])
    assert train.returncode == 0, train.stderr
    scan = run(["landscape", CFG, f"run.out={w}/train", f"landscape.surface={w}/surface.h5", "landscape.x=-1:1:3",
                "landscape.y=-1:1:3", "landscape.train_size=64", *QUIET])
    assert scan.returncode == 0, scan.stderr
    (w / "notes.txt").write_text("not an HDF5 file, not a checkpoint, not YAML mapping\n")
    (w / "truncated.h5").write_bytes((w / "surface.h5").read_bytes()[:20000])  # a copy cut off mid-way
    (w / "empty").mkdir()
    return w


def snapshot(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        if root.exists():
            for p in sorted(root.rglob("*")):
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


W = "{W}"  # replaced by the workspace path
CASES: list[tuple[str, list[str]]] = [
    # train
    ("train: config file missing", ["train", "/nonexistent/digits.yaml", f"run.out={W}/t2"]),
    ("train: unknown key", ["train", CFG, "train.lrr=0.1", f"run.out={W}/t2"]),
    ("train: negative lr", ["train", CFG, "train.lr=-1", f"run.out={W}/t2"]),
    ("train: unknown model", ["train", CFG, "model.name=resnet5", f"run.out={W}/t2"]),
    ("train: cifar10 without root", ["train", CFG, "data.name=cifar10", f"run.out={W}/t2"]),
    ("train: epochs not a number", ["train", CFG, "train.epochs=abc", f"run.out={W}/t2"]),
    ("train: milestones decreasing", ["train", CFG, "train.milestones=[5,2]", f"run.out={W}/t2"]),
    ("train: stray word after the config", ["train", CFG, "lr", f"run.out={W}/t2"]),
    ("train: config is a text file", ["train", f"{W}/notes.txt", f"run.out={W}/t2"]),
    ("train: imagenet folder missing", ["train", CFG, "data.name=imagenet", f"data.root={W}/nope", f"run.out={W}/t2"]),
    ("train: resume with another lr", ["train", CFG, f"run.out={W}/train", "train.epochs=1", "train.milestones=[1]",
                                       "train.lr=0.07", *QUIET]),
    ("train: cuda on a machine without it", ["train", CFG, "run.device=cuda", f"run.out={W}/t2", *QUIET]),
    # landscape
    ("landscape: bad axis", ["landscape", CFG, f"run.out={W}/train", "landscape.x=abc", f"landscape.surface={W}/s2.h5"]),
    ("landscape: checkpoint missing", ["landscape", CFG, f"landscape.checkpoint={W}/missing.pt",
                                       f"landscape.surface={W}/s2.h5", *QUIET]),
    ("landscape: text file as directions", ["landscape", CFG, f"run.out={W}/train", f"landscape.directions={W}/notes.txt",
                                            f"landscape.surface={W}/s2.h5", *QUIET]),
    ("landscape: text file as surface", ["landscape", CFG, f"run.out={W}/train", f"landscape.surface={W}/notes.txt",
                                         "landscape.x=-1:1:3", "landscape.y=-1:1:3", *QUIET]),
    ("landscape: truncated surface resumed", ["landscape", CFG, f"run.out={W}/train", f"landscape.surface={W}/truncated.h5",
                                              "landscape.x=-1:1:3", "landscape.y=-1:1:3", "landscape.train_size=64", *QUIET]),
    ("landscape: unknown loss", ["landscape", CFG, f"run.out={W}/train", "landscape.loss=hinge"]),
    ("landscape: 2D interpolation", ["landscape", CFG, f"run.out={W}/train", f"landscape.target={W}/train/checkpoint.pt"]),
    ("landscape: resume with another loss", ["landscape", CFG, f"run.out={W}/train", f"landscape.surface={W}/surface.h5",
                                             "landscape.x=-1:1:3", "landscape.y=-1:1:3", "landscape.train_size=64",
                                             "landscape.loss=mse", *QUIET]),
    ("landscape: checkpoint of another model", ["landscape", CFG, "model.name=digits_mlp", f"run.out={W}/train",
                                                f"landscape.surface={W}/s2.h5", *QUIET]),
    ("landscape: unwritable output directory", ["landscape", CFG, f"run.out={W}/train", "landscape.surface=/proc/no/s.h5",
                                                "landscape.x=-1:1:3", "landscape.y=-1:1:3", *QUIET]),
    ("landscape: array task outside SLURM", ["landscape", CFG, f"run.out={W}/train", f"landscape.surface={W}/s2.h5",
                                             "run.progress=false", "dist.backend=array"]),
    ("landscape: task id without array", ["landscape", CFG, f"run.out={W}/train", "dist.task_id=1"]),
    # merge and status
    ("merge: a text file", ["merge", f"{W}/notes.txt", "-o", f"{W}/out.h5"]),
    ("merge: shard missing", ["merge", f"{W}/missing.shard-0-of-2.h5", "-o", f"{W}/out.h5"]),
    ("merge: no output given", ["merge", f"{W}/surface.h5"]),
    ("status: a text file", ["status", f"{W}/notes.txt"]),
    ("status: missing file", ["status", f"{W}/missing.h5"]),
    ("status: nothing under a directory", ["status", f"{W}/empty"]),
    # prune
    ("prune flops: input too small for the preset", ["prune", "flops", "--model", "vgg16", "--preset", "vgg16-a",
                                                     "--input-shape", "3,64,64"]),
    ("prune flops: no prunable conv layers", ["prune", "flops", "--model", "digits_mlp", "--ratio", "hidden.0=0.5"]),
    ("prune flops: unknown model", ["prune", "flops", "--model", "vgg61", "--preset", "vgg16-a"]),
    ("prune flops: unknown preset", ["prune", "flops", "--model", "vgg16", "--preset", "vgg16-z"]),
    ("prune flops: ratio out of range", ["prune", "flops", "--model", "vgg16", "--ratio", "features.0=1.5"]),
    ("prune flops: bad input shape", ["prune", "flops", "--model", "vgg16", "--preset", "vgg16-a", "--input-shape", "0,1"]),
    ("prune layers: unknown model", ["prune", "layers", "--model", "nosuch"]),
    ("prune apply: nothing to prune", ["prune", "apply", CFG, f"run.out={W}/train", f"prune.out={W}/p2", *QUIET]),
    ("prune sensitivity: unknown criterion", ["prune", "sensitivity", CFG, f"run.out={W}/train", "prune.sensitivity_criteria=[l9]"]),
    ("prune retrain: preset of another model", ["prune", "retrain", CFG, f"run.out={W}/train", "prune.preset=resnet56-a",
                                                f"prune.out={W}/p2", *QUIET]),
    # quant
    ("quant train: unknown algorithm", ["quant", "train", QCFG, "quant.algorithm=bcc", f"run.out={W}/q2"]),
    ("quant train: zero bits", ["quant", "train", QCFG, "quant.bits=0", f"run.out={W}/q2"]),
    ("quant sweep: repeated bits", ["quant", "sweep", QCFG, "quant.sweep.bits=[1,1]", f"run.out={W}/q2"]),
    ("quant sweep: text file as the sweep file", ["quant", "sweep", QCFG, f"run.out={W}/q2", f"quant.sweep_file={W}/notes.txt",
                                                   *QUIET]),
    ("quant sweep: truncated surface as the sweep file", ["quant", "sweep", QCFG, f"run.out={W}/q2",
                                                          f"quant.sweep_file={W}/truncated.h5", *QUIET]),
    ("quant export: not a quantized checkpoint", ["quant", "export", f"{W}/train/checkpoint.pt", "-o", f"{W}/packed.pt"]),
    ("quant export: missing checkpoint", ["quant", "export", f"{W}/missing.pt"]),
    ("quant markov: zero grid", ["quant", "markov", "--mu", "1", "--sigma", "1", "--delta", "0", "--lr", "0.1"]),
    # analysis (torch-free)
    ("analysis: contour of a text file", ["analysis:contour", f"{W}/notes.txt", "--out", f"{W}/fig"]),
    ("analysis: contour of a missing file", ["analysis:contour", f"{W}/missing.h5", "--out", f"{W}/fig"]),
    ("analysis: unknown command", ["analysis:contourz", f"{W}/surface.h5"]),
]


# Variants of a kind the default run already covers (config checks, a second unknown name or text file, ...):
# `make test-slow` runs them, so `make test` stays under 10 minutes; every case starts a process (~4 s).
SLOW_CASES = {
    "train: negative lr", "train: unknown model", "train: epochs not a number", "train: milestones decreasing",
    "train: stray word after the config", "landscape: text file as surface", "landscape: unknown loss",
    "landscape: 2D interpolation", "landscape: task id without array", "merge: no output given",
    "status: missing file", "prune flops: unknown model", "prune flops: ratio out of range",
    "prune flops: bad input shape", "prune layers: unknown model", "quant train: zero bits",
    "quant sweep: repeated bits", "quant sweep: text file as the sweep file", "quant export: missing checkpoint",
    "analysis: contour of a missing file",
}


@pytest.mark.parametrize(
    "args",
    [pytest.param(a, id=name, marks=[pytest.mark.slow] if name in SLOW_CASES else []) for name, a in CASES],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(ws: Path, args: list[str]) -> None:
    args = [a.replace(W, str(ws)) for a in args]
    module = "effrep_hpc.cli"
    if args[0].startswith("analysis:"):
        module, args = "analysis", [args[0].split(":", 1)[1], *args[1:]]
    before = snapshot(ws, ROOT / "runs")
    proc = run(args, module)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    assert snapshot(ws, ROOT / "runs") == before


def test_there_are_at_least_forty_distinct_bad_inputs() -> None:
    assert len({tuple(a) for _, a in CASES}) == len(CASES) >= 40
    assert SLOW_CASES <= {name for name, _ in CASES}  # no stale name: each slow case exists
    assert {a[0].split(":")[0] for _, a in CASES} >= {"train", "landscape", "merge", "status", "prune", "quant", "analysis"}
