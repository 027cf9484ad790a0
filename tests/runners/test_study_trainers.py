"""Studies whose variants are trained by other commands: `prune retrain` of another variant's run, `prune scratch`
and `quant train` (``trainer:``), as the shipped prune_vs_scratch and bc_vs_sr studies use them, each run small."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from effrep_hpc.config import load_config
from effrep_hpc.config.study import plan_study
from effrep_hpc.models import rebuild_model
from effrep_hpc.runners.prune import run_prune
from effrep_hpc.store.checkpoint import load_checkpoint
from effrep_hpc.store.surface import read_surface
from tests.runners.runner_helpers import ROOT
from tests.runners.test_study import in_process, manifest

PRUNE = ROOT / "configs/studies/prune_vs_scratch.yaml"
QUANT = ROOT / "configs/studies/bc_vs_sr.yaml"
SMALL = [  # one seed, a few epochs, tiny grids and samples: the shipped graph, quickly
    "study.seeds=[0]", "train.epochs=2", "train.keep_every=1", "landscape.train_size=64", "hessian.train_size=64",
    "hessian.max_iter=5", "hessian.trace_probes=2",
    "study.measure={scan1d: {landscape.x: '-1:1:3'}, scan2d: {landscape.x: '-1:1:3', landscape.y: '-1:1:3'}, "
    "trajectory: {landscape.x: '-1:1:3', landscape.y: '-1:1:3'}, interp: {landscape.x: '-0.5:1.5:5', landscape.bn: recompute}}",
]
# the prune study's ResNet variants only (the VGG variants are the same graph at four times the cost), on the
# 20-layer net (the 56-layer one's graph at a third of the cost) with one block per stage pruned by the
# ResNet-56-B stage ratios
RESNET = ("study.variants=[{name: resnet56}, {name: resnet56_pruned, trainer: prune, source: resnet56, "
          "skip: [trajectory]}, {name: resnet56_scratch, trainer: scratch}]", "model.name=digits_resnet20",
          "prune.ratios={layer1.0.conv1: 0.6, layer2.1.conv1: 0.3, layer3.1.conv1: 0.1}")


def run_study(config: Path, out: Path, *extra: str) -> tuple[dict, str]:
    code, stdout, stderr = in_process(["study", str(config), f"study.out={out}", *SMALL, *extra])
    assert code == 0, stderr
    return {(r["variant"], r["seed"]): r["nodes"] for r in manifest(out)["runs"]}, stdout


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prune") / "s"
    runs, _ = run_study(PRUNE, out, *RESNET, "data.train_size=256", "prune.retrain_epochs=1",
                        "study.pairs=[{name: p, a: resnet56_pruned, b: resnet56_scratch}]")
    return out, runs


@pytest.fixture(scope="module")
def quant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("quant") / "s"
    runs, stdout = run_study(QUANT, out, "train.epochs=3", "study.pairs=[{name: p, a: bc1, b: sr1}]")
    return out, runs, stdout


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_the_pruned_variant_is_the_prune_command_on_its_sources_run(pruned: tuple[Path, dict], tmp_path: Path) -> None:
    out, runs = pruned
    nodes = runs["resnet56_pruned", 0]
    assert all(n["status"] == "done" for n in nodes.values()) and "trajectory" not in nodes  # skip: [trajectory]
    source = out / runs["resnet56", 0]["train"]["outputs"]["checkpoint"]
    # the same retraining by hand: `effrep prune retrain` with the study's config of that node, into another folder
    node = next(n for n in plan_study(load_config(PRUNE, [f"study.out={out}", *SMALL, *RESNET, "data.train_size=256",
                                                          "prune.retrain_epochs=1", "study.pairs=[]"])).nodes
                if n.id == "train:resnet56_pruned:seed0")
    assert node.cfg.prune.checkpoint == str(source)
    import dataclasses

    alone = run_prune(dataclasses.replace(node.cfg, prune=dataclasses.replace(node.cfg.prune, out=str(tmp_path / "p"))),
                      retrain=True)
    study = weights(out / nodes["train"]["outputs"]["checkpoint"])
    by_hand = load_checkpoint(tmp_path / "p" / "retrained.pt")["model"]
    assert study.keys() == by_hand.keys() and all(torch.equal(study[k], by_hand[k]) for k in study)
    assert alone.rows["retrained"]["params"] < alone.rows["original"]["params"]


def test_scratch_trains_the_pruned_widths_and_every_measurement_starts_from_its_own_net(pruned: tuple[Path, dict]) -> None:
    out, runs = pruned
    arch = {v: load_checkpoint(out / runs[v, 0]["train"]["outputs"]["checkpoint"]).get("arch") or {}
            for v in ("resnet56_pruned", "resnet56_scratch")}
    # ResNet-56-B's stage ratios at widths 8/16/32: floor(8 * 0.4) = 3 in stage 1, floor(16 * 0.7) = 11, floor(32 * 0.9) = 28
    pruned_widths = json.dumps(arch["resnet56_pruned"], sort_keys=True)
    assert pruned_widths == json.dumps(arch["resnet56_scratch"], sort_keys=True)
    assert {3, 11, 28} <= {int(w) for w in _numbers(arch["resnet56_pruned"])}
    params = {}
    for variant in ("resnet56", "resnet56_pruned", "resnet56_scratch"):
        nodes = runs[variant, 0]
        net = rebuild_model(load_checkpoint(out / nodes["train"]["outputs"]["checkpoint"]))
        # the Hessian's parameters: the conv and linear weights (landscape.bias_bn=ignore leaves biases and BN out)
        count = sum(p.numel() for p in net.parameters() if p.dim() > 1)
        hessian = json.loads((out / nodes["hessian"]["outputs"]["hessian"]).read_text())
        assert hessian["parameters"] == count  # the Hessian of this variant's own (pruned or not) net
        params[variant] = count
        scan = read_surface(out / nodes["scan1d"]["outputs"]["surface"])
        assert scan["attrs"]["model_hash"] == hessian["model_hash"]
    assert params["resnet56_pruned"] == params["resnet56_scratch"] < params["resnet56"]
    interp = read_surface(out / manifest(out)["pairs"][0]["outputs"]["surface"])
    assert np.isfinite(interp["train_loss"]).all()  # BN recomputed: no negative interpolated variances past the ends


def _numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_quantized_runs_are_measured_at_their_quantized_weights(quant: tuple[Path, dict, str]) -> None:
    out, runs, _ = quant
    for variant, levels in (("sr1", 1), ("bc1", 1), ("sr2", 2), ("bc2", 2)):
        nodes = runs[variant, 0]
        snapshots = sorted((out / nodes["train"]["outputs"]["checkpoint"]).parent.glob("weights/epoch_*.pt"))
        assert [p.name for p in snapshots] == [f"epoch_{e:04d}.pt" for e in range(4)]
        for path in [out / nodes["train"]["outputs"]["checkpoint"], *snapshots]:
            net = weights(path)
            for name in ("hidden.0.linear.weight", "classifier.weight"):
                # 1 bit: sign x scale; the paper's 2-bit grid: {-1, 0, 1} x Delta: the weights the net computes with
                assert len(torch.unique(net[name].abs())) <= levels, (variant, path.name, name)
        path = read_surface(out / nodes["trajectory"]["outputs"]["surface"])["attrs"]
        assert path["model_hash"] == json.loads((out / nodes["hessian"]["outputs"]["hessian"]).read_text())["model_hash"]


def test_the_table_reads_each_trainers_own_metrics(quant: tuple[Path, dict, str]) -> None:
    out, runs, stdout = quant
    table = {r["variant"]: r for r in json.loads((out / "table.json").read_text())["rows"]}
    for variant in ("fp", "bc1", "sr1", "bc2", "sr2"):
        with h5py.File(out / runs[variant, 0]["train"]["outputs"]["metrics"], "r") as f:
            acc = f["test_acc"][()][f["done"][()].astype(bool)]
        assert len(acc) == 3
        assert table[variant]["test_error"]["mean"] == pytest.approx(100.0 - acc[-1], rel=1e-3)
    assert "| sr1 |" in stdout


@pytest.mark.parametrize("variants,message", [
    ("[{name: a, trainer: prun}]", "study.variants[a].trainer: unknown trainer 'prun'; did you mean 'prune'?"),
    ("[{name: a}, {name: b, trainer: prune, skip: [trajectory]}]", "study.variants[b].source: trainer=prune needs the variant"),
    ("[{name: a}, {name: b, trainer: prune, source: a}]", "retraining a pruned net keeps none; add skip: [trajectory]"),
    ("[{name: a}, {name: b, trainer: prune, source: a, skip: [trajectory]}, {name: c, trainer: prune, source: b, "
     "skip: [trajectory]}]", "study.variants[c].source: b is itself pruned"),
    ("[{name: a, source: b}, {name: b}]", "only a trainer=prune variant has a source"),
    ("[{name: a, skip: [scan3d]}]", "study.variants[a].skip: unknown measurement 'scan3d'; did you mean 'scan2d'?"),
])
def test_bad_trainers_are_one_line_exit_2(tmp_path: Path, variants: str, message: str) -> None:
    code, stdout, stderr = in_process(["study", str(PRUNE), f"study.out={tmp_path / 's'}", f"study.variants={variants}",
                                       "study.pairs=[]"])
    assert code == 2 and stderr.count("\n") == 1 and message in stderr, stderr
    assert not (tmp_path / "s").exists()


def test_a_pair_of_pruned_and_unpruned_nets_is_refused(tmp_path: Path) -> None:
    code, _, stderr = in_process(["study", str(PRUNE), f"study.out={tmp_path / 's'}",
                                  "study.pairs=[{name: p, a: resnet56, b: resnet56_pruned}]"])
    assert code == 2 and "study.pairs[p]: interpolation needs one architecture for a and b" in stderr


def test_a_pruned_run_waits_for_its_source_in_the_submitted_graph() -> None:
    from effrep_hpc.config.study import submission_stages

    stages = {role: needs for role, _, needs in submission_stages(load_config(PRUNE), str(PRUNE))}
    assert stages["train"] == () and stages["prune"] == ("train",)
    assert stages["scan2d"] == ("train", "prune") and stages["interp"] == ("train", "prune")
