"""The array backend: SLURM array task i of N computes a static contiguous block and writes its own shard.

Tasks of an array job run independently (maybe hours apart), so there is no communication:
``broadcast`` and ``barrier`` are local no-ops, every task is a writer, and the shards are merged
afterwards by ``store/``. The block of task i is :func:`block` ``(items, i, N)``: contiguous, in
order, sizes differing by at most one, so a grid scan's shard covers one band of rows.
"""

from __future__ import annotations

from typing import Mapping, Sequence, TypeVar

from effrep_hpc.dist import env as envmod
from effrep_hpc.dist.serial import SerialBackend

T = TypeVar("T")


def _check_task(index: int, count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"the number of tasks must be a positive integer, got {count!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"task index must be an integer in 0..{count - 1}, got {index!r}")


def block_bounds(total: int, index: int, count: int) -> tuple[int, int]:
    """[start, stop) of block ``index`` of ``count`` over ``total`` items (the first ``total % count`` get one more)."""
    _check_task(index, count)
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    base, extra = divmod(total, count)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def block(items: Sequence[T], index: int, count: int) -> list[T]:
    """Block ``index`` of ``count`` of ``items``: contiguous, in order; all blocks together are ``items``."""
    start, stop = block_bounds(len(items), index, count)
    return list(items[start:stop])


class ArrayBackend(SerialBackend):
    """SLURM array task ``rank`` of ``size``: owns a block of items (:meth:`owned`) and writes its own shard.

    Like the serial backend it talks to no one (``broadcast`` and ``barrier`` are local no-ops) and
    ``run`` computes the items it is given, in order.
    """

    kind = "array"

    def __init__(
        self,
        *,
        task_id: int | None = None,
        num_tasks: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if task_id is None or num_tasks is None:
            env_id, env_count = envmod.array_task(env)
            task_id = env_id if task_id is None else task_id
            num_tasks = env_count if num_tasks is None else num_tasks
        _check_task(task_id, num_tasks)
        self.rank = task_id
        self.size = num_tasks
        self.is_writer = True

    def bounds(self, total: int) -> tuple[int, int]:
        """[start, stop) of the items this task computes out of ``total``."""
        return block_bounds(total, self.rank, self.size)

    def owned(self, total: int) -> range:
        """This task's block of ``total`` items."""
        return range(*self.bounds(total))
