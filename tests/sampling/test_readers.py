"""The frames returned are the frames asked for, for every backend and strategy: each test video
shows its frame index as a block code, read back from the decoded pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sampling.errors import BackendError, InputError
from sampling.gop import DecodeStats, count_floor_decodes
from sampling.probe import probe_video
from sampling.readers import backend_order, read_video_frames
from sampling.video_decord import read_frames_decord
from sampling.video_opencv import choose_strategy, read_frames_opencv
from sampling.video_pyav import read_frames_pyav

SPARSE = [0, 9, 10, 11, 25, 47, 59]  # GOP edges, a run inside one GOP, the last frame
DENSE = list(range(0, 60, 2))


def decoded_codes(frames, code_of) -> list[tuple[int, int]]:
    return [(index, code_of(rgb)) for index, rgb in frames]


@pytest.mark.parametrize("wanted", [SPARSE, DENSE, [59], [0]])
def test_pyav_returns_the_wanted_frames_at_the_floor(cfr_video: Path, code_of, wanted: list[int]) -> None:
    info = probe_video(cfr_video)
    stats = DecodeStats()
    got = decoded_codes(read_frames_pyav(info, wanted, stats=stats), code_of)
    assert got == [(i, i) for i in wanted]
    assert stats.num_decoded == count_floor_decodes(wanted, info.keyframes)


@pytest.mark.parametrize("strategy", ["seek", "sequential"])
@pytest.mark.parametrize("wanted", [SPARSE, DENSE])
def test_opencv_returns_the_wanted_frames(cfr_video: Path, code_of, strategy: str, wanted: list[int]) -> None:
    info = probe_video(cfr_video)
    assert decoded_codes(read_frames_opencv(info, wanted, strategy=strategy), code_of) == [(i, i) for i in wanted]


def test_opencv_picks_seek_for_few_frames_and_a_pass_for_many(cfr_video: Path, vfr_video: Path) -> None:
    info = probe_video(cfr_video)
    assert choose_strategy(info, [55]) == "seek"
    assert choose_strategy(info, list(range(60))) == "sequential"
    assert choose_strategy(probe_video(vfr_video), [30]) == "sequential"


@pytest.mark.parametrize("wanted", [SPARSE, DENSE])
def test_decord_returns_the_wanted_frames(cfr_video: Path, code_of, wanted: list[int]) -> None:
    pytest.importorskip("decord")
    info = probe_video(cfr_video)
    assert decoded_codes(read_frames_decord(info, wanted, batch_size=4), code_of) == [(i, i) for i in wanted]


@pytest.mark.parametrize("backend", ["pyav", "decord", "opencv"])
def test_every_backend_through_the_dispatcher(cfr_video: Path, code_of, backend: str) -> None:
    info = probe_video(cfr_video)
    got = decoded_codes(read_video_frames(info, SPARSE, backend=backend), code_of)
    assert got == [(i, i) for i in SPARSE]


@pytest.mark.parametrize("backend", ["pyav", "decord", "opencv"])
def test_variable_rate_frames_are_exact(vfr_video: Path, code_of, backend: str) -> None:
    info = probe_video(vfr_video)
    wanted = [0, 1, 7, 20, 33, 39]
    assert decoded_codes(read_video_frames(info, wanted, backend=backend), code_of) == [(i, i) for i in wanted]


def test_b_frames_are_matched_by_timestamp(make_video, code_of) -> None:
    path = make_video("bframes.mp4", 50, options={"preset": "veryfast", "bf": "3"})
    info = probe_video(path)
    wanted = [1, 2, 13, 26, 49]
    assert decoded_codes(read_frames_pyav(info, wanted), code_of) == [(i, i) for i in wanted]


@pytest.mark.parametrize("backend", ["pyav", "opencv", "auto"])
def test_rotated_video_comes_out_upright(rotated_video: Path, code_of, backend: str) -> None:
    info = probe_video(rotated_video)
    frames = list(read_video_frames(info, [3, 11], backend=backend))
    assert [i for i, _ in frames] == [3, 11]
    for index, rgb in frames:
        assert rgb.shape == (64, 48, 3)
        # Stored landscape with a 90° counter-clockwise display rotation: undoing it reads the code,
        # and the green mark stored bottom-left is shown bottom-right, the top corners dark.
        assert code_of(np.rot90(rgb, -1)) == index
        assert rgb[-4, -4, 1] > 150 and rgb[-4, -4, 0] < 100
        assert rgb[2, 2].max() < 100 and rgb[2, -3].max() < 100


@pytest.mark.parametrize("backend", ["pyav", "decord", "opencv"])
def test_lying_frame_count_every_backend(lying_avi: Path, code_of, backend: str) -> None:
    info = probe_video(lying_avi)  # header says 500 frames, the file holds 20
    assert decoded_codes(read_video_frames(info, [0, 7, 19], backend=backend), code_of) == [(0, 0), (7, 7), (19, 19)]


def test_decord_is_not_trusted_with_a_count_it_gets_wrong(truncated_video: Path, code_of) -> None:
    pytest.importorskip("decord")
    info = probe_video(truncated_video)  # decord counts the cut, half-written last frame too
    with pytest.raises(BackendError, match="decord#373"):
        list(read_frames_decord(info, [0]))
    last = info.num_frames - 1
    assert decoded_codes(read_video_frames(info, [0, last], backend="auto"), code_of) == [(0, 0), (last, last)]
    # Named, decord is not swapped for another decoder behind the user's back.
    named = r"cut\.mp4: the decord backend cannot read this video \(.*decord#373.*use --backend auto"
    with pytest.raises(InputError, match=named):
        list(read_video_frames(info, [0, last], backend="decord"))


def test_a_named_backend_that_refuses_the_file_is_an_error(rotated_video: Path) -> None:
    pytest.importorskip("decord")
    info = probe_video(rotated_video)
    with pytest.raises(InputError) as caught:
        list(read_video_frames(info, [3], backend="decord"))
    message = str(caught.value)
    assert message.startswith(f"{rotated_video}: the decord backend cannot read this video (decord garbles rotated")
    assert message.endswith("; use --backend auto") and "\n" not in message


def test_truncated_video_yields_the_frames_it_has(truncated_video: Path, code_of) -> None:
    info = probe_video(truncated_video)
    last = info.num_frames - 1
    assert decoded_codes(read_video_frames(info, [0, last]), code_of) == [(0, 0), (last, last)]


def test_webm_vp9_and_mkv(make_video, code_of) -> None:
    for name, codec in (("a.webm", "libvpx-vp9"), ("a.mkv", "libx264")):
        info = probe_video(make_video(name, 30, codec=codec))
        assert decoded_codes(read_video_frames(info, [4, 17, 29]), code_of) == [(4, 4), (17, 17), (29, 29)]


def test_a_frame_no_backend_can_decode_is_an_input_error(cfr_video: Path) -> None:
    info = probe_video(cfr_video)
    cfr_video.write_bytes(b"\0" * 100)  # the file changed between plan and read
    with pytest.raises(InputError, match=r"cfr\.mp4: frame 0 cannot be decoded"):
        list(read_video_frames(info, [0, 5]))


def test_fallback_resumes_after_the_frames_already_delivered(cfr_video: Path, code_of, monkeypatch) -> None:
    import sampling.readers as readers

    def first_two_then_fail(info, indices, *, stats=None, threads=None):
        for index in indices[:2]:
            yield from read_frames_pyav(info, [index])
        raise BackendError("simulated failure")

    monkeypatch.setattr(readers, "read_frames_pyav", first_two_then_fail)
    info = probe_video(cfr_video)
    got = decoded_codes(read_video_frames(info, SPARSE), code_of)
    assert got == [(i, i) for i in SPARSE]


def test_backend_order() -> None:
    assert backend_order("auto") == ("pyav", "decord", "opencv")
    assert backend_order("opencv") == ("opencv",)  # named: that backend or an error, no fallback
