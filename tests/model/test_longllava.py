"""The whole LongLLaVA model on tiny random checkpoints: end-to-end logits against a reference
built from transformers modules, the splice of image features into the prompt, and `load_model`
on every kind of directory (complete, text-only, CLIP elsewhere, broken)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as HFTokenizer

from model import CheckpointError, ContextTooLongError, LongLLaVA, load_language_model, load_model
from model.naming import to_native
from model.testing import TINY_CLIP_CONFIG, write_tiny_clip, write_tiny_longllava, write_tiny_tokenizer
from sampling.prompt import (
    ImageGroup,
    ImageSlot,
    PromptError,
    TiledGroup,
    VideoGroup,
    build_prompt_layout,
    compose_user_content,
)

IMAGE = 28  # TINY_CLIP_CONFIG: 28 px, 7 px patches -> 4×4 grid -> 2×2 = 4 tokens per image
MOE = dict(num_experts=4, num_experts_per_tok=2)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return write_tiny_longllava(tmp_path_factory.mktemp("longllava") / "tiny", seed=3)


@pytest.fixture(scope="module")
def tiny(tiny_dir) -> LongLLaVA:
    return load_model(tiny_dir)


def _pixels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors |= load_file(file)
    return tensors


# ---------------------------------------------------------------------------------------------
# Reference: transformers' CLIPVisionModel and JambaForCausalLM, fed only through files that the
# test writes from the LongLLaVA checkpoint, renamed by model/naming.py (whose names
# tests/model/test_naming.py checks against the AI21 names model/testing.py spells out).
# ---------------------------------------------------------------------------------------------


def _reference(src: Path, tmp: Path):
    """(CLIPVisionModel, projector as torch.nn.Sequential, JambaForCausalLM, HF tokenizer)."""
    transformers = pytest.importorskip("transformers")
    config = json.loads((src / "config.json").read_text())
    tensors = _read_tensors(src)

    clip_dir = tmp / "hf_clip"
    transformers.CLIPVisionConfig(**config["vision_config"]).save_pretrained(clip_dir)
    prefix = "model.vision_tower.vision_tower."
    clip = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    save_file(clip, clip_dir / "model.safetensors", metadata={"format": "pt"})
    hf_clip, info = transformers.CLIPVisionModel.from_pretrained(clip_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info

    lm_keys = {
        k: v for k, v in config.items() if k not in ("n_ctx", "mamba_inner_layernorms") and not k.startswith("mm_")
    }
    lm_keys = {k: v for k, v in lm_keys.items() if k not in ("vision_config", "resamplePooling", "architectures")}
    lm_keys |= {"model_type": "jamba", "max_position_embeddings": config["n_ctx"]}
    jamba_dir = tmp / "hf_jamba"
    transformers.JambaConfig(**lm_keys).save_pretrained(jamba_dir)
    period, offset = config["expert_layer_period"], config["expert_layer_offset"]
    dense = {i for i in range(config["num_hidden_layers"]) if config["num_experts"] == 1 or i % period != offset}
    lm = {to_native(k, dense): v for k, v in tensors.items() if not k.startswith(("model.mm_", prefix))}
    save_file(lm, jamba_dir / "model.safetensors", metadata={"format": "pt"})
    hf_lm, info = transformers.JambaForCausalLM.from_pretrained(
        jamba_dir, output_loading_info=True, dtype=torch.float32
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info

    c, e = config["mm_hidden_size"], config["hidden_size"]
    projector = torch.nn.Sequential(torch.nn.Linear(c, e), torch.nn.GELU(), torch.nn.Linear(e, e))
    projector.load_state_dict(
        {k.removeprefix("model.mm_projector."): tensors[k] for k in tensors if "mm_projector" in k}
    )
    tokenizer = HFTokenizer.from_file(str(src / "tokenizer.json"))
    return hf_clip.eval(), projector.eval(), hf_lm.eval(), tokenizer


def _reference_features(hf_clip, projector, pixels: torch.Tensor) -> torch.Tensor:
    """Penultimate-layer patch tokens -> 2×2 average pool on the 4×4 grid -> projector."""
    patches = hf_clip(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    b, n, c = patches.shape
    g = int(n**0.5)
    grid = patches.reshape(b, g, g, c).permute(0, 3, 1, 2)
    pooled = F.avg_pool2d(grid, 2).permute(0, 2, 3, 1).reshape(b, -1, c)
    return projector(pooled)


CASES = {
    "image_dense": (lambda: [ImageGroup()], "What is shown in this image?", {}),
    "video_4_frames_moe": (lambda: [VideoGroup(4)], "What happens in the video?", MOE),
}


@pytest.mark.parametrize("case", CASES)
def test_end_to_end_logits_match_transformers_reference(tmp_path, case):
    groups, question, lm = CASES[case]
    src = write_tiny_longllava(tmp_path / "tiny", seed=7, lm=lm, shards=3)
    hf_clip, projector, hf_lm, hf_tokenizer = _reference(src, tmp_path)
    model = load_model(src)
    layout = build_prompt_layout(compose_user_content(question, groups()), tokens_per_image=model.tokens_per_image)
    pixels = _pixels(len(layout.slots), seed=1)
    with torch.no_grad():
        # Reference: upstream's split-on-<image> tokenisation, features spliced in order.
        features = _reference_features(hf_clip, projector, pixels)
        chunks = [hf_tokenizer.encode(t, add_special_tokens=False).ids for t in layout.text.split("<image>")]
        pieces = [hf_lm.get_input_embeddings()(torch.tensor(chunks[0]))]
        for i, chunk in enumerate(chunks[1:]):
            pieces += [features[i], hf_lm.get_input_embeddings()(torch.tensor(chunk, dtype=torch.long))]
        expected = hf_lm(inputs_embeds=torch.cat(pieces)[None]).logits

        ours_features = model.encode_images(pixels, batch_size=3)
        embeds = model.merge_embeddings(model.prompt_tokens(layout), ours_features)
        got = model.lm(inputs_embeds=embeds, logits_to_keep=None)
    torch.testing.assert_close(ours_features, features, atol=1e-5, rtol=0)
    assert got.shape == expected.shape == (1, sum(map(len, chunks)) + 4 * len(layout.slots), 512)
    assert expected.abs().max() > 1.0, "random weights too small to make the comparison meaningful"
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# Prompt -> tokens -> merged embeddings
# ---------------------------------------------------------------------------------------------


def _layout(model: LongLLaVA, groups):
    return build_prompt_layout(compose_user_content("Compare them.", groups), tokens_per_image=model.tokens_per_image)


def test_each_slot_holds_its_images_projected_features(tiny):
    layout = _layout(tiny, [VideoGroup(3), ImageGroup(), TiledGroup(1, 2)])
    tokens = tiny.prompt_tokens(layout)
    features = tiny.encode_images(_pixels(len(layout.slots)))
    assert features.shape == (7, tiny.tokens_per_image, 32) and features.dtype == tiny.dtype
    as_list = list(features)
    embeds = tiny.merge_embeddings(tokens.segments, as_list)
    torch.testing.assert_close(tiny.merge_embeddings(tokens, features), embeds, atol=0, rtol=0)
    assert embeds.shape == (1, tokens.num_tokens, 32)
    position, seen = 0, []
    for segment in tokens.segments:
        if isinstance(segment, ImageSlot):
            torch.testing.assert_close(embeds[0, position : position + 4], features[segment.image], atol=0, rtol=0)
            seen.append(segment.image)
            position += segment.num_tokens
        else:
            expected = tiny.embed_tokens(torch.tensor([segment]))[0]
            torch.testing.assert_close(embeds[0, position : position + len(segment)], expected, atol=0, rtol=0)
            position += len(segment)
    assert position == tokens.num_tokens and seen == list(range(7))


@pytest.mark.parametrize("num_images", [1, 3])
def test_slot_and_image_count_mismatch_raises(tiny, num_images):
    tokens = tiny.prompt_tokens(_layout(tiny, [VideoGroup(2)]))
    with pytest.raises(PromptError, match=rf"2 image slot\(s\) but {num_images} image"):
        tiny.merge_embeddings(tokens, torch.zeros(num_images, 4, 32))


def test_features_of_the_wrong_size_raise(tiny):
    tokens = tiny.prompt_tokens(_layout(tiny, [ImageGroup()]))
    with pytest.raises(PromptError, match=r"features of shape \[5, 32\], its slot needs \[4, 32\]"):
        tiny.merge_embeddings(tokens, torch.zeros(1, 5, 32))


def test_layout_sized_for_another_model_is_rejected(tiny):
    layout = build_prompt_layout(compose_user_content("Hi", [ImageGroup()]), tokens_per_image=144)
    with pytest.raises(PromptError, match="tokens_per_image=4"):
        tiny.prompt_tokens(layout)


def test_context_limit_is_reported_not_applied(tiny, recwarn):
    limit = tiny.max_context_tokens
    assert limit == 4096
    tiny.check_context(limit)
    assert not recwarn.list
    with pytest.warns(UserWarning, match="trained with at most 4096"):
        tiny.check_context(limit + 1)
    with pytest.raises(ContextTooLongError, match="4097 tokens, over the 4096"):
        tiny.check_context(limit + 1, truncate=True)


# ---------------------------------------------------------------------------------------------
# load_model
# ---------------------------------------------------------------------------------------------


def test_loads_a_longllava_directory(tiny):
    assert tiny.vision is not None and tiny.projector is not None and tiny.is_multimodal
    assert (tiny.tokens_per_image, tiny.image_size) == (4, 28)
    assert tiny.config.mm.pooling == "2d" and tiny.config.vision.hidden_size == TINY_CLIP_CONFIG["hidden_size"]
    assert tiny.tokenizer.eos_token_id == 2
    assert not tiny.training
    for name, p in tiny.named_parameters():
        assert not p.is_meta and not p.requires_grad and p.dtype == torch.float32, name


def test_sharding_and_dtype(tmp_path, tiny):
    one = load_model(write_tiny_longllava(tmp_path / "one", seed=3, shards=1))
    pixels = _pixels(2)
    torch.testing.assert_close(one.encode_images(pixels), tiny.encode_images(pixels), atol=0, rtol=0)
    half = load_model(tmp_path / "one", dtype="bfloat16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    features = half.encode_images(pixels)
    assert features.dtype == torch.bfloat16
    torch.testing.assert_close(features.float(), tiny.encode_images(pixels), atol=0.1, rtol=0.05)


@pytest.mark.parametrize(("pooling", "tokens"), [("1d", 4), ("none", 16)])
def test_other_poolings_set_tokens_per_image(tmp_path, pooling, tokens):
    model = load_model(write_tiny_longllava(tmp_path / pooling, pooling=pooling, shards=1))
    assert model.tokens_per_image == tokens
    assert model.encode_images(_pixels(2)).shape == (2, tokens, 32)


def test_missing_resample_pooling_warns_and_uses_2d(tmp_path, tiny):
    path = write_tiny_longllava(tmp_path / "old", seed=3, pooling=None)
    assert "resamplePooling" not in json.loads((path / "config.json").read_text())
    with pytest.warns(UserWarning, match="no 'resamplePooling'; using '2d'"):
        model = load_model(path)
    assert model.tokens_per_image == 4
    torch.testing.assert_close(model.encode_images(_pixels(1)), tiny.encode_images(_pixels(1)), atol=0, rtol=0)


def test_plain_jamba_directory_loads_as_text_only(hf_jamba):
    path, _ = hf_jamba(seed=5, vocab_size=512)
    write_tiny_tokenizer(path)
    model = load_model(path)
    assert model.vision is None and model.projector is None and not model.is_multimodal
    assert model.config.mm is None and model.max_context_tokens is None
    ids = torch.arange(20).view(1, 20)
    with torch.no_grad():
        expected = load_language_model(path)(ids, logits_to_keep=None)
        torch.testing.assert_close(model.lm(ids, logits_to_keep=None), expected, atol=0, rtol=0)
    with pytest.raises(CheckpointError, match="text-only"):
        model.tokens_per_image  # noqa: B018
    with pytest.raises(CheckpointError, match="text-only"):
        model.encode_images(_pixels(1))
    with pytest.raises(CheckpointError, match="text-only"):
        load_model(path, vision_tower=path)


@pytest.fixture(scope="module")
def without_clip(tmp_path_factory) -> Path:
    """The tiny checkpoint (seed 3) without its CLIP weights, and that CLIP in ./clip next to it."""
    root = tmp_path_factory.mktemp("split")
    write_tiny_clip(root / "clip", seed=3)
    return write_tiny_longllava(root / "llava", seed=3, include_vision=False)


def test_clip_from_a_separate_directory_by_argument(without_clip, tiny):
    model = load_model(without_clip, vision_tower=without_clip.parent / "clip")
    torch.testing.assert_close(model.encode_images(_pixels(2)), tiny.encode_images(_pixels(2)), atol=0, rtol=0)


@pytest.mark.parametrize("relative", [False, True])
def test_clip_from_mm_vision_tower_path(tmp_path, without_clip, tiny, relative):
    (tmp_path / "clip").symlink_to(without_clip.parent / "clip")
    checkpoint = tmp_path / "llava"
    checkpoint.mkdir()
    for file in without_clip.iterdir():  # copies: symlinks leading out of a checkpoint are refused
        if file.name != "config.json":
            shutil.copy(file, checkpoint / file.name)
    clip = "../clip" if relative else str(tmp_path / "clip")  # relative to the checkpoint directory
    config = json.loads((without_clip / "config.json").read_text()) | {"mm_vision_tower": clip}
    (checkpoint / "config.json").write_text(json.dumps(config))
    model = load_model(checkpoint)
    torch.testing.assert_close(model.encode_images(_pixels(2)), tiny.encode_images(_pixels(2)), atol=0, rtol=0)


def test_vision_tower_argument_overrides_the_checkpoints_tower(tmp_path, tiny_dir, tiny):
    other = write_tiny_clip(tmp_path / "other_clip", seed=11)
    model = load_model(tiny_dir, vision_tower=other)
    assert not torch.equal(model.encode_images(_pixels(1)), tiny.encode_images(_pixels(1)))


def test_missing_clip_weights_name_the_fix(without_clip):
    with pytest.raises(CheckpointError, match=r"no CLIP weights .*pass --vision-tower DIR or put the CLIP weights"):
        load_model(without_clip)


def test_vision_tower_that_is_not_a_clip_directory(without_clip, tiny_dir, tmp_path):
    with pytest.raises(CheckpointError, match="is not a CLIP model"):
        load_model(without_clip, vision_tower=tiny_dir)
    with pytest.raises(CheckpointError, match="CLIP vision tower named by the vision_tower argument"):
        load_model(without_clip, vision_tower=tmp_path / "nowhere")


def test_clip_narrower_than_the_projector_expects(without_clip, tmp_path):
    clip = write_tiny_clip(tmp_path / "narrow", vision=dict(hidden_size=16))
    with pytest.raises(CheckpointError, match=r"CLIP tower is 16 wide but mm_hidden_size .* is 24"):
        load_model(without_clip, vision_tower=clip)


@pytest.mark.parametrize("mm_hidden_size", [24, 1024])
def test_embedded_clip_without_vision_config_is_checked_against_vit_l(tmp_path, mm_hidden_size):
    overrides = {"vision_config": None, "mm_hidden_size": mm_hidden_size}
    path = write_tiny_longllava(tmp_path / "t", config_overrides=overrides)
    with pytest.raises(CheckpointError, match="ViT-L/14-336 tower was assumed: add a 'vision_config'"):
        load_model(path)


def _replace_tensor(path: Path, key: str, value: torch.Tensor) -> None:
    file = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"][key]
    tensors = load_file(path / file)
    tensors[key] = value
    save_file(tensors, path / file, metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("key", "shape"), [("model.mm_projector.0.weight", (32, 20)), ("model.mm_projector.2.bias", (40,))]
)
def test_projector_of_the_wrong_width(tmp_path, key, shape):
    path = write_tiny_longllava(tmp_path / "t")
    _replace_tensor(path, key, torch.zeros(shape))
    with pytest.raises(CheckpointError, match=rf"{re.escape(key)} has shape .*projector mlp2x_gelu: mm_hidden_size 24"):
        load_model(path)


def test_missing_projector_is_named(tmp_path):
    path = write_tiny_longllava(tmp_path / "t", shards=1)
    tensors = {k: v for k, v in load_file(path / "model.safetensors").items() if "mm_projector.2" not in k}
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\) model\.mm_projector\.2\.bias"):
        load_model(path)


def test_missing_tokenizer(tmp_path):
    path = write_tiny_longllava(tmp_path / "t", shards=1)
    (path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"no tokenizer\.json; copy it"):
        load_model(path)


def test_tokenizer_of_another_model_is_a_checkpoint_error(tmp_path, hf_jamba):
    """Ids beyond the embedding table would crash mid-run; refuse the pair at load time."""
    path, _ = hf_jamba(vocab_size=97)
    write_tiny_tokenizer(path)
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: \d+ tokens but the model's vocab_size is 97"):
        load_model(path)


def test_unsupported_projector_type_is_a_checkpoint_error(tmp_path):
    path = write_tiny_longllava(tmp_path / "t", shards=1, config_overrides={"mm_projector_type": "qformer"})
    with pytest.raises(CheckpointError, match="mm_projector_type 'qformer' is not supported"):
        load_model(path)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_model_takes_cpu_inputs_and_tracks_cpu(tiny_dir, tiny):
    model = load_model(tiny_dir, device="cuda")
    layout = _layout(model, [VideoGroup(2)])
    tokens = model.prompt_tokens(layout)
    features = model.encode_images(_pixels(2))  # CPU pixels
    assert features.device.type == "cuda"
    embeds = model.merge_embeddings(tokens, features.cpu())  # CPU features are moved too
    assert embeds.device.type == "cuda"
    with torch.no_grad():
        got = model.lm(inputs_embeds=embeds, logits_to_keep=None).cpu()
        expected = tiny.lm(
            inputs_embeds=tiny.merge_embeddings(tokens, tiny.encode_images(_pixels(2))), logits_to_keep=None
        )
    # cuDNN may run the patch convolution in TF32: a device test, not a precision one.
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=0)
