"""Broken and non-media files are told apart: each kind gets its own one-line message with a hint,
named directly or met in a folder."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from sampling import InputError, SamplingOptions, plan_inputs
from sampling.sniff import detect_media_kind

from .conftest import write_audio_only


@pytest.fixture
def broken_media(tmp_path: Path, moov_less_video: Path) -> dict[str, Path]:
    """One file of each kind that is not usable media, with the start of its expected message."""
    (empty := tmp_path / "empty.mp4").write_bytes(b"")
    (text := tmp_path / "notes.mp4").write_text("shopping list\nmilk\n")
    (binary := tmp_path / "blob.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    no_stream = tmp_path / "nothing.mp4"
    with av.open(str(no_stream), "w") as container:  # a recording stopped before its first frame
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return {
        "the file is empty (0 bytes)": empty,
        "damaged or incomplete video: its index (the MP4 'moov' atom) is missing": moov_less_video,
        "a text file, not an image or a video": text,
        "audio only, no video stream": write_audio_only(tmp_path / "song.m4a"),
        "has no video stream": no_stream,
        "not an image or a video (by content": binary,
    }


def test_each_kind_of_broken_file_has_its_own_message_and_hint(broken_media: dict[str, Path]) -> None:
    messages = []
    for start, path in broken_media.items():
        assert detect_media_kind(path) is None
        with pytest.raises(InputError) as caught:
            plan_inputs(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: {start}"), message
        assert "\n" not in message and ";" in message  # one line, and a hint after the semicolon
        messages.append(message.partition(": ")[2])
    assert len(set(messages)) == len(messages)


def test_in_a_folder_the_same_reasons_are_given_for_skipped_files(tmp_path: Path, broken_media) -> None:
    folder = tmp_path / "album"
    folder.mkdir()
    for number, path in enumerate(broken_media.values()):
        path.rename(folder / f"{number}_{path.name}")
    Image.new("RGB", (8, 8)).save(folder / "ok.png")
    (plan,) = plan_inputs(folder, SamplingOptions(num_frames=4))
    reasons = [s.reason for s in plan.skipped]
    assert [r.startswith(start) for r, start in zip(reasons, broken_media, strict=True)] == [True] * len(reasons)
