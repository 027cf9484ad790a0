"""The static partition array tasks use: every item exactly once, contiguous, in order, balanced."""

from __future__ import annotations

import pytest

from effrep_hpc.dist import block, block_bounds


@pytest.mark.parametrize("total", [0, 1, 5, 7, 10, 50, 101])
@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_blocks_cover_items_once_in_order_and_balanced(total: int, count: int) -> None:
    items = [f"tile-{i}" for i in range(total)]
    blocks = [block(items, i, count) for i in range(count)]
    assert [x for b in blocks for x in b] == items
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    # the larger blocks come first, so task i's share is predictable from i alone
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("total,count", [(10, 3), (7, 7), (3, 5), (100, 8)])
def test_bounds_are_contiguous_and_match_block(total: int, count: int) -> None:
    bounds = [block_bounds(total, i, count) for i in range(count)]
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    for (_, stop), (start, _) in zip(bounds, bounds[1:]):
        assert stop == start
    items = list(range(total))
    for i, (start, stop) in enumerate(bounds):
        assert block(items, i, count) == items[start:stop]


def test_ten_items_over_three_tasks() -> None:
    assert [block(list(range(10)), i, 3) for i in range(3)] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize(
    "index,count,match",
    [(3, 3, r"0\.\.2"), (-1, 3, r"0\.\.2"), (0, 0, "positive"), (0, -2, "positive"), (1.0, 3, "integer")],
)
def test_bad_task_numbers_are_rejected(index: object, count: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        block(list(range(5)), index, count)  # type: ignore[arg-type]
