"""The task-grouped sampler: every optimiser step holds samples of ONE task group (SPEC.md section 2).

Groups: {scanqa, sqa3d} (QA), {scan2cap} (caption), {scanrefer, multi3drefer} (grounding). One optimiser step
consumes ``step_size = micro_batch x accumulation x world_size`` samples. Per epoch the plan is:

1. shuffle each group's indices with a generator seeded by (seed, epoch);
2. pad each group to a multiple of ``step_size`` by cycling its own shuffled indices (no sample is dropped,
   as in ``DistributedSampler``), and cut it into steps; with ``drop_last`` (the released recipe, SPEC.md
   Parity 11) each group's last incomplete step is dropped instead;
3. shuffle the order of all steps with the same generator.

Within a step, rank ``r`` takes the contiguous slice ``[r*b*a, (r+1)*b*a)``, i.e. micro-batches
``r*a .. r*a+a-1``; so 1 process with accumulation ``k*a`` sees exactly the same micro-batches as ``k``
processes with accumulation ``a`` and the averaged gradient is identical. The plan depends only on the
sample tasks, the sizes, the seed and the epoch, so every rank computes the same plan without communication.
``set_position(epoch, step)`` resumes in the middle of an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from vega3d.benchmarks import GROUNDING_TASKS

TASK_GROUPS: dict[str, tuple[str, ...]] = {
    "qa": ("scanqa", "sqa3d"),
    "caption": ("scan2cap",),
    "grounding": GROUNDING_TASKS,
}
_GROUP_OF_TASK = {task: group for group, tasks in TASK_GROUPS.items() for task in tasks}


def task_group(task: str) -> str:
    """Name of the group a task belongs to."""
    try:
        return _GROUP_OF_TASK[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known tasks: {sorted(_GROUP_OF_TASK)}") from None


class TaskGroupedSampler(Sampler[int]):
    """Yields this rank's dataset indices, one task group per optimiser step, deterministic by seed/epoch."""

    def __init__(
        self,
        tasks: Sequence[str],
        micro_batch_size: int,
        accumulation_steps: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if not tasks:
            raise ValueError("the training set is empty: no samples to sample from")
        self.groups = [task_group(t) for t in tasks]
        self.micro_batch_size = micro_batch_size
        self.accumulation_steps = accumulation_steps
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.start_step = 0
        if self.steps_per_epoch() == 0:
            raise ValueError(f"every task group has fewer samples than one optimiser step ({self.step_size}); "
                             "with train.last_step=drop nothing would be trained: use train.last_step=pad")

    @property
    def step_size(self) -> int:
        """Samples of one optimiser step over all ranks."""
        return self.micro_batch_size * self.accumulation_steps * self.world_size

    @property
    def rank_step_size(self) -> int:
        """Samples of one optimiser step on this rank."""
        return self.micro_batch_size * self.accumulation_steps

    def plan(self, epoch: int) -> list[tuple[str, list[int]]]:
        """(group, ``step_size`` global indices) for every optimiser step of ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        members: dict[str, list[int]] = {}
        for index, group in enumerate(self.groups):
            members.setdefault(group, []).append(index)
        steps: list[tuple[str, list[int]]] = []
        for group in TASK_GROUPS:
            if group not in members:
                continue
            order = np.asarray(members[group])[rng.permutation(len(members[group]))]
            num_steps = self._group_steps(len(order))
            padded = np.resize(order, num_steps * self.step_size)  # cycles the shuffled order
            steps.extend((group, padded[i * self.step_size : (i + 1) * self.step_size].tolist()) for i in range(num_steps))
        return [steps[i] for i in rng.permutation(len(steps))]

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch (the same for every epoch)."""
        counts: dict[str, int] = {}
        for group in self.groups:
            counts[group] = counts.get(group, 0) + 1
        return sum(self._group_steps(n) for n in counts.values())

    def _group_steps(self, samples: int) -> int:
        """Optimiser steps of a group of ``samples``: the last incomplete one padded, or dropped."""
        return samples // self.step_size if self.drop_last else -(-samples // self.step_size)

    def set_position(self, epoch: int, step: int = 0) -> None:
        """Start the next iteration at optimiser step ``step`` of ``epoch`` (resume)."""
        if not 0 <= step <= self.steps_per_epoch():
            raise ValueError(f"step {step} outside epoch of {self.steps_per_epoch()} steps")
        self.epoch, self.start_step = epoch, step

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first step."""
        self.set_position(epoch, 0)

    def step_groups(self) -> list[str]:
        """Group of each remaining step of the current position (what ``__iter__`` will yield)."""
        return [group for group, _ in self.plan(self.epoch)[self.start_step :]]

    def __iter__(self) -> Iterator[int]:
        lo = self.rank * self.rank_step_size
        for _, indices in self.plan(self.epoch)[self.start_step :]:
            yield from indices[lo : lo + self.rank_step_size]

    def __len__(self) -> int:
        return (self.steps_per_epoch() - self.start_step) * self.rank_step_size
