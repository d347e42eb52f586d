"""Decode cost of a frame selection: which keyframe each wanted frame is decoded from.

A compressed video can only be entered at a keyframe; a frame in the middle of a group of pictures
(GOP) costs every frame from the GOP's keyframe up to it. The cheapest plan (the floor) seeks to
the keyframe before the first wanted frame of each GOP, decodes forward to the last wanted frame of
that GOP and moves on. Seek-per-frame pays each frame's distance to its keyframe separately; a
sequential pass pays every frame up to the last wanted one (docs/format.md, Video decoding).

Indices are presentation-order frame positions; keyframes: sorted int positions of keyframes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodeRun:
    """Decode from `keyframe` forward until every frame of `wanted` (sorted, same GOP) is out."""

    keyframe: int
    wanted: tuple[int, ...]

    @property
    def last(self) -> int:
        return self.wanted[-1]

    @property
    def num_decoded(self) -> int:
        return self.last - self.keyframe + 1


@dataclass
class DecodeStats:
    """What a reader actually did, for benchmarks and tests (mutable, filled while iterating)."""

    num_decoded: int = 0
    num_seeks: int = 0


def keyframe_before(indices: Sequence[int] | np.ndarray, keyframes: Sequence[int] | np.ndarray) -> np.ndarray:
    """For each index, the last keyframe at or before it (0 when the stream opens without one,
    as a decoder must then start from the first frame anyway). Returns int64 [len(indices)]."""
    keys = np.asarray(keyframes, dtype=np.int64)
    if len(keys) == 0 or keys[0] != 0:
        keys = np.concatenate([[0], keys[keys > 0]])
    positions = np.searchsorted(keys, np.asarray(indices, dtype=np.int64), side="right") - 1
    return keys[positions]


def plan_decode_runs(wanted: Sequence[int] | np.ndarray, keyframes: Sequence[int] | np.ndarray) -> list[DecodeRun]:
    """Group sorted, distinct `wanted` indices by the keyframe they are decoded from."""
    wanted = np.asarray(wanted, dtype=np.int64)
    starts = keyframe_before(wanted, keyframes)
    runs: list[DecodeRun] = []
    for key in np.unique(starts):
        runs.append(DecodeRun(int(key), tuple(int(i) for i in wanted[starts == key])))
    return runs


def count_floor_decodes(wanted: Sequence[int] | np.ndarray, keyframes: Sequence[int] | np.ndarray) -> int:
    """Frames the floor decodes: per GOP, from its keyframe to its last wanted frame."""
    return sum(run.num_decoded for run in plan_decode_runs(wanted, keyframes))


def count_seek_decodes(wanted: Sequence[int] | np.ndarray, keyframes: Sequence[int] | np.ndarray) -> int:
    """Frames seek-per-frame decodes: each wanted frame's distance to its keyframe, plus one."""
    wanted = np.asarray(wanted, dtype=np.int64)
    return int(np.sum(wanted - keyframe_before(wanted, keyframes) + 1))


def count_sequential_decodes(wanted: Sequence[int] | np.ndarray) -> int:
    """Frames a single pass from the start decodes: everything up to the last wanted frame."""
    return int(wanted[-1]) + 1 if len(wanted) else 0
