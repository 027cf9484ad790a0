"""Every shipped study file loads and passes the study's checks (each node's config built), without running."""

from __future__ import annotations

from pathlib import Path

import pytest

from effrep_hpc.config import load_config
from effrep_hpc.config.study import plan_study

STUDIES = sorted((Path(__file__).resolve().parents[1] / "configs" / "studies").glob("*.yaml"))


def test_the_papers_studies_are_shipped() -> None:
    assert {"tiny", "skip_connections", "width", "batch_size", "prune_vs_scratch", "bc_vs_sr"} <= {p.stem for p in STUDIES}


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_file_plans_every_node(path: Path) -> None:
    cfg = load_config(path)  # raises ConfigError with every problem, as `effrep study` does before running
    plan = plan_study(cfg)
    s = cfg.study
    assert plan.name == path.stem  # the file name is the study's name (its output folder)
    assert len(s.seeds) >= 2 if path.stem == "tiny" else len(s.seeds) >= 3  # claims need >= 3 seeds
    runs = len(s.variants) * len(s.seeds)
    skipped = sum(len(v.skip) for v in s.variants) * len(s.seeds)  # a pruned-and-retrained run keeps no path
    want = runs * (1 + len(s.measurements)) - skipped + len(s.pairs) * len(s.seeds)
    assert len(plan.nodes) == want
    # Every trained run keeps enough snapshots for its trajectory (claim d is measured in every study).
    assert "trajectory" in s.measurements


def test_a_variants_own_measurement_override_wins_for_that_variant_only() -> None:
    tiny = STUDIES[0].parent / "tiny.yaml"
    own = "study.variants=[{name: a, set: {train.batch_size: 32}, measure: {scan1d: {landscape.x: '-0.02:0.02:9'}}}, " \
          "{name: b, set: {train.batch_size: 256}}]"
    plan = plan_study(load_config(tiny, [own, "study.pairs=[]"]))
    x = {n.variant: n.cfg.landscape.x for n in plan.nodes if n.kind == "scan1d"}
    assert x == {"a": "-0.02:0.02:9", "b": "-1:1:5"}  # b keeps study.measure.scan1d's range
    assert {n.cfg.landscape.x for n in plan.nodes if n.kind == "scan2d"} == {"-1:1:5"}  # a's other scans too
    with pytest.raises(Exception, match=r"study.variants\[a\].measure.scan: unknown measurement"):
        load_config(tiny, [own.replace("scan1d", "scan"), "study.pairs=[]"])
