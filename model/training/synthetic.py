"""Seeded synthetic images, videos and questions for training and testing the demo model.

Everything is procedurally drawn with Pillow from a seed, so a seed names an item exactly and
test items can be drawn from seeds never used in training. Answers are short and exact
("red circle", "3", "top left", "yes").

Visual inputs, as the prompt layout knows them (sampling.prompt):
- `Picture`: one image (an ImageGroup);
- `Video`: frames in time order (a VideoGroup);
- `LargePicture`: an image `rows·tile` × `cols·tile` px that the pipeline cuts into tiles (a TiledGroup).

Tasks (`TASKS`): describe one image; compare several images; the needle frame of a video; count
the frames with a property; temporal order of two events; direction of motion; which tile of a
large image holds an object. `make_item(task, seed)` draws one; `item_stream` cycles tasks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (240, 215, 40),
    "purple": (160, 60, 210),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "cross")
# Dark, low-saturation backgrounds: far from every object colour.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "gray": (70, 70, 70),
    "brown": (75, 50, 35),
    "navy": (20, 25, 70),
}
TILE_NAMES = {(2, 2): ("top left", "top right", "bottom left", "bottom right")}
FRAME_SIZE = 56  # the demo model's CLIP image size; frames are drawn at it so nothing is resized


@dataclass(frozen=True)
class Obj:
    """One drawn object: shape, colour name, centre (x, y) in 0..1 of the frame, radius in 0..1."""

    shape: str
    color: str
    x: float = 0.5
    y: float = 0.5
    radius: float = 0.3

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Picture:
    image: Image.Image


@dataclass(frozen=True)
class Video:
    frames: tuple[Image.Image, ...]


@dataclass(frozen=True)
class LargePicture:
    image: Image.Image
    rows: int
    cols: int


Visual = Picture | Video | LargePicture


@dataclass(frozen=True)
class Item:
    """One question about visual inputs, with its exact answer. `info` keeps what the task chose
    (needle index, counts, ...) for analysis by depth or length."""

    task: str
    visuals: tuple[Visual, ...]
    question: str
    answer: str
    info: dict


def draw_frame(
    objects: Sequence[Obj], *, background: str = "black", size: int = FRAME_SIZE, rng: random.Random | None = None
) -> Image.Image:
    """A size² RGB frame: `background` with a little seeded speckle (so no two frames are equal),
    then `objects` in order."""
    image = Image.new("RGB", (size, size), BACKGROUNDS[background])
    draw = ImageDraw.Draw(image)
    if rng is not None:
        base = BACKGROUNDS[background]
        for _ in range(size // 4):
            x, y = rng.randrange(size), rng.randrange(size)
            shade = tuple(min(255, c + rng.randrange(10, 30)) for c in base)
            draw.rectangle([x, y, x + 1, y + 1], fill=shade)
    for obj in objects:
        _draw_object(draw, obj, size)
    return image


def _draw_object(draw: ImageDraw.ImageDraw, obj: Obj, size: int) -> None:
    cx, cy, r = obj.x * size, obj.y * size, obj.radius * size
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif obj.shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    elif obj.shape == "cross":
        w = r * 0.35
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def random_object(
    rng: random.Random, *, exclude: Sequence[str] = (), radius: tuple[float, float] = (0.22, 0.34)
) -> Obj:
    """A random object whose name is not in `exclude`, placed fully inside the frame."""
    while True:
        obj_radius = rng.uniform(*radius)
        margin = obj_radius + 0.04
        obj = Obj(
            rng.choice(SHAPES),
            rng.choice(list(COLORS)),
            rng.uniform(margin, 1 - margin),
            rng.uniform(margin, 1 - margin),
            obj_radius,
        )
        if obj.name not in exclude:
            return obj


def _background(rng: random.Random) -> str:
    return rng.choice(list(BACKGROUNDS))


def _empty_frames(rng: random.Random, num: int, size: int) -> list[Image.Image]:
    """Haystack frames: one background for the whole video, speckle differs per frame."""
    background = _background(rng)
    return [draw_frame([], background=background, size=size, rng=rng) for _ in range(num)]


# ---------------------------------------------------------------------------------------------
# Tasks. Each takes (rng, size, **options) and returns an Item.
# ---------------------------------------------------------------------------------------------


def describe(rng: random.Random, size: int = FRAME_SIZE) -> Item:
    obj = random_object(rng)
    image = draw_frame([obj], background=_background(rng), size=size, rng=rng)
    question = rng.choice(("What is in the image?", "Describe the image.", "What shape and colour do you see?"))
    return Item("describe", (Picture(image),), question, obj.name, {"object": obj.name})


def compare(rng: random.Random, size: int = FRAME_SIZE, num_images: int | None = None) -> Item:
    """Several images, one object each: which image shows a given object (answer "image k"); or,
    for two images, whether they show the same shape (colours always differ; answer yes/no)."""
    num = num_images or rng.randint(2, 4)
    if num == 2 and rng.random() < 0.5:
        a = random_object(rng)
        same = rng.random() < 0.5
        shape = a.shape if same else rng.choice([s for s in SHAPES if s != a.shape])
        color = rng.choice([c for c in COLORS if c != a.color])
        b = Obj(shape, color, *_place(rng))
        visuals = tuple(Picture(draw_frame([o], background=_background(rng), size=size, rng=rng)) for o in (a, b))
        return Item("compare", visuals, "Do the two images show the same shape?", "yes" if same else "no", {})
    objects: list[Obj] = []
    for _ in range(num):
        objects.append(random_object(rng, exclude=[o.name for o in objects]))
    visuals = tuple(Picture(draw_frame([o], background=_background(rng), size=size, rng=rng)) for o in objects)
    target = rng.randrange(num)
    question = f"Which image shows the {objects[target].name}?"
    return Item("compare", visuals, question, f"image {target + 1}", {"num_images": num})


def needle(
    rng: random.Random, size: int = FRAME_SIZE, num_frames: int | None = None, depth: float | None = None
) -> Item:
    """A video of empty frames with one object frame (the needle) at `depth` (0 first .. 1 last)."""
    num = num_frames or rng.randint(4, 64)
    depth = rng.random() if depth is None else depth
    index = round(depth * (num - 1))
    frames = _empty_frames(rng, num, size)
    obj = random_object(rng)
    frames[index] = draw_frame([obj], background=_background(rng), size=size, rng=rng)
    question = rng.choice(("Which object appears in the video?", "What shape and colour is shown in one frame?"))
    return Item("needle", (Video(tuple(frames)),), question, obj.name, {"num_frames": num, "index": index})


def count(rng: random.Random, size: int = FRAME_SIZE, num_frames: int | None = None, max_count: int = 6) -> Item:
    """How many frames show an object of a colour; other frames are empty or show other colours."""
    num = num_frames or rng.randint(4, 32)
    color = rng.choice(list(COLORS))
    k = rng.randint(0, min(max_count, num))
    hits = set(rng.sample(range(num), k))
    others = [c for c in COLORS if c != color]
    background = _background(rng)
    frames = []
    for f in range(num):
        if f in hits:
            objects = [Obj(rng.choice(SHAPES), color, *_place(rng))]
        elif rng.random() < 0.3:
            objects = [Obj(rng.choice(SHAPES), rng.choice(others), *_place(rng))]
        else:
            objects = []
        frames.append(draw_frame(objects, background=background, size=size, rng=rng))
    question = f"How many frames show a {color} shape?"
    return Item("count", (Video(tuple(frames)),), question, str(k), {"num_frames": num, "count": k})


def _place(rng: random.Random) -> tuple[float, float, float]:
    r = rng.uniform(0.22, 0.32)
    return rng.uniform(r + 0.04, 0.96 - r), rng.uniform(r + 0.04, 0.96 - r), r


def order(rng: random.Random, size: int = FRAME_SIZE, num_frames: int | None = None) -> Item:
    """Two objects of different colours appear in two different frames; which came first?"""
    num = num_frames or rng.randint(4, 32)
    first, second = sorted(rng.sample(range(num), 2))
    a = random_object(rng)
    b = random_object(rng, exclude=[f"{a.color} {shape}" for shape in SHAPES])  # colours differ
    frames = _empty_frames(rng, num, size)
    background = _background(rng)
    frames[first] = draw_frame([a], background=background, size=size, rng=rng)
    frames[second] = draw_frame([b], background=background, size=size, rng=rng)
    names = [a.name, b.name]
    rng.shuffle(names)
    question = f"Which appears first, the {names[0]} or the {names[1]}?"
    return Item("order", (Video(tuple(frames)),), question, a.name, {"num_frames": num, "frames": (first, second)})


def motion(rng: random.Random, size: int = FRAME_SIZE, num_frames: int | None = None) -> Item:
    """One object moving across every frame; which way does it move?"""
    num = num_frames or rng.randint(4, 16)
    obj = random_object(rng, radius=(0.16, 0.22))
    direction = rng.choice(("left", "right", "up", "down"))
    lo, hi = obj.radius + 0.04, 0.96 - obj.radius
    background = _background(rng)
    frames = []
    for f in range(num):
        t = f / (num - 1)
        pos = lo + (hi - lo) * (t if direction in ("right", "down") else 1 - t)
        x, y = (pos, obj.y) if direction in ("left", "right") else (obj.x, pos)
        frames.append(
            draw_frame([Obj(obj.shape, obj.color, x, y, obj.radius)], background=background, size=size, rng=rng)
        )
    question = f"Which way does the {obj.name} move?"
    return Item("motion", (Video(tuple(frames)),), question, direction, {"num_frames": num})


def tile(rng: random.Random, size: int = FRAME_SIZE, rows: int = 2, cols: int = 2) -> Item:
    """A large image of rows × cols tiles of `size` px; one tile holds the asked-for object, some
    others hold distractors."""
    target = random_object(rng)
    cell = rng.randrange(rows * cols)
    image = Image.new("RGB", (cols * size, rows * size), BACKGROUNDS[_background(rng)])
    for index in range(rows * cols):
        if index == cell:
            obj: Obj | None = target
        else:
            obj = random_object(rng, exclude=[target.name]) if rng.random() < 0.5 else None
        if obj is not None:
            r, c = divmod(index, cols)
            _draw_object(ImageDraw.Draw(image), Obj(obj.shape, obj.color, c + obj.x, r + obj.y, obj.radius), size)
    question = f"Where is the {target.name}?"
    return Item("tile", (LargePicture(image, rows, cols),), question, TILE_NAMES[(rows, cols)][cell], {"cell": cell})


def attribute_frame(rng: random.Random, size: int = FRAME_SIZE) -> tuple[Image.Image, dict[str, int]]:
    """A frame for vision pretraining and its labels: colour and shape index (len(COLORS) and
    len(SHAPES) for "no object"), and the object's column and row third (-100: none). Objects
    span every task's sizes (motion's small ones to describe's large ones); 15 % are empty."""
    background = _background(rng)
    if rng.random() < 0.15:
        labels = {"color": len(COLORS), "shape": len(SHAPES), "column": -100, "row": -100}
        return draw_frame([], background=background, size=size, rng=rng), labels
    obj = random_object(rng, radius=(0.16, 0.34))
    labels = {
        "color": list(COLORS).index(obj.color),
        "shape": SHAPES.index(obj.shape),
        "column": min(2, int(obj.x * 3)),
        "row": min(2, int(obj.y * 3)),
    }
    return draw_frame([obj], background=background, size=size, rng=rng), labels


TASKS: dict[str, Callable[..., Item]] = {
    "describe": describe,
    "compare": compare,
    "needle": needle,
    "count": count,
    "order": order,
    "motion": motion,
    "tile": tile,
}


def make_item(task: str, seed: int, **options) -> Item:
    """The item of `task` drawn from `seed` (same seed, same item); options as the task's."""
    return TASKS[task](random.Random(f"{task}:{seed}"), **options)


def item_stream(tasks: Sequence[str], seed: int, **options) -> Iterator[Item]:
    """Endless items, tasks in a seeded random order; item i uses seed `seed`·10⁹ + i."""
    rng = random.Random(seed)
    i = 0
    while True:
        yield make_item(rng.choice(list(tasks)), seed * 1_000_000_000 + i, **options)
        i += 1


def template_text() -> list[str]:
    """Every question and answer word the tasks can produce: the tokenizer's training corpus."""
    rng = random.Random(0)
    lines = []
    for task in TASKS:
        for seed in range(60):
            item = make_item(
                task, seed, **({"num_frames": 4} if task in ("needle", "count", "order", "motion") else {})
            )
            lines += [item.question, item.answer]
    names = [f"{c} {s}" for c in COLORS for s in SHAPES]
    lines += names + [str(k) for k in range(40)] + [f"image {k}" for k in range(1, 9)]
    rng.shuffle(lines)
    return lines
