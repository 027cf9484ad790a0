"""Greedy vs independent ranking on a hand-built net, and activation criteria on a known map."""

from __future__ import annotations

import pytest
import torch

from effrep_hpc.models import create_model
from effrep_hpc.prune import select_filters


def _two_layer_case() -> torch.nn.Module:
    """conv_1 has a strong filter 0 and a weak filter 1; conv_2's filter 0 is big only on input map 1.

    conv_2 filter sums of |w| per input map: filter 0 = (1, 10), filter 1 = (5, 0).
    Independent: filter 0 (11) beats filter 1 (5). Greedy, after conv_1 drops map 1: 1 vs 5.
    """
    model = create_model("digits_vgg", widths=[2, 2, 2, 2, 2, 2], hidden=4)
    with torch.no_grad():
        c1 = model.get_submodule("features.0").conv.weight  # (2, 1, 3, 3)
        c1.zero_()
        c1[0, 0, 0, 0] = 9.0
        c1[1, 0, 0, 0] = 0.5
        c2 = model.get_submodule("features.1").conv.weight  # (2, 2, 3, 3)
        c2.zero_()
        c2[0, 0, 1, 1], c2[0, 1, 1, 1] = 1.0, -10.0
        c2[1, 0, 1, 1] = 5.0
    return model


def test_independent_scores_all_kernels_greedy_skips_removed_maps() -> None:
    model = _two_layer_case()
    counts = {"features.0": 1, "features.1": 1}
    independent = select_filters(model, counts, strategy="independent")
    greedy = select_filters(model, counts, strategy="greedy")
    assert independent["features.0"].tolist() == greedy["features.0"].tolist() == [0]
    assert independent["features.1"].tolist() == [0]
    assert greedy["features.1"].tolist() == [1]


def test_greedy_equals_independent_when_earlier_layers_are_not_pruned() -> None:
    model = _two_layer_case()
    counts = {"features.1": 1}
    greedy = select_filters(model, counts, strategy="greedy")
    assert greedy["features.1"].tolist() == select_filters(model, counts)["features.1"].tolist() == [0]


def test_activation_criteria_prune_the_filter_whose_maps_are_zero() -> None:
    torch.manual_seed(0)
    model = create_model("digits_vgg").eval()
    with torch.no_grad():
        model.get_submodule("features.3").conv.weight[5].zero_()  # map 5 of conv_3 is all zeros
    images = torch.randn(16, 1, 8, 8)
    for criterion in ("mean_l1", "mean_l2", "mean_std", "var_l2"):
        keep = select_filters(model, {"features.3": 31}, criterion=criterion, images=images)
        assert 5 not in keep["features.3"].tolist() and len(keep["features.3"]) == 31, criterion
    with pytest.raises(ValueError, match="needs sample images"):
        select_filters(model, {"features.3": 31}, criterion="mean_l1")


def test_greedy_activation_ranking_measures_maps_after_earlier_cuts() -> None:
    # conv_2 reads only conv_1's map 1 through a positive kernel. Once greedy removes map 1 from
    # conv_1, all of conv_2's maps are zero, so its ranking falls back to the lowest indices.
    model = create_model("digits_vgg", widths=[2, 3, 2, 2, 2, 2], hidden=4).eval()
    with torch.no_grad():
        c1 = model.get_submodule("features.0").conv.weight
        c1.zero_()
        c1[0, 0, 1, 1], c1[1, 0, 1, 1] = 2.0, 1.0
        c2 = model.get_submodule("features.1").conv.weight
        c2.zero_()
        c2[2, 1, 1, 1] = 3.0  # filter 2 is the only one that responds, and only to map 1
    images = torch.rand(8, 1, 8, 8) + 0.5
    counts = {"features.0": 1, "features.1": 1}
    assert select_filters(model, counts, criterion="mean_l1", images=images)["features.1"].tolist() == [2]
    greedy = select_filters(model, counts, criterion="mean_l1", strategy="greedy", images=images)
    assert greedy["features.0"].tolist() == [0] and greedy["features.1"].tolist() == [0]
