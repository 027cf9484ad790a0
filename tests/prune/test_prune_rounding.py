"""`prune.round_to`: kept widths rounded down to a multiple, so at least the requested fraction goes (issue 12, item 10)."""

from __future__ import annotations

import re

import pytest
import torch

from effrep_hpc.cli import main
from effrep_hpc.models import count_flops_params, create_model
from effrep_hpc.prune import get_preset, num_keep, planned_cost, prune_by_ratios


@pytest.mark.parametrize("multiple", [2, 8, 16])
def test_rounded_counts_are_the_largest_multiple_that_removes_at_least_the_ratio(multiple: int) -> None:
    for width in range(1, 130):
        for ratio in [i / 20 for i in range(20)]:
            plain, got = num_keep(width, ratio), num_keep(width, ratio, multiple)
            if ratio == 0:
                assert got == width
            elif width <= multiple:
                assert got == plain, (width, ratio)  # one multiple or less: rounding could only keep everything
            elif plain >= multiple:
                assert got % multiple == 0 and got <= plain < got + multiple, (width, ratio)
                assert (width - got) / width >= ratio - 1e-12, (width, ratio)  # at least the fraction asked for
            else:
                assert got == multiple < width, (width, ratio)  # never below one multiple, never zero


def test_resnet56_a_rounded_to_8_removes_at_least_the_unrounded_flops() -> None:
    plain = planned_cost("resnet56", preset="resnet56-a")
    rounded = planned_cost("resnet56", preset="resnet56-a", multiple=8)
    assert plain["flops_reduction_pct"] == pytest.approx(10.4, abs=0.05)
    assert rounded["flops_reduction_pct"] >= plain["flops_reduction_pct"]
    assert rounded["params_reduction_pct"] >= plain["params_reduction_pct"]
    for key in ("stage_widths", "inner_widths"):
        for a, b in zip(rounded["widths_after"][key], plain["widths_after"][key], strict=True):
            assert a % 8 == 0 and a <= b, (key, a, b)
    assert rounded["widths_after"]["inner_widths"] != plain["widths_after"]["inner_widths"]
    # the count comes from the widths: rebuild the model and count again; and the real surgery gives those widths
    with torch.device("meta"):
        after = create_model("resnet56", **rounded["widths_after"])
    assert count_flops_params(after, (3, 32, 32))[0] == rounded["flops_after"]
    torch.manual_seed(0)
    pruned, _ = prune_by_ratios(create_model("resnet56"), get_preset("resnet56-a").ratios, multiple=8)
    assert pruned.arch["inner_widths"] == rounded["widths_after"]["inner_widths"]


def _expand(text: str) -> list[int]:
    """``16, 8 x3, 16`` -> [16, 8, 8, 8, 16]."""
    out: list[int] = []
    for part in text.split(","):
        value, _, times = part.strip().partition(" x")
        out += [int(value)] * int(times or 1)
    return out


def test_flops_command_prints_the_widths_it_counted(capsys: pytest.CaptureFixture) -> None:
    args = ["prune", "flops", "--model", "resnet56", "--preset", "resnet56-a", "--round-to", "8"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    import json

    widths = json.loads(capsys.readouterr().out)["widths_after"]
    line = next(line for line in text.splitlines() if "widths after" in line)
    assert "multiples of 8" in line
    inner = re.search(r"inner_widths ([0-9x, ]+)", line)
    stage = re.search(r"stage_widths ([0-9x, ]+);", line)
    assert inner and stage
    assert _expand(inner.group(1)) == widths["inner_widths"] and _expand(stage.group(1)) == widths["stage_widths"]
