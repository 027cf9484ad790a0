"""The paper's pruned models: FLOP and parameter reductions as published, names and model checks."""

from __future__ import annotations

import json

import pytest

from effrep_hpc.cli import main
from effrep_hpc.prune import get_preset, planned_cost, preset_for_model

# Li et al., ICLR 2017, Table 2: (FLOP reduction %, parameter reduction %). ResNet-34's totals leave out
# the projection shortcuts, the convention under which the published baseline totals match.
PAPER = {
    "vgg16-a": (34.2, 64.0),
    "resnet56-a": (10.4, 9.4),
    "resnet56-b": (27.6, 13.7),
    "resnet110-a": (15.9, 2.3),
    "resnet110-b": (38.6, 32.4),
    "resnet34-a": (15.5, 7.6),
    "resnet34-b": (24.2, 10.8),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_preset_reductions_match_the_paper_within_0_2_points(name: str) -> None:
    preset = get_preset(name)
    report = planned_cost(preset.model, preset=name)
    flops, params = PAPER[name]
    assert report["flops_reduction_pct"] == pytest.approx(flops, abs=0.2)
    assert report["params_reduction_pct"] == pytest.approx(params, abs=0.2)


def test_resnet_presets_prune_first_convs_per_stage_and_skip_the_sensitive_layers() -> None:
    b = get_preset("resnet56-b").ratios
    assert all(lid % 2 == 0 for lid in b)  # first convs only: block k's first conv is layer 2k
    assert not {16, 18, 20, 34, 38, 54} & set(b)
    assert (b[2], b[22], b[40]) == (0.6, 0.3, 0.1)  # one ratio per stage
    assert len(b) == 27 - 6
    assert set(get_preset("resnet110-a").ratios) == set(range(2, 37, 2)) - {36}
    assert set(get_preset("vgg16-a").ratios) == {1, 8, 9, 10, 11, 12, 13}
    assert not set(get_preset("resnet34-b").ratios) & {2, 8, 14, 16, 26, 28, 30, 32}
    assert max(get_preset("resnet34-b").ratios) <= 26  # stage 4 (layers 28-33) is left alone


def test_presets_accept_the_papers_spelling_and_name_close_ones() -> None:
    assert get_preset("VGG-16-A").name == "vgg16-a"
    assert get_preset("ResNet-110-B").name == "resnet110-b"
    with pytest.raises(ValueError, match=r"unknown pruning preset 'resnet58-b'.*did you mean 'resnet56-b'"):
        get_preset("resnet58-b")
    with pytest.raises(ValueError, match=r"defined for model 'resnet56', not 'resnet110'.*resnet110-a, resnet110-b"):
        preset_for_model("resnet56-b", "resnet110")


def test_flops_command_prints_json_before_after_and_reductions(capsys: pytest.CaptureFixture) -> None:
    assert main(["prune", "flops", "--model", "resnet56", "--preset", "resnet56-b", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flops_before"] == 125_485_696 and report["params_before"] == 853_018
    assert report["flops_after"] < report["flops_before"] and report["params_after"] < report["params_before"]
    assert report["flops_reduction_pct"] == pytest.approx(100 * (1 - report["flops_after"] / report["flops_before"]))
    assert report["flops_reduction_pct"] == pytest.approx(27.6, abs=0.2)
    assert report["widths_after"]["inner_widths"][0] == 6  # 60% of 16 filters removed


def test_flops_command_reports_an_unknown_preset_as_a_user_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["prune", "flops", "--model", "vgg16", "--preset", "vgg16-z", "--json"]) == 2
    err = capsys.readouterr().err
    assert "unknown pruning preset 'vgg16-z'" in err and "vgg16-a" in err
    assert main(["prune", "flops", "--model", "vgg16", "--ratio", "3=1.0"]) == 2
    assert "[0, 1)" in capsys.readouterr().err
