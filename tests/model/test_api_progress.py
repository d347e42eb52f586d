"""`ask`'s progress callback: the stages and counts a spinner shows, in order, on a real run of a
tiny random checkpoint over a generated video."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from model import load_model
from model.api import RunOptions, ask
from model.engine import GenerationOptions
from model.request import AskRequest
from model.testing import write_tiny_longllava
from sampling import SamplingOptions


def _video(path: Path, num_frames: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            pixels = np.full((32, 32, 3), (i * 29) % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_progress_follows_the_frames_then_the_questions(tmp_path):
    model = load_model(write_tiny_longllava(tmp_path / "tiny", seed=3))
    video = _video(tmp_path / "v.mp4", 20)
    seen: list[tuple[str, int, int]] = []
    request = AskRequest(
        inputs=[video],
        questions=["first?", "second?"],
        sampling=SamplingOptions(num_frames=12),
        generation=GenerationOptions(max_new_tokens=2),
        run=RunOptions(vision_batch_size=5),
    )
    result = ask(model, request, on_progress=lambda stage, done, total: seen.append((stage, done, total)))
    frames = len(result.inputs[0].frames)
    assert frames == 12
    assert seen == [("vision", i, 12) for i in range(1, 13)] + [("answer", 0, 2), ("answer", 1, 2)]


def test_several_questions_count_the_forked_state_in_the_memory_check(tmp_path, monkeypatch):
    """Each question but the last is answered from a fork of the shared state: the budget check
    counts the second copy, so a budget that one question fits can be too small for two."""
    from model.api import check_request_fits, plan_request
    from model.errors import MemoryBudgetError
    from model.memory import estimate_memory

    model = load_model(write_tiny_longllava(tmp_path / "tiny", seed=3))
    video = _video(tmp_path / "v.mp4", 8)
    generation, sampling = GenerationOptions(max_new_tokens=4), SamplingOptions(num_frames=8)
    request = plan_request(model, AskRequest(inputs=[video], questions=["a?", "b?"], sampling=sampling))
    tokens = request.num_tokens(generation.max_new_tokens)
    config = model.config
    common = dict(num_tokens=tokens, dtype="float32", mm_hidden_size=config.mm.mm_hidden_size, device="cpu")
    one = estimate_memory(config.lm, config.vision, **common).total
    two = estimate_memory(config.lm, config.vision, num_states=2, **common).total
    assert two > one
    run = RunOptions(memory_budget=(one + two) // 2, decode_workers=1)  # as estimated: no decoding window
    check_request_fits(model, tokens, run, num_questions=1)  # one question fits
    monkeypatch.setattr("model.api.iter_frames", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    with pytest.raises(MemoryBudgetError):
        ask(
            model, AskRequest(inputs=[video], questions=["a?", "b?"], sampling=sampling, generation=generation, run=run)
        )
