"""Each importance criterion on a tensor whose scores are known by hand."""

from __future__ import annotations

import math

import pytest
import torch

from effrep_hpc.prune.criteria import (
    ACTIVATION_CRITERIA,
    activation_scores,
    criterion_name,
    feature_map_stats,
    keep_top,
    stats_scores,
    weight_scores,
)

# Three filters of a 2-input, 1x2-kernel conv: |w| sums are 10, 3, 6 and squared sums 50, 5, 20.
WEIGHT = torch.tensor(
    [
        [[[3.0, -1.0]], [[0.0, 6.0]]],   # L1 10, L2 sqrt(46)
        [[[1.0, 1.0]], [[-1.0, 0.0]]],   # L1 3,  L2 sqrt(3)
        [[[0.0, 0.0]], [[-4.0, 2.0]]],   # L1 6,  L2 sqrt(20)
    ]
)


def test_l1_is_the_sum_of_absolute_kernel_weights() -> None:
    assert weight_scores(WEIGHT, "l1").tolist() == [10.0, 3.0, 6.0]


def test_l2_is_the_euclidean_norm_of_the_filter() -> None:
    got = weight_scores(WEIGHT, "l2")
    assert got.tolist() == pytest.approx([math.sqrt(46), math.sqrt(3), math.sqrt(20)])


def test_largest_ranks_the_biggest_filter_lowest_so_it_is_pruned_first() -> None:
    scores = weight_scores(WEIGHT, "largest")
    assert scores.tolist() == [-10.0, -3.0, -6.0]
    assert keep_top(scores, 2).tolist() == [1, 2]
    assert keep_top(weight_scores(WEIGHT, "l1"), 2).tolist() == [0, 2]


def test_greedy_in_keep_scores_only_the_kernels_of_surviving_inputs() -> None:
    # With input map 1 already removed only the first kernel counts: 4, 2, 0.
    assert weight_scores(WEIGHT, "l1", in_keep=torch.tensor([0])).tolist() == [4.0, 2.0, 0.0]


def test_random_is_seeded_uniform_and_ignores_the_weights() -> None:
    a = weight_scores(WEIGHT, "random", generator=torch.Generator().manual_seed(3))
    b = weight_scores(WEIGHT * 100, "random", generator=torch.Generator().manual_seed(3))
    c = weight_scores(WEIGHT, "random", generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a >= 0) & (a < 1)).all()


# Two images, two channels, 2x2 maps. Channel 0: image 1 = [1, 2, 3, 4], image 2 = [-2, -2, -2, -2].
# Channel 1: image 1 all 0, image 2 = [3, -3, 3, -3].
MAPS = torch.tensor(
    [
        [[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]],
        [[[-2.0, -2.0], [-2.0, -2.0]], [[3.0, -3.0], [3.0, -3.0]]],
    ]
)


def test_activation_statistics_match_hand_computed_values() -> None:
    # Per image: mean (2.5, -2 | 0, 0), population std (sqrt(1.25), 0 | 0, 3),
    # L1 (10, 8 | 0, 12), L2 (sqrt(30), 4 | 0, 6).
    expected = {
        "mean_mean": [(2.5 - 2) / 2, 0.0],
        "mean_std": [math.sqrt(1.25) / 2, 1.5],
        "mean_l1": [9.0, 6.0],
        "mean_l2": [(math.sqrt(30) + 4) / 2, 3.0],
        # population variance of the two L2 norms: (a - b)^2 / 4
        "var_l2": [(math.sqrt(30) - 4) ** 2 / 4, 9.0],
    }
    assert set(expected) == set(ACTIVATION_CRITERIA)
    for name, want in expected.items():
        assert activation_scores(MAPS, name).tolist() == pytest.approx(want, rel=1e-6), name


def test_statistics_gathered_in_batches_give_the_same_scores() -> None:
    parts = [feature_map_stats(MAPS[:1]), feature_map_stats(MAPS[1:])]
    joined = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    for name in ACTIVATION_CRITERIA:
        assert torch.allclose(stats_scores(joined, name), activation_scores(MAPS, name))


def test_criterion_names_accept_the_papers_spelling_and_reject_typos() -> None:
    assert criterion_name("Mean-Mean") == "mean_mean"
    assert criterion_name("largest-L1") == "largest"
    with pytest.raises(ValueError, match=r"unknown pruning criterion 'l3'.*did you mean"):
        criterion_name("l3")
    with pytest.raises(ValueError, match="feature maps"):
        weight_scores(WEIGHT, "mean_l1")


def test_keep_top_breaks_ties_towards_the_lower_index_and_checks_the_count() -> None:
    assert keep_top(torch.tensor([1.0, 2.0, 2.0, 0.5]), 2).tolist() == [1, 2]
    assert keep_top(torch.tensor([1.0, 1.0, 1.0]), 1).tolist() == [0]
    with pytest.raises(ValueError, match="between 1 and 3"):
        keep_top(torch.tensor([1.0, 1.0, 1.0]), 0)
