"""The recipe's data is a function of (seed, step), and its stages progress."""

from __future__ import annotations

from model.training.stages import count_stage_items, items_for_step, stage_at


def test_steps_are_reproducible_and_stages_progress():
    a = items_for_step(0, 250, 1000, 4, 16)
    b = items_for_step(0, 250, 1000, 4, 16)
    assert [(i.task, i.question, i.answer) for i in a] == [(i.task, i.question, i.answer) for i in b]
    stages = [stage_at(s, 1000)[0] for s in (0, 149, 150, 299, 300, 999)]
    assert stages == ["I", "I", "II", "II", "III", "III"]
    assert {i.task for s in range(10) for i in items_for_step(0, s, 1000, 4, 16)} == {"describe"}


def test_count_stage_is_reproducible_grows_its_videos_and_has_its_own_seeds():
    batches = [count_stage_items(0, step, 400, 16, offset=1000) for step in range(0, 400, 20)]
    again = count_stage_items(0, 20, 400, 16, offset=1000)
    assert [(i.question, i.answer) for i in again] == [(i.question, i.answer) for i in batches[1]]
    longest = [max((i.info.get("num_frames", 0) for i in batch), default=0) for batch in batches]
    assert max(longest[:5]) <= 8 and max(longest[5:10]) <= 16 and max(longest[10:]) == 32
    assert min(longest[10:]) >= 8 and longest[10:].count(32) >= 4  # the second half dwells on 32 frames
    tasks = [i.task for batch in batches for i in batch]
    assert tasks.count("count") > len(tasks) / 2 and {"needle", "order", "describe"} <= set(tasks)
