"""Frames from several decoding threads are the frames of one: same pixels, indices, timestamps and
order, for a video of many GOPs, a folder of images, a tiled picture and all of them at once; at
most the window ahead of a slow consumer; a decoding error raised at the same place, with the
same type and message; threads gone once the iterator is closed."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import sampling.frames as frames_module
from sampling import DecodeStats, InputError, SamplingOptions, iter_frames, plan_inputs
from sampling.parallel import Unit, decode_window, iter_ordered
from sampling.probe import probe_video
from sampling.segments import split_video

from .conftest import write_video

# 56 px from 64×48 frames and large pictures: the bicubic resize runs on every picture.
OPTIONS = SamplingOptions(num_frames=40, image_size=56, tiles=True, tile_size=96)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 200-frame H.264 video with a keyframe every 10 frames (20 GOPs), a folder of 9 pictures
    (PNG and JPEG) and a 400×300 picture cut into 4×4 tiles of 96."""
    root = tmp_path_factory.mktemp("parallel")
    rng = np.random.default_rng(0)
    folder = root / "folder"
    folder.mkdir()
    for i in range(9):
        pixels = rng.integers(0, 256, (40 + 7 * i, 90 - 5 * i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.{'png' if i % 2 else 'jpg'}")
    tiled = root / "large.png"
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(tiled)
    return {"video": write_video(root / "video.mp4", 200, gop=10), "folder": folder, "tiled": tiled}


def described(frames: list) -> list[tuple]:
    return [(f.source, f.kind, f.index, f.timestamp, f.tile) for f in frames]


def assert_same_frames(got: list, expected: list) -> None:
    assert described(got) == described(expected)
    assert all(torch.equal(a.pixels, b.pixels) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize("inputs", [["video"], ["folder"], ["tiled"], ["video", "folder", "tiled", "video"]])
def test_n_workers_give_the_frames_of_one(media: dict[str, Path], inputs: list[str]) -> None:
    plans = plan_inputs([media[name] for name in inputs], OPTIONS)
    one_stats, two_stats = DecodeStats(), DecodeStats()
    one = list(iter_frames(plans, OPTIONS, stats=one_stats))
    assert len(one) == sum(p.num_images for p in plans)
    assert_same_frames(list(iter_frames(plans, OPTIONS, stats=two_stats, workers=2)), one)
    assert_same_frames(list(iter_frames(plans, OPTIONS, workers=3, batch_size=1)), one)
    assert two_stats.num_decoded == one_stats.num_decoded  # each GOP entered once, as one decoder does


def test_a_video_is_cut_at_gop_boundaries(media: dict[str, Path]) -> None:
    info = probe_video(media["video"])
    segments = split_video(info, [0, 3, 9, 10, 25, 199], "auto")
    assert segments == [(0, 3, 9), (10,), (25,), (199,)]
    assert split_video(info, [0, 3, 9, 10], "decord") == [(0, 3, 9, 10)]  # only PyAV's reader is split


def test_a_slow_consumer_holds_at_most_the_window(media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"decoded": 0, "consumed": 0, "most": 0}
    lock = threading.Lock()
    read = frames_module.read_video_frames

    def counting_read(*args, **kwargs) -> Iterator[tuple[int, np.ndarray]]:
        for item in read(*args, **kwargs):
            with lock:
                counts["decoded"] += 1
                counts["most"] = max(counts["most"], counts["decoded"] - counts["consumed"])
            yield item

    monkeypatch.setattr(frames_module, "read_video_frames", counting_read)
    plans = plan_inputs(media["video"], OPTIONS)
    window = decode_window(4, 2)
    for _ in iter_frames(plans, OPTIONS, workers=2, batch_size=4):
        time.sleep(0.002)  # the model is slower than the decoders
        with lock:
            counts["consumed"] += 1
    assert counts["decoded"] == counts["consumed"] == 40
    # The workers ran ahead, but never past the window (plus the frame in the consumer's hands).
    assert 2 <= counts["most"] <= window + 1


@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_a_decoding_error_is_raised_at_the_same_place(tmp_path: Path, backend: str) -> None:
    video = write_video(tmp_path / "cut.mp4", 200, gop=10)
    options = SamplingOptions(num_frames=20, image_size=28, backend=backend)
    plans = plan_inputs(video, options)
    with av.open(str(video)) as container:  # frames 100..179 overwritten after planning
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(video.read_bytes())
    for position, size in packets[100:180]:
        data[position : position + size] = bytes(size)
    video.write_bytes(bytes(data))
    outcomes = []
    for workers in (1, 2):
        got: list = []
        with pytest.raises(InputError) as raised:
            got.extend(iter_frames(plans, options, workers=workers))
        message = re.sub(r"\[\d\d:\d\d:\d\d\] ", "", str(raised.value))  # decord's log times
        outcomes.append((described(got), type(raised.value), message))
    assert len(outcomes[0][0]) == 10 and outcomes[1] == outcomes[0]  # frames 0..99 of 200, then frame 105
    assert ("the pyav backend cannot read this video" if backend == "pyav" else "frame 105 cannot be") in message


def _unit(values: list[int], delays: dict[int, float], fail_at: int | None = None) -> Iterator:
    for value in values:
        time.sleep(delays.get(value, 0.0))
        if value == fail_at:
            raise ValueError(f"unit failed at {value}")
        yield partial(lambda v: v * 10, value)


def test_items_come_in_order_whatever_finishes_first() -> None:
    delays = {0: 0.03, 5: 0.02, 6: 0.0, 9: 0.01}  # early items are the slow ones
    units = [Unit(3, partial(_unit, [0, 1, 2], delays)), Unit(1, partial(_unit, [3], delays))]
    units += [Unit(2, partial(_unit, [4, 5], delays)), Unit(0, partial(_unit, [], delays))]
    units += [Unit(4, partial(_unit, [6, 7, 8, 9], delays))]
    assert list(iter_ordered(units, workers=3, window=2)) == [v * 10 for v in range(10)]


def test_an_error_comes_after_the_earlier_items_and_stops_the_threads() -> None:
    units = [Unit(2, partial(_unit, [0, 1], {0: 0.02})), Unit(3, partial(_unit, [2, 3, 4], {}, fail_at=3))]
    units += [Unit(2, partial(_unit, [5, 6], {}))]
    got: list[int] = []
    with pytest.raises(ValueError, match="unit failed at 3"):
        got.extend(iter_ordered(units, workers=2, window=4))
    assert got == [0, 10, 20]
    assert not [t for t in threading.enumerate() if t.name.startswith("longllava-decode")]


def test_closing_early_stops_the_threads_and_closes_the_units() -> None:
    closed: list[int] = []

    def endless(number: int) -> Iterator:
        try:
            for value in range(100):
                yield partial(int, value)
        finally:
            closed.append(number)

    items = iter_ordered([Unit(100, partial(endless, n)) for n in range(3)], workers=2, window=3)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    assert 0 in closed and not [t for t in threading.enumerate() if t.name.startswith("longllava-decode")]


def test_a_unit_is_closed_as_soon_as_its_last_item_is_made() -> None:
    # A video segment holds an open decoder until its generator ends: hundreds of GOPs must not
    # keep hundreds of decoders (and their buffers) alive until the last frame.
    closed: list[int] = []

    def two(number: int) -> Iterator:
        try:
            yield partial(int, 2 * number)
            yield partial(int, 2 * number + 1)
        finally:
            closed.append(number)

    items = iter_ordered([Unit(2, partial(two, n)) for n in range(5)], workers=2, window=2)
    assert [next(items), next(items)] == [0, 1] and 0 in closed
    assert list(items) == list(range(2, 10)) and sorted(closed) == list(range(5))
