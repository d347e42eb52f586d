"""SamplingOptions refuses impossible settings on creation, with a message naming the field."""

from __future__ import annotations

import pytest

from sampling.options import MAX_FRAMES, SamplingOptions


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": MAX_FRAMES + 1}, "num_frames"),
        ({"max_frames": 0}, "max_frames"),
        ({"fps": 0.0}, "fps"),
        ({"start": -1.0}, "start"),
        ({"start": 5.0, "end": 5.0}, "start"),
        ({"image_size": 0}, "image_size"),
        ({"tile_size": 0}, "tile_size"),
        ({"max_tiles": 0}, "max_tiles"),
        ({"backend": "ffmpeg"}, "backend"),
        ({"fps": float("inf")}, "fps must be finite"),
        ({"fps": float("nan")}, "fps must be finite"),
        ({"start": float("inf")}, "start must be finite"),
        ({"end": float("nan")}, "end must be finite"),
        ({"start": 1.0, "end": float("inf")}, "end must be finite"),
    ],
)
def test_invalid_options_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**kwargs)


def test_derived_values() -> None:
    assert SamplingOptions().tile_side == 336
    assert SamplingOptions(image_size=224).tile_side == 224
    assert SamplingOptions(tile_size=448).tile_side == 448
    assert SamplingOptions(num_frames=64).frame_budget == 64
    assert SamplingOptions(fps=1.0, max_frames=300).frame_budget == 300
    assert SamplingOptions(num_frames=500, max_frames=100).frame_budget == 100
