"""Fixtures for the CLI tests: tiny media made at test time, a tiny random LongLLaVA checkpoint, a
CliRunner, and a fake library (`longllava_cli.backend.load_model` / `ask` replaced) that records
the requests the commands build. Nothing is downloaded."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from longllava_cli import backend
from model.request import AskRequest, ModelSpec

WIDTH, HEIGHT = 64, 48


def write_video(path: Path, num_frames: int = 30, *, fps: int = 25) -> Path:
    """A tiny H.264 clip whose frame i is a flat grey of level 8·i (distinct, codec-proof)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"g": "10", "preset": "ultrafast"}
        for i in range(num_frames):
            pixels = np.full((HEIGHT, WIDTH, 3), (8 * i) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_image(path: Path, size: tuple[int, int] = (WIDTH, HEIGHT), seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_broken(path: Path) -> Path:
    path.write_bytes(b"not a video at all " * 8)
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return write_image(tmp_path / "photo.png")


@pytest.fixture
def media_folder(tmp_path: Path) -> Path:
    """3 videos, 2 images, 2 broken media files and a text file (not an input)."""
    folder = tmp_path / "media"
    folder.mkdir()
    for i in (1, 2, 10):
        write_video(folder / f"v{i}.mp4", 12 + i)
    write_image(folder / "p1.png", seed=1)
    write_image(folder / "p2.jpg", seed=2)
    write_broken(folder / "bad1.mp4")
    write_broken(folder / "bad2.png")
    (folder / "notes.txt").write_text("not media\n")
    return folder


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """`make_video(name, num_frames=30)` → a tiny clip under tmp_path."""
    return lambda name, num_frames=30: write_video(tmp_path / name, num_frames)


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    """`make_image(name, size=(64, 48), seed=0)` → a random picture under tmp_path."""
    return lambda name, size=(WIDTH, HEIGHT), seed=0: write_image(tmp_path / name, size, seed)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LongLLaVA checkpoint (config.json, 2 safetensors shards, tokenizer)."""
    testing = pytest.importorskip("model.testing")
    if not hasattr(testing, "write_tiny_longllava"):
        pytest.skip("model.testing.write_tiny_longllava is not available yet")
    return testing.write_tiny_longllava(tmp_path_factory.mktemp("tiny") / "tiny-longllava")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user config, model or debug setting of the machine running the tests leaks in."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ("LONGLLAVA_CONFIG", "LONGLLAVA_MODEL", "LONGLLAVA_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    # `ask` saves states by default: into the test's folder, never the user's cache.
    monkeypatch.setenv("LONGLLAVA_CACHE_DIR", str(tmp_path / "states"))


# ---------------------------------------------------------------------------------------------
# The fake library
# ---------------------------------------------------------------------------------------------


@dataclass
class FakeLibrary:
    """Records `load_model` / `ask` calls; `ask` answers "answer to <question>" unless `fail`
    says otherwise for an input (an exception to raise) ."""

    loads: list[ModelSpec] = field(default_factory=list)
    requests: list[AskRequest] = field(default_factory=list)
    fail: Callable[[str], BaseException | None] = lambda path: None
    stream_pieces: tuple[str, ...] = ("ans", "wer")

    def load_model(self, request: ModelSpec) -> str:
        self.loads.append(request)
        return "the-model"

    def ask(
        self,
        model: Any,
        request: AskRequest,
        on_text: Callable[[int, str], None] | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
    ):
        from model.api import Answer, AskResult, FrameInfo, InputInfo

        assert model == "the-model"
        self.requests.append(request)
        for path in request.inputs:
            error = self.fail(path)
            if error is not None:
                raise error
        texts = []
        for number, question in enumerate(request.questions):
            if on_text is not None:
                for piece in self.stream_pieces:
                    on_text(number, piece)
            texts.append("".join(self.stream_pieces) if on_text else f"answer to {question}")
        frames = (FrameInfo("frame", 0, 0.0, None), FrameInfo("frame", 5, 0.2, None))
        inputs = tuple(InputInfo(p, "video", 30, 302, frames) for p in request.inputs)
        # `model` arrived in AskResult later; build the result with whichever fields it has.
        extra = {"model": "the-model"} if "model" in {f.name for f in dataclasses.fields(AskResult)} else {}
        return AskResult(
            **extra,
            answers=tuple(Answer(q, t, 3, "eos") for q, t in zip(request.questions, texts, strict=True)),
            inputs=inputs,
            num_prompt_tokens=320,
            num_visual_tokens=288,
            timings={"decode": 0.1, "vision": 0.2, "prefill": 0.3, "generate": 0.4, "total": 1.0},
            peak_memory_bytes=123,
        )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeLibrary:
    library = FakeLibrary()
    monkeypatch.setattr(backend, "load_model", library.load_model)
    monkeypatch.setattr(backend, "ask", library.ask)
    return library


# ---------------------------------------------------------------------------------------------
# The installed entry point
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def longllava_exe() -> str:
    """The installed console script: the one beside this Python (a version manager's shim on PATH
    would add its own start-up to every run), else the one on PATH."""
    beside = Path(sys.executable).with_name("longllava")
    exe = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which("longllava")
    if exe is None:
        pytest.skip("the `longllava` entry point is not installed (pip install -e .)")
    return exe


@pytest.fixture
def run_cli(longllava_exe: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the installed `longllava` in tmp_path; returns the completed process (text mode)."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 120):
        full_env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            "LONGLLAVA_CACHE_DIR": str(tmp_path / "states"),  # `ask` saves states: never into the user's cache
            "COLUMNS": "200",
            **(env or {}),
        }
        for name in ("LONGLLAVA_CONFIG", "LONGLLAVA_MODEL", "LONGLLAVA_DEBUG"):
            if name not in (env or {}):
                full_env.pop(name, None)
        return subprocess.run(
            [longllava_exe, *args],
            input=input,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=full_env,
            timeout=timeout,
        )

    return run
