"""Training: per-epoch checkpoints, resume after SIGKILL, DDP equivalence, refusal of foreign pickles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from effrep_hpc.config import ResumeMismatch, load_config
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/demo/digits.yaml"
BIN = Path(sys.executable).parent


def overrides(out: Path, epochs: int = 4, extra: tuple[str, ...] = ()) -> list[str]:
    return [f"run.out={out}", f"train.epochs={epochs}", "train.milestones=[2]", "run.progress=false", "run.threads=1", *extra]


def effrep(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "effrep_hpc.cli", *args], cwd=ROOT, env=env, **kw)


def test_train_writes_checkpoint_metrics_and_weights(tmp_path: Path) -> None:
    cfg = load_config(CONFIG, overrides(tmp_path / "run", epochs=3))
    out = run_train(cfg)
    ckpt = load_checkpoint(out.checkpoint)
    assert ckpt["epoch"] == 3 and "digits_cnn" in ckpt["config"]
    with h5py.File(out.metrics, "r") as f:
        assert f["done"][()].all() and f.attrs["config"] == ckpt["config"]
        acc = f["test_acc"][()]
    assert acc[-1] > 80.0, f"digits CNN should learn in 3 epochs, test acc {acc}"
    kept = sorted(p.name for p in out.weights_dir.iterdir())
    assert kept == ["epoch_0000.pt", "epoch_0001.pt", "epoch_0002.pt", "epoch_0003.pt"]


def test_resume_after_sigkill_gives_identical_weights(tmp_path: Path) -> None:
    ref = run_train(load_config(CONFIG, overrides(tmp_path / "ref", epochs=5)))
    run = tmp_path / "killed"
    args = ["train", str(CONFIG), *overrides(run, epochs=5)]
    proc = effrep(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and load_checkpoint(ckpt)["epoch"] >= 2:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("training finished before it could be killed; make the run longer")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = load_checkpoint(ckpt)["epoch"]
    assert 2 <= interrupted_at < 5
    assert effrep(*args, stdout=subprocess.DEVNULL).wait(timeout=300) == 0
    a, b = load_checkpoint(ref.checkpoint), load_checkpoint(ckpt)
    assert b["epoch"] == 5
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with h5py.File(ref.metrics) as fa, h5py.File(run / "metrics.h5") as fb:
        np.testing.assert_array_equal(fa["train_loss"][()], fb["train_loss"][()])


def test_resume_with_other_config_is_refused(tmp_path: Path) -> None:
    run_train(load_config(CONFIG, overrides(tmp_path / "run", epochs=1)))
    with pytest.raises(ValueError, match=r"train\.lr"):
        run_train(load_config(CONFIG, overrides(tmp_path / "run", epochs=1, extra=("train.lr=0.01",))))


def test_a_changed_result_key_is_refused_by_name_and_leaves_every_output_as_it_was(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_train(load_config(CONFIG, overrides(run, epochs=1, extra=("train.keep_every=0",))))
    before = {p: p.read_bytes() for p in (run / "checkpoint.pt", run / "metrics.h5")}
    changed = ("train.keep_every=0", "train.lr=0.01", "train.seed=3", "run.threads=1")
    with pytest.raises(ResumeMismatch, match=r"train\.lr: 0\.05 -> 0\.01; train\.seed: 0 -> 3\).*--overwrite"):
        run_train(load_config(CONFIG, overrides(run, epochs=1, extra=changed)))
    proc = effrep("train", str(CONFIG), *overrides(run, epochs=1, extra=changed), stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "train.lr: 0.05 -> 0.01" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in before} == before
    # what is not a result (threads, progress, how often weights are kept) resumes the same run
    assert run_train(load_config(CONFIG, overrides(run, epochs=1, extra=("train.keep_every=3",)))).final["epoch"] == 1


def test_foreign_pickle_checkpoint_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, (f"touch {marker}",))

    torch.save({"format": "effrep-checkpoint", "model": Evil()}, run / "checkpoint.pt")
    before = (run / "checkpoint.pt").read_bytes()
    proc = effrep("train", str(CONFIG), *overrides(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "arbitrary code" in err and "Traceback" not in err
    assert not marker.exists()
    assert (run / "checkpoint.pt").read_bytes() == before


@pytest.mark.torchrun
def test_two_process_gloo_matches_one_process(tmp_path: Path) -> None:
    torchrun = BIN / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    extra = ("model.name=digits_mlp", "model.kwargs={norm: false}", "train.batch_size=64")
    ref = run_train(load_config(CONFIG, overrides(tmp_path / "one", epochs=2, extra=extra)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "effrep_hpc.cli", "train", str(CONFIG),
           *overrides(tmp_path / "two", epochs=2, extra=extra)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_checkpoint(ref.checkpoint), load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert a["final"]["train_loss"] == pytest.approx(b["final"]["train_loss"], rel=1e-4)
    assert a["final"]["test_loss"] == pytest.approx(b["final"]["test_loss"], rel=1e-4)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5)
