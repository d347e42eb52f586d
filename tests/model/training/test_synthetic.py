"""Synthetic data for the demo model: items are a function of their seed, and every answer is
true of the pixels (checked by colour, independently of how the generator chose it)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from model.training import synthetic


def _has(synthetic, image, color: str, min_pixels: int = 15) -> bool:
    pixels = np.asarray(image.convert("RGB"))
    return int((pixels == synthetic.COLORS[color]).all(-1).sum()) >= min_pixels


def _object_colors(synthetic, image) -> set[str]:
    return {c for c in synthetic.COLORS if _has(synthetic, image, c)}


def _images(item):
    out = []
    for visual in item.visuals:
        out += list(getattr(visual, "frames", None) or [visual.image])
    return out


@pytest.mark.parametrize("task", ["describe", "compare", "needle", "count", "order", "motion", "tile"])
def test_items_are_deterministic(task):
    a, b = synthetic.make_item(task, 3), synthetic.make_item(task, 3)
    assert (a.question, a.answer, a.info) == (b.question, b.answer, b.info)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(_images(a), _images(b), strict=True))
    others = [synthetic.make_item(task, s) for s in range(4, 12)]
    assert any(o.answer != a.answer or o.question != a.question for o in others)


def test_stream_is_deterministic():
    def first_ten():
        stream = synthetic.item_stream(["describe", "count"], 1)
        return [(item.task, item.answer) for item in itertools.islice(stream, 10)]

    first, again = first_ten(), first_ten()
    assert first == again and {t for t, _ in first} == {"describe", "count"}


@pytest.mark.parametrize("seed", range(8))
def test_describe_names_the_drawn_object(seed):
    item = synthetic.make_item("describe", seed)
    color, shape = item.answer.split()
    assert _object_colors(synthetic, item.visuals[0].image) == {color}
    assert shape in synthetic.SHAPES


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_needle_is_the_only_object_frame(seed, depth):
    item = synthetic.make_item("needle", seed, num_frames=20, depth=depth)
    frames = item.visuals[0].frames
    assert len(frames) == 20 and item.info["index"] == round(depth * 19)
    for f, frame in enumerate(frames):
        expected = {item.answer.split()[0]} if f == item.info["index"] else set()
        assert _object_colors(synthetic, frame) == expected


@pytest.mark.parametrize("seed", range(10))
def test_count_equals_frames_with_the_colour(seed):
    item = synthetic.make_item("count", seed, num_frames=12)
    color = item.question.split(" a ")[1].split()[0]
    assert int(item.answer) == sum(_has(synthetic, f, color) for f in item.visuals[0].frames)


@pytest.mark.parametrize("seed", range(10))
def test_order_answer_appears_first(seed):
    item = synthetic.make_item("order", seed, num_frames=10)
    names = item.question.removeprefix("Which appears first, the ").removesuffix("?").split(" or the ")
    assert item.answer in names
    other = next(n for n in names if n != item.answer)
    frames = item.visuals[0].frames
    first_answer = next(i for i, f in enumerate(frames) if _has(synthetic, f, item.answer.split()[0]))
    first_other = next(i for i, f in enumerate(frames) if _has(synthetic, f, other.split()[0]))
    assert first_answer < first_other


@pytest.mark.parametrize("seed", range(8))
def test_motion_direction_matches_the_centroid(seed):
    item = synthetic.make_item("motion", seed, num_frames=6)
    color = item.question.split(" the ")[1].split()[0]
    centroids = []
    for frame in (item.visuals[0].frames[0], item.visuals[0].frames[-1]):
        ys, xs = np.nonzero((np.asarray(frame) == synthetic.COLORS[color]).all(-1))
        centroids.append((xs.mean(), ys.mean()))
    (x0, y0), (x1, y1) = centroids
    moved = {"right": x1 - x0, "left": x0 - x1, "down": y1 - y0, "up": y0 - y1}
    assert max(moved, key=moved.get) == item.answer


@pytest.mark.parametrize("seed", range(8))
def test_compare_answers(seed):
    item = synthetic.make_item("compare", seed)
    images = [v.image for v in item.visuals]
    if item.answer in ("yes", "no"):
        assert len(images) == 2
        return
    k = int(item.answer.split()[1])
    color = item.question.split(" the ")[1].split()[0]
    assert _has(synthetic, images[k - 1], color)


@pytest.mark.parametrize("seed", range(8))
def test_tile_answer_holds_the_object(seed):
    item = synthetic.make_item("tile", seed)
    large = item.visuals[0]
    size = large.image.width // large.cols
    cell = synthetic.TILE_NAMES[(large.rows, large.cols)].index(item.answer)
    r, c = divmod(cell, large.cols)
    piece = large.image.crop((c * size, r * size, (c + 1) * size, (r + 1) * size))
    assert _has(synthetic, piece, item.question.split(" the ")[1].split()[0])


def test_template_text_covers_every_answer():
    text = set(synthetic.template_text())
    assert {f"{c} {s}" for c in synthetic.COLORS for s in synthetic.SHAPES} <= text


@pytest.mark.parametrize("seed", range(12))
def test_attribute_frame_labels_match_the_pixels(seed):
    import random

    image, labels = synthetic.attribute_frame(random.Random(seed))
    colors = _object_colors(synthetic, image)
    if labels["color"] == len(synthetic.COLORS):
        assert colors == set() and labels["shape"] == len(synthetic.SHAPES) and labels["column"] == -100
        return
    assert colors == {list(synthetic.COLORS)[labels["color"]]}
    pixels = np.argwhere((np.asarray(image) == synthetic.COLORS[list(synthetic.COLORS)[labels["color"]]]).all(-1))
    row, column = (pixels.mean(0) / image.size[0] * 3).astype(int).clip(0, 2)
    assert abs(int(row) - labels["row"]) <= 1 and abs(int(column) - labels["column"]) <= 1
