"""Plans: kinds, frame choices, folders with bad files, tile caps, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sampling import InputError, SamplingOptions, plan_inputs
from sampling.errors import SamplingNotice


def test_video_plan_has_indices_and_timestamps(cfr_video: Path) -> None:
    (plan,) = plan_inputs(cfr_video, SamplingOptions(num_frames=5))
    assert plan.kind == "video" and plan.num_available == 60 and plan.num_images == 5
    assert [f.index for f in plan.frames] == [0, 15, 30, 44, 59]
    assert [f.timestamp for f in plan.frames] == pytest.approx([0, 0.6, 1.2, 1.76, 2.36])
    assert plan.size == (64, 48) and plan.grid is None


def test_rate_and_window(cfr_video: Path) -> None:
    # Ticks every 0.5 s from the window's first frame (0.52 s); each takes the frame on screen.
    (plan,) = plan_inputs(cfr_video, SamplingOptions(fps=2.0, start=0.5, end=2.0))
    assert [f.timestamp for f in plan.frames] == pytest.approx([0.52, 1.0, 1.52])


def test_start_past_the_end_names_the_file(cfr_video: Path) -> None:
    with pytest.raises(InputError, match=r"cfr\.mp4: start 9\.0 s is past the end of the video \(2\.40 s\)"):
        plan_inputs(cfr_video, SamplingOptions(start=9.0))


def test_short_video_gives_all_its_frames(make_video) -> None:
    (plan,) = plan_inputs(make_video("short.mp4", 3))
    assert [f.index for f in plan.frames] == [0, 1, 2]


def test_image_and_tiled_image(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    Image.new("RGB", (1000, 700)).save(path)
    (single,) = plan_inputs(path)
    assert (single.kind, single.num_images, single.size) == ("image", 1, (1000, 700))
    (tiled,) = plan_inputs(path, SamplingOptions(tiles=True))
    assert (tiled.kind, tiled.grid, tiled.num_images) == ("tiled", (3, 3), 10)


def test_over_the_tile_cap_the_picture_is_scaled_to_the_best_grid(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (4000, 400)).save(path)
    with pytest.warns(SamplingNotice) as caught:
        (plan,) = plan_inputs(path, SamplingOptions(tiles=True, max_tiles=10))
    # Natively 2×12 = 24 tiles; the widest strip of 10 tiles keeps the most pixels.
    assert (plan.grid, plan.scaled_size, plan.num_images, plan.size) == ((1, 10), (3360, 336), 11, (4000, 400))
    expected = "4000×400 scaled to 3360×336 for 1×10 = 10 tiles of 336 px (at most 10 tiles)"
    assert plan.notices == (expected,)
    assert [str(w.message) for w in caught] == [f"{path}: {expected}"]
    assert plan.to_dict()["scaled_size"] == [3360, 336] and plan.to_dict()["notices"] == [expected]


def test_huge_image_is_fitted_to_the_tile_cap_before_decoding(huge_png: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.warns(SamplingNotice, match=r"20000×20000 scaled to 3360×3360 for 10×10 = 100 tiles"):
        (plan,) = plan_inputs(huge_png, SamplingOptions(tiles=True))  # natively 60×60 = 3600 tiles
    assert plan.grid == (10, 10) and plan.num_images == 101


def test_notices_say_what_the_plan_leaves_out(tmp_path: Path, cfr_video: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(7):
        Image.new("RGB", (8, 8)).save(folder / f"{i}.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sequence, video = plan_inputs([folder, cfr_video], SamplingOptions(num_frames=3, fps=10.0, max_frames=5))
    assert sequence.notices == ("5 of 7 images used, spread evenly (the frame limit is 5)",)
    assert video.notices == ("10 frames per second would take 24 frames; capped at 5 (the frame limit), spread evenly",)
    assert [(w.category, str(w.message)) for w in caught] == [
        (SamplingNotice, f"{folder}: {sequence.notices[0]}"),
        (SamplingNotice, f"{cfr_video}: {video.notices[0]}"),
    ]
    assert all(w.filename == __file__ for w in caught)  # attributed to the caller of plan_inputs


def test_no_notice_when_nothing_is_left_out(tmp_path: Path, cfr_video: Path) -> None:
    (folder := tmp_path / "few").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    Image.new("RGB", (500, 400)).save(big := tmp_path / "big.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        plans = plan_inputs([folder, cfr_video, big], SamplingOptions(num_frames=100, tiles=True))
    assert [p.notices for p in plans] == [(), (), ()]
    assert plans[2].grid == (2, 2) and plans[2].scaled_size is None  # within max_tiles: native resolution


def test_missing_path_and_non_media(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.mp4: no such file or folder"):
        plan_inputs(tmp_path / "nope.mp4")
    fake = tmp_path / "movie.mp4"
    fake.write_text("just text")
    with pytest.raises(InputError, match=r"movie\.mp4: a text file, not an image or a video") as caught:
        plan_inputs(fake)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="no input paths"):
        plan_inputs([])


@pytest.fixture
def mixed_folder(tmp_path: Path, cfr_video: Path) -> Path:
    """Images of every format in natural order, a video, and files that are not usable media."""
    folder = tmp_path / "album"
    folder.mkdir()
    formats = ["jpg", "png", "webp", "gif", "bmp", "tiff", "png", "jpg", "png", "png", "png", "jpg"]
    for i, suffix in enumerate(formats, start=1):
        Image.new("RGB", (32, 24), (i * 20, 0, 0)).save(folder / f"img{i}.{suffix}")
    Image.new("CMYK", (32, 24)).save(folder / "img13.tiff")
    shutil.copy(cfr_video, folder / "img7b.mp4")
    (folder / "notes.txt").write_text("shopping list")
    (folder / "meta.json").write_text("{}")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "fake.mp4").write_text("text renamed .mp4")
    return folder


def test_folder_yields_the_good_files_and_reports_the_bad(mixed_folder: Path) -> None:
    plans = plan_inputs(mixed_folder, SamplingOptions(num_frames=4))
    assert [p.kind for p in plans] == ["sequence", "video"]
    sequence, video = plans
    assert sequence.num_available == 13
    assert [f.source.name for f in sequence.frames] == ["img1.jpg", "img5.bmp", "img9.png", "img13.tiff"]
    assert [f.index for f in sequence.frames] == [0, 4, 8, 12]
    assert video.source.name == "img7b.mp4" and video.num_images == 4
    skipped = {s.path.name: s.reason for s in sequence.skipped}
    assert sorted(skipped) == ["broken.jpg", "fake.mp4", "meta.json", "notes.txt"]
    assert all("\n" not in reason and reason for reason in skipped.values())
    assert video.skipped == ()
    json.dumps([p.to_dict() for p in plans])  # dry-run output is JSON-ready


def test_video_first_in_a_folder_carries_the_skipped_list(tmp_path: Path, cfr_video: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(cfr_video, folder / "a.mp4")
    (folder / "b.txt").write_text("x")
    Image.new("RGB", (8, 8)).save(folder / "c.png")
    plans = plan_inputs(folder)
    assert [p.kind for p in plans] == ["video", "sequence"]
    assert [s.path.name for s in plans[0].skipped] == ["b.txt"]


def test_folder_without_media_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match=r"no readable image or video among 1 files \(e\.g\. .*a\.txt"):
        plan_inputs(tmp_path)


def test_recursive_folder(tmp_path: Path) -> None:
    for name in ("day2/1.png", "day10/1.png", "day1/3.png", "day1/20.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with pytest.raises(InputError, match="among 0 files; subfolders are read only when recursive"):
        plan_inputs(tmp_path)
    (plan,) = plan_inputs(tmp_path, SamplingOptions(recursive=True))
    names = [f.source.relative_to(tmp_path).as_posix() for f in plan.frames]
    assert names == ["day1/3.png", "day1/20.png", "day2/1.png", "day10/1.png"]


def test_list_of_paths_keeps_order(cfr_video: Path, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    plans = plan_inputs([str(image), cfr_video, image])
    assert [p.kind for p in plans] == ["image", "video", "image"]


def test_non_utf8_names(non_utf8_dir: Path, cfr_video: Path) -> None:
    video = Path(os.fsdecode(os.fsencode(non_utf8_dir) + b"/clip\xff.mp4"))
    shutil.copy(cfr_video, video)
    Image.new("RGB", (8, 8)).save(Path(os.fsdecode(os.fsencode(non_utf8_dir) + b"/photo\xe9.png")))
    plans = plan_inputs(non_utf8_dir, SamplingOptions(num_frames=3))
    assert sorted(p.kind for p in plans) == ["sequence", "video"]
    printed = json.dumps([p.to_dict() for p in plans])
    assert "caf\\\\xe9" in printed and "clip\\\\xff.mp4" in printed
    (tmp := non_utf8_dir / "bad.mp4").write_text("x")
    with pytest.raises(InputError) as caught:
        plan_inputs(tmp)
    assert "caf\\xe9" in str(caught.value)
    str(caught.value).encode("utf-8")  # printable: no lone surrogates


def test_plans_are_deterministic(mixed_folder: Path) -> None:
    first = [p.to_dict() for p in plan_inputs(mixed_folder)]
    assert first == [p.to_dict() for p in plan_inputs(mixed_folder)]
    assert np.all(np.diff([f["index"] for f in first[0]["frames"]]) > 0)
