"""Media used honestly, as a user meets it through the installed `longllava`: a damaged video is used
as far as it decodes with one warning, broken files are told apart, animated pictures are videos,
nothing is dropped without a notice, large pictures are fitted to the tile cap, a very deep folder
is walked, FFmpeg's own lines stay off the terminal unless -vv, and a named backend is honoured.

The notices are matched without their prefix ("warning:" today, "note:" for SamplingNotice once
the CLI tells the two categories apart)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from model.demo import DEMO_MODEL_DIR

# A raw FFmpeg log line, as decord's and OpenCV's copies of FFmpeg print them: "[h264 @ 0x55...] ...".
RAW_FFMPEG_LINE = re.compile(r"\[[\w,]+ @ 0x[0-9a-f]+\]")


def write_clip(
    path: Path, num_frames: int = 60, *, rotation: int = 0, bframes: bool = False, faststart: bool = True
) -> Path:
    """A 64×48 H.264 clip at 25 fps, frame i a flat grey of level 4·i; faststart: its index first."""
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "10", **({"preset": "veryfast", "bf": "3"} if bframes else {"preset": "ultrafast"})}
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 4 * i, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def cut_in_packet(path: Path, number: int) -> Path:
    """Truncate in the middle of video packet `number`, as an interrupted copy would."""
    with av.open(str(path)) as container:
        packet = [p for p in container.demux(video=0) if p.size][number]
    path.write_bytes(path.read_bytes()[: packet.pos + packet.size // 2])
    return path


def write_audio(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture
def cut_video(tmp_path: Path) -> Path:
    """A clip with B-frames cut inside packet 35: before, "frame 33 cannot be decoded" and raw lines."""
    return cut_in_packet(write_clip(tmp_path / "cut.mp4", bframes=True), 35)


def deep_folder(root: Path, depth: int) -> list[Path]:
    """root/d/d/... `depth` levels (1-letter names stay under PATH_MAX), made level by level."""
    root.mkdir()
    folders = [root]
    for _ in range(depth):
        folders.append(folders[-1] / "d")
        os.mkdir(folders[-1])
    return folders[1:]


# What the probe finds decodable of `cut_video`, and says: checked exactly by tests/sampling.
DAMAGE = re.compile(r"only 1\.\d s of 2\.4 s decodable; sampling from that part")


def remove_deep(folders: list[Path]) -> None:
    for folder in reversed(folders):  # innermost first: rmtree would recurse once per level
        for entry in os.scandir(folder):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        os.rmdir(folder)


def stderr_lines(result) -> list[str]:
    return result.stderr.strip().splitlines()


def count_lines_ending(lines: list[str], text: str) -> int:
    return sum(line.endswith(text) for line in lines)


@pytest.fixture
def run_cli(run_cli):
    """The installed entry point with the demo model named (`frames` plans for a model; naming it
    keeps stderr to what these tests look at, without the demo model's note)."""
    return lambda *args, env=None: run_cli(*args, env={"LONGLLAVA_MODEL": str(DEMO_MODEL_DIR), **(env or {})})


def test_frames_uses_damaged_and_animated_media_and_says_what_it_leaves_out(run_cli, tmp_path: Path, cut_video):
    album = tmp_path / "album"
    album.mkdir()
    for i in range(5):
        Image.new("RGB", (32, 24), (40 * i, 0, 0)).save(album / f"p{i}.png")
    cut_video.rename(album / "cut.mp4")
    rec = write_clip(album / "rec.mp4", faststart=False)
    rec.write_bytes(rec.read_bytes()[:1000])  # recording interrupted: the index (moov) never written
    (album / "empty.mp4").write_bytes(b"")
    (album / "notes.txt").write_text("remember the milk\n")
    write_audio(album / "song.m4a")
    gif = [Image.new("RGB", (32, 24), (0, 20 * i, 0)) for i in range(12)]
    gif[0].save(album / "anim.gif", save_all=True, append_images=gif[1:], duration=40)
    photo = Image.new("RGB", (8000, 6000), (200, 30, 30))
    photo.save(tmp_path / "big.jpg", quality=80)
    del photo
    folders = deep_folder(tmp_path / "deep", 2000)
    Image.new("RGB", (8, 8)).save(folders[-1] / "bottom.png")
    try:
        result = run_cli(
            "frames", "album", "big.jpg", "deep", "--fps", "25", "--max-frames", "3", "--tiles", "--tile-size",
            "336", "--recursive", "--json", "--contact-sheet", "sheet.png",
        )  # fmt: skip
    finally:
        remove_deep(folders)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sheet.png").stat().st_size > 0  # every planned frame decoded, the cut video's included
    plans = {Path(p["source"]).name: p for p in json.loads(result.stdout)["inputs"]}
    assert {name: p["kind"] for name, p in plans.items()} == {
        "album": "sequence", "anim.gif": "video", "cut.mp4": "video", "big.jpg": "tiled", "deep": "sequence",
    }  # fmt: skip
    cap = "25 frames per second would take {} frames; capped at 3 (the frame limit), spread evenly"
    damage, capped = plans["cut.mp4"]["notices"]
    assert DAMAGE.fullmatch(damage) and capped == cap.format(plans["cut.mp4"]["num_available"])
    assert plans["anim.gif"]["notices"] == [cap.format(12)] and plans["anim.gif"]["num_available"] == 12
    assert plans["album"]["notices"] == ["3 of 5 images used, spread evenly (the frame limit is 3)"]
    fitted = "8000×6000 scaled to 3696×2772 for 9×11 = 99 tiles of 336 px (at most 100 tiles)"
    assert plans["big.jpg"]["notices"] == [fitted] and plans["big.jpg"]["grid"] == [9, 11]
    assert plans["deep"]["frames"][0]["source"].endswith("/d/bottom.png")
    lines = stderr_lines(result)
    for plan in plans.values():
        for notice in plan["notices"]:
            assert count_lines_ending(lines, f"{plan['source']}: {notice}") == 1, result.stderr
    reasons = {
        "rec.mp4": "damaged or incomplete video: its index (the MP4 'moov' atom) is missing",
        "empty.mp4": "the file is empty (0 bytes)",
        "notes.txt": "a text file, not an image or a video",
        "song.m4a": "audio only, no video stream",
    }
    skipped = {Path(s["path"]).name: s["reason"] for p in plans.values() for s in p["skipped"]}
    assert sorted(skipped) == sorted(reasons)
    for name, reason in reasons.items():
        assert skipped[name].startswith(reason) and "; " in skipped[name]  # its own message, and a hint
    assert not any(RAW_FFMPEG_LINE.search(line) or "DEBUG" in line for line in lines), result.stderr


def test_ffmpeg_lines_show_at_debug_only(run_cli, cut_video):
    # Without -vv there are none (checked with the album above); with it, they come through our logger.
    debug = run_cli("-vv", "frames", str(cut_video), "--frames", "60", "--contact-sheet", "sheet.png")
    assert debug.returncode == 0, debug.stderr
    routed = [line for line in stderr_lines(debug) if line.startswith("DEBUG sampling.ffmpeg: [")]
    assert any("corrupt" in line.lower() for line in routed), debug.stderr  # FFmpeg's own words
    assert not RAW_FFMPEG_LINE.search(debug.stderr)
    assert sum(DAMAGE.search(line) is not None for line in stderr_lines(debug)) == 1


def test_a_named_backend_is_honoured_or_fails_naming_it(run_cli, tmp_path: Path):
    phone = write_clip(tmp_path / "phone.mp4", 12, rotation=90)  # decord garbles rotated video: it refuses
    named = run_cli("frames", str(phone), "--backend", "decord", "--contact-sheet", "sheet.png")
    assert named.returncode == 1 and not (tmp_path / "sheet.png").exists()
    (line,) = stderr_lines(named)
    assert line.startswith(f"error: {phone}: the decord backend cannot read this video (")
    assert line.endswith("; use --backend auto")  # "auto" falls back: tests/sampling/test_readers.py


def test_a_video_without_its_index_is_one_line_with_a_hint(run_cli, tmp_path: Path):
    rec = write_clip(tmp_path / "rec.mp4", faststart=False)
    rec.write_bytes(rec.read_bytes()[:1500])
    result = run_cli("frames", str(rec))
    assert result.returncode == 1
    (line,) = stderr_lines(result)
    assert line.startswith(f"error: {rec}: damaged or incomplete video: its index (the MP4 'moov' atom) is missing")
    assert "repair tool" in line


def test_ask_on_a_cut_video_answers_and_reports_the_damage(run_cli, tiny_model, cut_video):
    result = run_cli("ask", str(cut_video), "What happens?", "--model", str(tiny_model), "--frames", "4",
                     "--max-new-tokens", "2", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (item,) = json.loads(result.stdout)["inputs"]
    (damage,) = item["notices"]
    assert DAMAGE.fullmatch(damage) and len(item["frames"]) == 4
    assert stderr_lines(result) == [f"warning: {cut_video}: {damage}"]
