"""Task-grouped sampler: one group per optimiser step, deterministic, distributed split, resumable."""

from __future__ import annotations

import pytest

from vega3d.train.sampler import TASK_GROUPS, TaskGroupedSampler, task_group

TASKS = ["scanqa"] * 7 + ["sqa3d"] * 5 + ["scan2cap"] * 6 + ["scanrefer"] * 4 + ["multi3drefer"] * 3


def test_task_group_names() -> None:
    assert task_group("sqa3d") == "qa" and task_group("scanqa") == "qa"
    assert task_group("scan2cap") == "caption"
    assert task_group("multi3drefer") == "grounding"
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        task_group("nope")


def test_every_step_holds_one_group_and_covers_every_sample() -> None:
    sampler = TaskGroupedSampler(TASKS, micro_batch_size=2, accumulation_steps=2, world_size=1, seed=3)
    plan = sampler.plan(epoch=0)
    # qa 12 -> 3 steps of 4, caption 6 -> 2 (padded to 8), grounding 7 -> 2 (padded to 8)
    assert [len(indices) for _, indices in plan] == [4] * 7
    assert sorted(group for group, _ in plan) == ["caption"] * 2 + ["grounding"] * 2 + ["qa"] * 3
    for group, indices in plan:
        assert {task_group(TASKS[i]) for i in indices} == {group}
    seen = {i for _, indices in plan for i in indices}
    assert seen == set(range(len(TASKS)))
    assert sampler.steps_per_epoch() == 7 and len(sampler) == 28


def test_deterministic_by_seed_and_epoch() -> None:
    a = TaskGroupedSampler(TASKS, 2, 2, seed=3)
    b = TaskGroupedSampler(TASKS, 2, 2, seed=3)
    c = TaskGroupedSampler(TASKS, 2, 2, seed=4)
    assert a.plan(0) == b.plan(0)
    assert a.plan(0) != a.plan(1)
    assert a.plan(0) != c.plan(0)
    b.set_epoch(1)
    assert list(b) == [i for _, idx in a.plan(1) for i in idx]


def test_ranks_split_each_step_into_contiguous_micro_batches() -> None:
    """2 ranks x accumulation 1 see exactly the micro-batches of 1 rank x accumulation 2."""
    single = TaskGroupedSampler(TASKS, micro_batch_size=2, accumulation_steps=2, world_size=1, seed=0)
    ranks = [TaskGroupedSampler(TASKS, 2, 1, world_size=2, rank=r, seed=0) for r in range(2)]
    assert single.plan(0) == ranks[0].plan(0)  # same plan on every rank
    one = list(single)
    per_rank = [list(s) for s in ranks]
    for step in range(single.steps_per_epoch()):
        assert per_rank[0][2 * step : 2 * step + 2] == one[4 * step : 4 * step + 2]
        assert per_rank[1][2 * step : 2 * step + 2] == one[4 * step + 2 : 4 * step + 4]


def test_resume_position_skips_consumed_steps() -> None:
    sampler = TaskGroupedSampler(TASKS, 2, 2, seed=1)
    sampler.set_epoch(2)
    full = list(sampler)
    groups = sampler.step_groups()
    sampler.set_position(2, 3)
    assert list(sampler) == full[3 * 4 :]
    assert sampler.step_groups() == groups[3:]
    assert len(sampler) == (7 - 3) * 4
    with pytest.raises(ValueError, match="outside epoch"):
        sampler.set_position(0, 8)


def test_groups_cover_the_five_tasks() -> None:
    assert sorted(t for tasks in TASK_GROUPS.values() for t in tasks) == sorted(
        ["scanqa", "sqa3d", "scan2cap", "scanrefer", "multi3drefer"]
    )


def test_released_drop_last_leaves_out_each_groups_incomplete_step() -> None:
    """qa 12 -> 3 full steps of 4, caption 6 -> 1 (2 left out), grounding 7 -> 1 (3 left out): 5 steps."""
    sampler = TaskGroupedSampler(TASKS, micro_batch_size=2, accumulation_steps=2, seed=3, drop_last=True)
    plan = sampler.plan(epoch=0)
    assert sorted(group for group, _ in plan) == ["caption", "grounding", "qa", "qa", "qa"]
    assert sampler.steps_per_epoch() == 5 and len(sampler) == 20
    seen = [i for _, indices in plan for i in indices]
    assert len(seen) == len(set(seen)) == 20  # no sample twice, 5 of the 25 left out
    with pytest.raises(ValueError, match="fewer samples than one optimiser step"):
        TaskGroupedSampler(["scanqa"] * 3, 2, 2, drop_last=True)
