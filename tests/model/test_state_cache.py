"""The state cache end to end on a tiny random LongLLaVA checkpoint and media made here: a state
loaded from the cache continues exactly as a fresh run (the same last logits, bit for bit, and the
same greedy answer) for a video, an image folder and a tiled picture; the key follows content,
model, dtype, sampling, prompt layout and chunking; damaged files are misses with one warning."""

from __future__ import annotations

import os
import shutil
import struct
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from model import load_model
from model.api import RunOptions, _embed, ask, plan_request, prefill_shared
from model.errors import StateCacheWarning
from model.request import AskRequest, GenerationOptions
from model.shared_state import shared_state, state_key
from model.state_store import StateStore
from model.testing import write_tiny_longllava
from sampling import SamplingOptions


def write_video(path: Path, num_frames: int = 24, size: int = 32) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt, stream.options = "yuv420p", {"g": "8", "preset": "ultrafast"}
        for i in range(num_frames):
            rgb = np.zeros((size, size, 3), np.uint8)
            rgb[..., 0], rgb[: i + 1, :, 1] = (i * 37) % 256, 200
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_bmp(path: Path, seed: int, size: tuple[int, int] = (30, 20)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="BMP")
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny chunks on a shared 2-core machine: one thread avoids spinning against other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("state_cache")


@pytest.fixture(scope="module")
def model(root):
    return load_model(write_tiny_longllava(root / "tiny", seed=3))


@pytest.fixture(scope="module")
def media(root) -> dict[str, Path]:
    folder = root / "pictures"
    folder.mkdir()
    for i in range(5):
        write_bmp(folder / f"p{i}.bmp", seed=i)
    return {
        "video": write_video(root / "clip.mp4"),
        "folder": folder,
        "tiled": write_bmp(root / "big.bmp", seed=9, size=(80, 60)),
    }


SAMPLING = {"video": SamplingOptions(num_frames=9), "folder": SamplingOptions(), "tiled": SamplingOptions(tiles=True)}
GREEDY = GenerationOptions(max_new_tokens=6)


def request(path, kind="video", question="What happens?", *, cache=None, chunk=7, **sampling) -> AskRequest:
    options = SamplingOptions(**{**SAMPLING[kind].__dict__, **sampling})
    run = RunOptions(chunk_tokens=chunk, vision_batch_size=3, cache_dir=cache)
    return AskRequest(inputs=(str(path),), questions=(question,), sampling=options, generation=GREEDY, run=run)


def follow_up_logits(model, req, store):
    """(last logits of the first question after the shared state, "hit" | "miss" | "off")."""
    planned = plan_request(model, req)
    capacity = planned.num_tokens(req.generation.max_new_tokens)
    if store is False:
        shared, status = prefill_shared(model, planned, req.run, capacity=capacity), "fresh"
    else:
        shared, status = shared_state(model, planned, req.run, capacity=capacity, store=store)
    shared.prefill.push(_embed(model, planned.suffixes[0]))
    return shared.prefill.finish(), status


@pytest.mark.parametrize("kind", ["video", "folder", "tiled"])
@pytest.mark.parametrize("chunk", [7, 4096])
def test_cached_state_continues_exactly_as_a_fresh_run(model, media, tmp_path, kind, chunk):
    store = StateStore(tmp_path / "states")
    req = request(media[kind], kind, chunk=chunk)
    fresh, _ = follow_up_logits(model, req, False)
    missed, first = follow_up_logits(model, req, store)
    follow_up = request(media[kind], kind, "And then?", chunk=chunk)
    hit, second = follow_up_logits(model, follow_up, store)
    fresh_follow_up, _ = follow_up_logits(model, follow_up, False)
    assert (first, second) == ("miss", "hit")
    assert torch.equal(missed, fresh) and torch.equal(hit, fresh_follow_up)


def test_rows_pending_at_the_end_of_the_shared_part_are_saved_and_restored(model, media, tmp_path):
    """With <image> placing the inputs inside the question nothing follows the shared part, so its
    last chunk is still pending when it is saved: re-asking loads those rows and runs them as a
    fresh run would."""
    store = StateStore(tmp_path / "states")
    req = request(media["video"], question="In <image>, what happens?", chunk=7)
    planned = plan_request(model, req)
    shared, status = shared_state(model, planned, req.run, capacity=planned.num_tokens(6), store=store)
    assert status == "miss" and shared.prefill.filled > 0 and planned.suffixes == ((),)
    fresh, _ = follow_up_logits(model, req, False)
    hit, status = follow_up_logits(model, req, store)
    assert status == "hit" and torch.equal(hit, fresh)


@pytest.mark.parametrize("kind", ["video", "folder", "tiled"])
def test_ask_from_the_cache_answers_as_without_it(model, media, tmp_path, kind):
    cache = tmp_path / "states"
    reference = ask(model, request(media[kind], kind, "Who?"))
    missed = ask(model, request(media[kind], kind, "What?", cache=cache))
    hit = ask(model, request(media[kind], kind, "Who?", cache=cache))
    assert (reference.cache, missed.cache, hit.cache) == ("off", "miss", "hit")
    assert hit.answers == reference.answers and hit.inputs == reference.inputs
    assert hit.num_prompt_tokens == reference.num_prompt_tokens
    assert hit.timings["vision"] == 0 and hit.timings["decode"] == 0


def test_several_questions_share_one_loaded_state(model, media, tmp_path):
    cache, questions = tmp_path / "states", ("What?", "Where?", "Why?")
    ask(model, request(media["video"], question="Who?", cache=cache))
    reference = ask(model, AskRequest(**{**request(media["video"]).__dict__, "questions": questions}))
    cached = ask(model, AskRequest(**{**request(media["video"], cache=cache).__dict__, "questions": questions}))
    assert cached.cache == "hit" and cached.answers == reference.answers


# --- the key ------------------------------------------------------------------------------------


def key_of(model, req, folder):
    return state_key(model, plan_request(model, req), req.run, StateStore(folder))[0]


def test_the_key_follows_content_not_path(model, media, tmp_path):
    base = key_of(model, request(media["video"]), tmp_path)
    copy = shutil.copy(media["video"], tmp_path / "renamed.mp4")
    assert key_of(model, request(copy), tmp_path) == base
    assert key_of(model, request(media["video"], question="Something else entirely?"), tmp_path) == base
    write_video(tmp_path / "renamed.mp4", num_frames=24, size=32 + 16)
    assert key_of(model, request(copy), tmp_path) != base


def test_the_key_follows_sampling_layout_and_chunking(model, media, tmp_path):
    base = key_of(model, request(media["video"]), tmp_path)
    variants = [
        request(media["video"], num_frames=8),
        request(media["video"], question="Look: <image> what happens?"),
        request(media["video"], chunk=8),
        request(media["video"], backend="opencv"),
    ]
    keys = {key_of(model, r, tmp_path) for r in variants}
    assert base not in keys and len(keys) == len(variants)


def test_the_key_follows_the_model_and_its_arithmetic(model, media, root, tmp_path):
    base = key_of(model, request(media["video"]), tmp_path)
    other = load_model(write_tiny_longllava(tmp_path / "other", seed=4))
    same_weights_bf16 = load_model(root / "tiny", dtype="bfloat16")
    assert key_of(other, request(media["video"]), tmp_path) != base
    assert key_of(same_weights_bf16, request(media["video"]), tmp_path) != base
    # Weights rewritten in place with the same shapes (same headers, same sizes): still another model.
    copy = shutil.copytree(root / "tiny", tmp_path / "copy")
    retrained = load_model(copy)
    before = key_of(retrained, request(media["video"]), tmp_path)
    write_tiny_longllava(copy, seed=5)
    assert key_of(retrained, request(media["video"]), tmp_path) != before


def test_a_model_built_in_memory_is_not_cached(model, media, tmp_path):
    model.sources, sources = (), model.sources
    try:
        result = ask(model, request(media["video"], cache=tmp_path / "states"))
    finally:
        model.sources = sources
    assert result.cache == "off" and not (tmp_path / "states").exists()


def test_a_same_size_rewrite_with_the_mtime_restored_misses(model, media, tmp_path, monkeypatch):
    import model.content_hash as content_hash

    monkeypatch.setattr(content_hash, "RACY_SECONDS", 0.0)  # remember files written a moment ago
    folder = shutil.copytree(media["folder"], tmp_path / "pictures")
    cache = tmp_path / "states"
    assert ask(model, request(folder, "folder", cache=cache)).cache == "miss"
    assert ask(model, request(folder, "folder", cache=cache)).cache == "hit"
    picture = folder / "p2.bmp"
    memo = content_hash.ContentHashes(cache)
    assert content_hash.FileIdentity.of(picture).memo_key in memo.entries  # the shortcut is in play
    before = picture.stat()
    write_bmp(picture, seed=77)
    os.utime(picture, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = picture.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    changed = ask(model, request(folder, "folder", cache=cache))
    assert changed.cache == "miss"
    assert changed.answers == ask(model, request(folder, "folder")).answers


def test_a_state_read_from_a_file_that_changed_meanwhile_is_not_saved(model, media, tmp_path, monkeypatch):
    import model.shared_state as shared_state_module

    video = shutil.copy(media["video"], tmp_path / "growing.mp4")
    real = shared_state_module.prefill_shared

    def rewritten_while_read(*args, **kwargs):
        out = real(*args, **kwargs)
        write_video(Path(video), num_frames=30)  # the bytes hashed are no longer the bytes read
        return out

    monkeypatch.setattr(shared_state_module, "prefill_shared", rewritten_while_read)
    assert ask(model, request(video, cache=tmp_path / "states")).cache == "miss"
    assert not list((tmp_path / "states").glob("state-*"))


# --- damage -------------------------------------------------------------------------------------


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def zero_fill(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


def flip_a_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x55
    path.write_bytes(bytes(data))


def foreign_safetensors(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"layers.0.k": torch.zeros(2, 3)}, str(path))


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def huge_header(path: Path) -> None:
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")


def another_keys_state(path: Path, other: Path) -> None:
    shutil.copy(other, path)


@pytest.mark.parametrize(
    "damage", [truncate, zero_fill, flip_a_data_byte, foreign_safetensors, random_bytes, huge_header, "other key"]
)
def test_a_damaged_state_is_a_miss_with_one_warning(model, media, tmp_path, damage):
    cache = tmp_path / "states"
    reference = ask(model, request(media["video"]))
    ask(model, request(media["video"], cache=cache, num_frames=5))
    other = next(cache.glob("state-*.safetensors"))
    ask(model, request(media["video"], cache=cache))
    (path,) = set(cache.glob("state-*.safetensors")) - {other}
    if damage == "other key":
        another_keys_state(path, other)
    else:
        damage(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ask(model, request(media["video"], cache=cache))
    cache_warnings = [w for w in caught if issubclass(w.category, StateCacheWarning)]
    assert result.cache == "miss" and result.answers == reference.answers
    assert len(cache_warnings) == 1 and str(path) in str(cache_warnings[0].message)
    assert "\n" not in str(cache_warnings[0].message)
    assert ask(model, request(media["video"], cache=cache)).cache == "hit"  # saved again, whole


def test_the_state_file_is_plain_safetensors(model, media, tmp_path):
    from safetensors import safe_open

    cache = tmp_path / "states"
    req = request(media["video"], cache=cache)
    planned = plan_request(model, req)
    shared, _ = shared_state(model, planned, req.run, capacity=planned.num_tokens(6), store=StateStore(cache))
    (path,) = cache.glob("state-*.safetensors")
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["format"] == "longllava-state"
        layer = next(i for i, c in enumerate(shared.prefill.cache.layers) if hasattr(c, "k"))
        k = shared.prefill.cache.layers[layer].k[:, :, : shared.prefill.cache.length]
        assert torch.equal(f.get_tensor(f"layers.{layer}.k"), k)
        assert torch.equal(f.get_tensor("pending"), shared.prefill.buffer[0, : shared.prefill.filled])
