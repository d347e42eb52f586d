"""Damaged videos are used as far as they decode, with one warning saying how far; the decode check
that finds out costs nothing on a sound file and one GOP on a cut one."""

from __future__ import annotations

import shutil
import struct
import warnings
from pathlib import Path

import av
import pytest

import sampling.probe as probe
from sampling import SamplingOptions, iter_frames, plan_inputs
from sampling.errors import DamagedMediaWarning
from sampling.probe import probe_video
from sampling.readers import read_video_frames


@pytest.fixture
def gop_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The GOPs the probe's decode check decodes, in order."""
    calls: list[int] = []
    original = probe._count_decoded_gop

    def spy(container, stream, info, starts, g):
        calls.append(g)
        return original(container, stream, info, starts, g)

    monkeypatch.setattr(probe, "_count_decoded_gop", spy)
    return calls


def test_a_sound_video_is_probed_without_decoding_beyond_its_first_frame(cfr_video: Path, gop_decodes) -> None:
    info = probe_video(cfr_video)
    assert info.damage is None and gop_decodes == []


def test_cut_video_keeps_its_decodable_part_and_says_so(truncated_video: Path, code_of, gop_decodes) -> None:
    info = probe_video(truncated_video)
    assert gop_decodes == [len(info.keyframes) - 1]  # the last GOP only
    assert info.damage == "only 0.8 s of 2.4 s decodable; sampling from that part"
    with pytest.warns(DamagedMediaWarning) as caught:
        (plan,) = plan_inputs(truncated_video, SamplingOptions(num_frames=60))
    assert [str(w.message) for w in caught] == [f"{truncated_video}: {info.damage}"]
    assert plan.notices == (info.damage,) and plan.to_dict()["notices"] == [info.damage]
    frames = list(iter_frames(plan, SamplingOptions(num_frames=60, image_size=64)))
    assert [f.index for f in frames] == list(range(info.num_frames)) == [f.index for f in plan.frames]


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_every_counted_frame_of_a_file_cut_inside_a_packet_decodes(
    cut_bframes_video: Path, code_of, backend: str
) -> None:
    # The frame-threaded decoder used to be fed the cut packet, and its error lost the frames still
    # in flight: "frame 33 cannot be decoded", then the fallbacks' raw FFmpeg lines.
    info = probe_video(cut_bframes_video)
    assert 30 <= info.num_frames < 60 and info.damage is not None and info.damage.startswith("only 1.")
    every = list(range(info.num_frames))
    got = [(index, code_of(rgb)) for index, rgb in read_video_frames(info, every, backend=backend)]
    shown = [round(float(t) * 25) for t in info.timestamps]  # frame i of the file shows code i
    assert got == list(zip(every, shown, strict=True))


def test_when_the_last_gop_yields_nothing_the_check_bisects(make_video, code_of, gop_decodes) -> None:
    path = make_video("broken_tail.mp4", 60, container_options={"movflags": "faststart"})
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for key in (packets[40], packets[50]):  # the last two keyframes: slice headers that cannot parse
        pos = key.pos
        while pos < key.pos + key.size:  # 4-byte length, NAL header (type 5: IDR slice), payload
            length = struct.unpack_from(">I", data, pos)[0]
            if data[pos + 4] & 0x1F == 5:
                data[pos + 5 : pos + 4 + length] = bytes(length - 1)
            pos += 4 + length
    cut = packets[55]
    path.write_bytes(bytes(data[: cut.pos + cut.size // 2]))
    info = probe_video(path)
    assert gop_decodes[:2] == [5, 2]  # the last GOP yields nothing: bisect over GOPs 0..5
    assert info.num_frames == 40 and info.keyframes.tolist() == [0, 10, 20, 30]
    assert info.damage == "only 1.6 s of 2.4 s decodable; sampling from that part"
    assert [code_of(rgb) for _, rgb in read_video_frames(info, [0, 39])] == [0, 39]


def test_a_damaged_video_in_a_folder_is_used_and_a_broken_one_skipped(
    tmp_path: Path, truncated_video: Path, moov_less_video: Path
) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(truncated_video, folder / "a_cut.mp4")
    shutil.copy(moov_less_video, folder / "b_rec.mp4")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (plan,) = plan_inputs(folder, SamplingOptions(num_frames=4))
    assert plan.source.name == "a_cut.mp4" and plan.num_images == 4
    assert [(w.category, str(w.message)) for w in caught] == [
        (DamagedMediaWarning, f"{folder / 'a_cut.mp4'}: only 0.8 s of 2.4 s decodable; sampling from that part")
    ]
    ((skipped_path, reason),) = [(s.path.name, s.reason) for s in plan.skipped]
    assert skipped_path == "b_rec.mp4" and reason.startswith("damaged or incomplete video")


def test_a_lying_header_is_reported_like_a_cut(lying_avi: Path) -> None:
    info = probe_video(lying_avi)  # the header claims 500 frames (20 s); 20 are there
    assert info.num_frames == 20 and info.damage == "only 0.8 s of 20.0 s decodable; sampling from that part"
