"""Decode-cost accounting: runs group wanted frames by keyframe, the floor matches brute force
and never exceeds seek-per-frame or a sequential pass."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sampling.gop import (
    count_floor_decodes,
    count_seek_decodes,
    count_sequential_decodes,
    keyframe_before,
    plan_decode_runs,
)


@st.composite
def videos(draw) -> tuple[list[int], list[int]]:
    """(sorted distinct wanted indices, sorted keyframes) over up to 2000 frames."""
    n = draw(st.integers(1, 2000))
    keyframes = sorted(draw(st.sets(st.integers(0, n - 1), max_size=50)))
    wanted = sorted(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=200)))
    return wanted, keyframes


def brute_force_floor(wanted: list[int], keyframes: list[int]) -> int:
    """Frames decoded when each frame decodes from its keyframe, counting shared frames once."""
    decoded: set[int] = set()
    for index in wanted:
        start = max([k for k in keyframes if k <= index], default=0)
        decoded.update(range(start, index + 1))
    return len(decoded)


@given(videos())
def test_runs_cover_each_wanted_frame_once_from_its_own_gop(case: tuple[list[int], list[int]]) -> None:
    wanted, keyframes = case
    runs = plan_decode_runs(wanted, keyframes)
    assert [i for run in runs for i in run.wanted] == wanted
    starts = [0, *keyframes]
    for run in runs:
        assert run.keyframe in starts
        next_keys = [k for k in keyframes if k > run.keyframe]
        assert run.last < (next_keys[0] if next_keys else 10**9)


@given(videos())
def test_floor_is_brute_force_and_cheapest(case: tuple[list[int], list[int]]) -> None:
    wanted, keyframes = case
    floor = count_floor_decodes(wanted, keyframes)
    assert floor == brute_force_floor(wanted, keyframes)
    assert floor <= count_seek_decodes(wanted, keyframes)
    assert floor <= count_sequential_decodes(wanted)


def test_stream_without_a_leading_keyframe_decodes_from_the_start() -> None:
    assert keyframe_before([3, 12], [10]).tolist() == [0, 10]
    assert keyframe_before([5], []).tolist() == [0]


def test_known_costs_for_a_gop_of_ten() -> None:
    keyframes = np.arange(0, 100, 10)
    wanted = [5, 7, 25, 99]
    assert count_floor_decodes(wanted, keyframes) == 8 + 6 + 10
    assert count_seek_decodes(wanted, keyframes) == 6 + 8 + 6 + 10
    assert count_sequential_decodes(wanted) == 100
