"""Frame sampling: videos, image folders and large images → ordered, preprocessed model images.

    from sampling import SamplingOptions, plan_inputs, iter_frames

    options = SamplingOptions(num_frames=64)
    plans = plan_inputs(["clip.mp4", "photos/"], options)   # no pixels: a dry run stops here
    for frame in iter_frames(plans, options):               # lazy, in prompt order
        frame.pixels                                        # float32 [3, 336, 336]

`plan_inputs` → list of `InputPlan` (kind "image" / "tiled" / "video" / "sequence", frames with
index and timestamp, tile `grid`, `skipped` files of a folder, `notices`). `iter_frames` →
`SampledFrame`s, exactly `plan.num_images` per plan. Bad media raises `InputError` with a one-line
message; what a plan leaves out is issued as warnings (`SamplingNotice`, and `DamagedMediaWarning`
for media used only as far as it decodes). Animated GIF, WebP and PNG are videos.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sampling.lazy import lazy_exports

# Public names and the module each lives in. They load on first use (PEP 562), so `import sampling`
# (e.g. for `sampling.errors`) costs nothing, and no video decoder loads before a file is read.
_EXPORTS = {
    "DamagedMediaWarning": "sampling.errors",
    "InputError": "sampling.errors",
    "SamplingNotice": "sampling.errors",
    "SampledFrame": "sampling.frames",
    "iter_frames": "sampling.frames",
    "DecodeStats": "sampling.gop",
    "MAX_FRAMES": "sampling.options",
    "SamplingOptions": "sampling.options",
    "InputPlan": "sampling.plan",
    "PlannedFrame": "sampling.plan",
    "SkippedInput": "sampling.plan",
    "plan_inputs": "sampling.plan",
    "CLIP_MEAN": "sampling.preprocess",
    "CLIP_STD": "sampling.preprocess",
    "PAD_COLOR": "sampling.preprocess",
    "preprocess_image": "sampling.preprocess",
    "VideoInfo": "sampling.video_info",
}

if TYPE_CHECKING:
    from sampling.errors import DamagedMediaWarning, InputError, SamplingNotice
    from sampling.frames import SampledFrame, iter_frames
    from sampling.gop import DecodeStats
    from sampling.options import MAX_FRAMES, SamplingOptions
    from sampling.plan import InputPlan, PlannedFrame, SkippedInput, plan_inputs
    from sampling.preprocess import CLIP_MEAN, CLIP_STD, PAD_COLOR, preprocess_image
    from sampling.video_info import VideoInfo


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "MAX_FRAMES",
    "PAD_COLOR",
    "DamagedMediaWarning",
    "DecodeStats",
    "InputError",
    "InputPlan",
    "PlannedFrame",
    "SampledFrame",
    "SamplingNotice",
    "SamplingOptions",
    "SkippedInput",
    "VideoInfo",
    "iter_frames",
    "plan_inputs",
    "preprocess_image",
]
