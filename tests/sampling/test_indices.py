"""Properties of the frame-selection math: sorted, distinct, in bounds, the requested length when
the video has enough frames, deterministic, and every timestamp is its frame's own."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sampling.indices import select_frame_indices, select_frames, select_window, spread_evenly, spread_evenly_in_time

counts = st.integers(min_value=1, max_value=5000)
wanted = st.integers(min_value=1, max_value=1024)


@st.composite
def timelines(draw) -> np.ndarray:
    """Presentation times of a video: constant or variable frame durations (1 ms to 2 s)."""
    n = draw(st.integers(min_value=1, max_value=3000))
    if draw(st.booleans()):
        return np.arange(n) / draw(st.sampled_from([23.976, 25.0, 30.0, 60.0]))
    durations = draw(st.lists(st.integers(1, 2000), min_size=n - 1, max_size=n - 1))
    return np.concatenate([[0.0], np.cumsum(durations) / 1000.0])


@given(counts, wanted)
def test_spread_evenly_is_sorted_distinct_in_bounds_and_complete(n: int, k: int) -> None:
    picked = spread_evenly(n, k)
    assert len(picked) == min(n, k)
    assert np.all(np.diff(picked) > 0)
    assert picked[0] == 0 and picked[-1] == (n - 1 if k > 1 else 0)


@given(timelines(), wanted)
def test_uniform_plan_takes_the_requested_number_of_real_frames(times: np.ndarray, k: int) -> None:
    picked = select_frame_indices(times, num_frames=k)
    assert len(picked) == min(k, len(times))
    assert np.all(np.diff(picked) > 0)
    assert picked[0] == 0 and picked[-1] == (len(times) - 1 if k > 1 else 0)  # both ends of the video
    assert np.array_equal(picked, select_frame_indices(times.copy(), num_frames=k))


@given(timelines(), st.floats(0.05, 50), st.integers(1, 1024))
def test_rate_plan_is_capped_sorted_and_spaced_by_the_rate(times: np.ndarray, fps: float, cap: int) -> None:
    picked = select_frame_indices(times, num_frames=1, fps=fps, max_frames=cap)
    assert 1 <= len(picked) <= cap
    assert np.all(np.diff(picked) > 0) and picked[-1] < len(times)
    span = times[-1] - times[0]
    if len(picked) < cap and int(span * fps) + 1 <= 16 * len(times):
        # Uncapped: one frame per tick at most, and never more frames than ticks.
        assert len(picked) <= int(np.floor(span * fps + 1e-9)) + 1


def test_rate_plan_on_constant_rate_takes_every_nth_frame() -> None:
    times = np.arange(250) / 25.0  # 10 s at 25 fps
    assert select_frame_indices(times, num_frames=1, fps=1.0, max_frames=1024).tolist() == list(range(0, 250, 25))
    assert len(select_frame_indices(times, num_frames=1, fps=1.0, max_frames=4)) == 4


def test_rate_plan_follows_real_timestamps_on_variable_rate() -> None:
    # 1 s of 10 fps, then 1 s of 100 fps: at 2 fps the picks are the frames shown at 0, .5, 1, 1.5 s.
    times = np.concatenate([np.arange(10) / 10, 1 + np.arange(100) / 100])
    picked = select_frame_indices(times, num_frames=1, fps=2.0, max_frames=100)
    assert times[picked].tolist() == [0.0, 0.5, 1.0, 1.5]


@given(timelines(), st.floats(0, 100), st.floats(0.001, 100), wanted)
def test_window_plans_stay_inside_start_and_end(times: np.ndarray, start: float, length: float, k: int) -> None:
    end = start + length
    picked = select_frame_indices(times, num_frames=k, start=start, end=end)
    if start > times[-1]:
        assert len(picked) == 0
        return
    assert len(picked) >= 1 and np.all(np.diff(picked) > 0)
    inside = times[picked]
    # Every pick lies in [start, end], or is the single frame on screen at `start`.
    if not (len(picked) == 1 and inside[0] < start):
        assert inside[0] >= start and inside[-1] <= end


@given(counts, wanted, st.sampled_from([(512, 12800), (1001, 30000), (40, 1000), (3003, 90000), (1, 25)]))
def test_spread_in_time_equals_spread_over_indices_on_constant_rate(n: int, k: int, rate: tuple[int, int]) -> None:
    # Timestamps as the probe makes them: integer pts times a float time base.
    step, time_base = rate
    times = (np.arange(n, dtype=np.int64) * step).astype(np.float64) * (1 / time_base)
    assert np.array_equal(spread_evenly_in_time(times, k), spread_evenly(n, k))


@settings(max_examples=40)
@given(timelines(), st.integers(2, 1024))
def test_spread_in_time_takes_the_nearest_frame_when_frames_are_denser_than_the_picks(
    times: np.ndarray, k: int
) -> None:
    k = min(k, len(times))
    gaps = np.diff(times)
    if k < 2 or gaps.max() >= (times[-1] - times[0]) / (k - 1):
        return  # the property needs every gap shorter than the spacing of the instants
    instants = np.linspace(times[0], times[-1], k)
    picked = spread_evenly_in_time(times, k)
    assert np.all(np.abs(times[picked] - instants) <= gaps.max() / 2 + 1e-9)


def test_frames_spread_evenly_in_time_on_a_video_whose_first_third_is_dense() -> None:
    # 10 s: the first 3.3 s at 60 fps (200 frames), the rest at 10 fps (67 frames).
    times = np.concatenate([np.arange(200) / 60, 200 / 60 + np.arange(1, 68) / 10])
    by_time = times[select_frame_indices(times, num_frames=9)]
    assert np.allclose(by_time, np.linspace(0, times[-1], 9), atol=0.05)
    by_index = times[spread_evenly(len(times), 9)]
    assert np.sum(by_index < times[-1] / 3) == 6  # what index spreading took from the first third
    assert np.sum(by_time < times[-1] / 3) == 3


def test_selection_reports_what_the_rate_cap_dropped() -> None:
    times = np.arange(250) / 25.0
    capped = select_frames(times, num_frames=1, fps=5.0, max_frames=10)
    assert (len(capped.indices), capped.num_at_rate, capped.num_in_window) == (10, 50, 250)
    assert select_frames(times, num_frames=8).num_at_rate is None


def test_window_between_two_frames_takes_the_frame_on_screen() -> None:
    times = np.array([0.0, 1.0, 2.0])
    assert select_window(times, 1.2, 1.5) == (1, 2)
    assert select_window(times, 5.0, None) == (3, 3)
    assert select_window(times, None, None) == (0, 3)
