"""From paths to plans: what will be fed to the model, decided before any pixel is decoded.

An `InputPlan` is one item of the prompt, of one of four kinds:
- "image":    one picture → 1 model image.
- "tiled":    one picture at high resolution → the global image, then `grid` = (rows, cols) tiles
              in raster order: 1 + rows·cols model images (the spatial layout of docs/format.md, Prompt).
- "video":    frames of one video, in time order, each with its index and timestamp.
- "sequence": the images of a folder, in natural file order, sampled like video frames (no
              timestamps): a folder of photos or extracted frames is one temporal sequence.
A folder gives one "sequence" for its images and one "video" per video file inside it (animated
GIF, WebP and PNG included), ordered by their first file. Files of a folder that cannot be used are
listed in `skipped` of the folder's first plan instead of failing the folder; a path named directly
must be good (InputError).

Nothing is left out silently: a plan's `notices` say, one line each, what it takes less of than
the input holds or how it changes it (128 of 300 images, a rate capped by `max_frames`, a damaged
video used up to where it decodes, a picture scaled to fit its tiles). `plan_inputs` issues each
as a warning naming the file: `DamagedMediaWarning` for damaged media, `SamplingNotice` otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sampling.discover import list_folder_files
from sampling.errors import DamagedMediaWarning, InputError, SamplingNotice, display_path
from sampling.images import read_image_size
from sampling.indices import select_frames, spread_evenly
from sampling.options import SamplingOptions
from sampling.preprocess import fit_tile_grid
from sampling.video_info import VideoInfo

PlanKind = Literal["image", "tiled", "video", "sequence"]
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PlannedFrame:
    """One picture to take: `index` is the frame's position in the video (presentation order) or
    the image's position among the folder's images; `timestamp` in seconds, None for images."""

    source: Path
    index: int
    timestamp: float | None


@dataclass(frozen=True)
class SkippedInput:
    """A file of a folder left out, with a one-line reason."""

    path: Path
    reason: str


@dataclass(frozen=True, eq=False)
class InputPlan:
    """One prompt item and the pictures it will yield (see the module docstring for `kind`).

    num_available: frames in the video / images in the folder before sampling (1 for images).
    size: (width, height) of the picture or video as shown (rotation applied); None for sequences.
    scaled_size: (width, height) a tiled picture is scaled to before cutting, when its native
    grid is over `max_tiles`; None when tiled at native resolution.
    notices: one line each (no path), what the plan leaves out or changes (module docstring).
    """

    kind: PlanKind
    source: Path
    frames: tuple[PlannedFrame, ...]
    num_available: int
    size: tuple[int, int] | None = None
    grid: tuple[int, int] | None = None
    video: VideoInfo | None = None
    skipped: tuple[SkippedInput, ...] = ()
    scaled_size: tuple[int, int] | None = None
    notices: tuple[str, ...] = ()

    @property
    def num_images(self) -> int:
        """Model images this plan yields (each costs the same number of visual tokens)."""
        if self.grid is not None:
            rows, cols = self.grid
            return 1 + rows * cols
        return len(self.frames)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description for dry runs (paths as printable text)."""
        return {
            "kind": self.kind,
            "source": display_path(self.source),
            "num_available": self.num_available,
            "num_images": self.num_images,
            "size": list(self.size) if self.size else None,
            "grid": list(self.grid) if self.grid else None,
            "scaled_size": list(self.scaled_size) if self.scaled_size else None,
            "frames": [
                {"source": display_path(f.source), "index": f.index, "timestamp": f.timestamp} for f in self.frames
            ],
            "skipped": [{"path": display_path(s.path), "reason": s.reason} for s in self.skipped],
            "notices": list(self.notices),
        }


def plan_inputs(paths: PathLike | Sequence[PathLike], options: SamplingOptions | None = None) -> list[InputPlan]:
    """Plans for each path in order: a file gives one plan, a folder one or more.

    Probes headers and video packet tables only; decodes one frame per video to prove it decodes
    (one GOP more for a damaged one). Each plan's notices are issued as warnings (`SamplingNotice`,
    `DamagedMediaWarning`), "path: notice". Raises InputError (one line, naming the path) for a
    missing path, a file that is not usable media, a window past a video's end, or a folder with
    nothing usable.
    """
    options = options or SamplingOptions()
    path_list = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not path_list:
        raise InputError("no input paths given; pass a video, an image or a folder")
    plans: list[InputPlan] = []
    for raw in path_list:
        path = Path(raw)
        if path.is_dir():
            plans.extend(plan_folder(path, options))
        elif path.is_file():
            plans.append(plan_file(path, options))
        else:
            raise InputError(f"{display_path(path)}: no such file or folder; check the path")
    for plan in plans:
        for text in plan.notices:
            warnings.warn(f"{display_path(plan.source)}: {text}", notice_category(plan, text), stacklevel=2)
    return plans


def notice_category(plan: InputPlan, text: str) -> type[SamplingNotice]:
    """DamagedMediaWarning for the damage a probe found, SamplingNotice for the rest."""
    return DamagedMediaWarning if plan.video is not None and text == plan.video.damage else SamplingNotice


def plan_file(path: Path, options: SamplingOptions) -> InputPlan:
    """The plan of one image or video file; tiles only apply to files named directly."""
    from sampling.sniff import describe_unusable, detect_media_kind  # PyAV loads with the first file read

    kind = detect_media_kind(path)
    if kind == "video":
        return plan_video(path, options)
    if kind == "image":
        return plan_image(path, options, tiles=options.tiles)
    raise InputError(f"{display_path(path)}: {describe_unusable(path)}")


def plan_video(path: Path, options: SamplingOptions) -> InputPlan:
    from sampling.probe import probe_video

    info = probe_video(path)
    selection = select_frames(
        info.timestamps,
        num_frames=options.num_frames,
        fps=options.fps,
        max_frames=options.max_frames,
        start=options.start,
        end=options.end,
    )
    indices = selection.indices
    if len(indices) == 0:
        raise InputError(
            f"{display_path(path)}: start {options.start} s is past the end of the video ({info.duration:.2f} s)"
        )
    notices = [info.damage] if info.damage else []
    if selection.num_at_rate is not None and selection.num_at_rate > len(indices):
        notices.append(
            f"{options.fps:g} frames per second would take {selection.num_at_rate} frames; capped at "
            f"{len(indices)} (the frame limit), spread evenly"
        )
    frames = tuple(PlannedFrame(path, int(i), float(info.timestamps[i])) for i in indices)
    size = (info.width, info.height)
    return InputPlan("video", path, frames, info.num_frames, size=size, video=info, notices=tuple(notices))


def plan_image(path: Path, options: SamplingOptions, *, tiles: bool) -> InputPlan:
    size = read_image_size(path)
    frames = (PlannedFrame(path, 0, None),)
    if not tiles:
        return InputPlan("image", path, frames, 1, size=size)
    tile = options.tile_side
    (rows, cols), scaled = fit_tile_grid(*size, tile, options.max_tiles)
    if scaled == size:
        return InputPlan("tiled", path, frames, 1, size=size, grid=(rows, cols))
    notice = (
        f"{size[0]}×{size[1]} scaled to {scaled[0]}×{scaled[1]} for {rows}×{cols} = {rows * cols} tiles of "
        f"{tile} px (at most {options.max_tiles} tiles)"
    )
    return InputPlan("tiled", path, frames, 1, size=size, grid=(rows, cols), scaled_size=scaled, notices=(notice,))


def plan_folder(folder: Path, options: SamplingOptions) -> list[InputPlan]:
    """A "sequence" plan for the folder's images and a "video" plan per video, in file order."""
    from sampling.sniff import describe_unusable, detect_media_kind

    files = list_folder_files(folder, recursive=options.recursive)
    images: list[Path] = []
    plans: list[tuple[int, InputPlan]] = []  # (position of first file, plan)
    first_image = -1
    skipped: list[SkippedInput] = []
    for position, path in enumerate(files):
        try:
            kind = detect_media_kind(path)
            if kind == "image":
                read_image_size(path)  # a bad header is caught here, at plan time
                first_image = position if first_image < 0 else first_image
                images.append(path)
            elif kind == "video":
                plans.append((position, plan_video(path, options)))
            else:
                skipped.append(SkippedInput(path, describe_unusable(path)))
        except InputError as e:
            skipped.append(SkippedInput(path, _strip_path(str(e), path)))
    if images:
        plans.append((first_image, _plan_sequence(folder, images, options)))
    if not plans:
        example = f" (e.g. {display_path(skipped[0].path)}: {skipped[0].reason})" if skipped else ""
        hint = "" if options.recursive else "; subfolders are read only when recursive"
        raise InputError(f"{display_path(folder)}: no readable image or video among {len(files)} files{example}{hint}")
    ordered = [plan for _, plan in sorted(plans, key=lambda item: item[0])]
    ordered[0] = dataclasses.replace(ordered[0], skipped=tuple(skipped))
    return ordered


def _plan_sequence(folder: Path, images: list[Path], options: SamplingOptions) -> InputPlan:
    """The folder's images as one sequence, `frame_budget` of them spread evenly over the list."""
    chosen = spread_evenly(len(images), options.frame_budget)
    frames = tuple(PlannedFrame(images[i], int(i), None) for i in chosen)
    notices = ()
    if len(chosen) < len(images):
        notices = (f"{len(chosen)} of {len(images)} images used, spread evenly (the frame limit is {len(chosen)})",)
    return InputPlan("sequence", folder, frames, len(images), notices=notices)


def _strip_path(message: str, path: Path) -> str:
    """An InputError message without its leading "path: " (the SkippedInput names the path)."""
    prefix = f"{display_path(path)}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
