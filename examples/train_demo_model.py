"""Train the small demo LongLLaVA on synthetic images and videos (issue 7), on CPU, and write it as a
real LongLLaVA checkpoint directory that `model.load_model` reads.

    python examples/train_demo_model.py --out benchmarks/out/demo_train            # train + export + eval
    python examples/train_demo_model.py --out benchmarks/out/demo_train --eval-only
    python examples/train_demo_model.py --out benchmarks/out/demo_train --stop-after-minutes 20  # resumable
    python examples/train_demo_model.py --out benchmarks/out/demo_train --layout mamba --count-steps 0  # comparison

The recipe is LongLLaVA's progressive one (arXiv 2409.02889 §4), scaled down, after a stage 0
that stands in for the pretrained CLIP the paper starts from (nothing can be downloaded here):
  0   vision pretraining: the CLIP tower (with throwaway linear heads on its pooled features)
      classifies each frame's object colour, shape and position; the tower is frozen afterwards,
      as the paper keeps CLIP frozen;
  I   alignment: single-image descriptions ("red circle");
  II  single-image instructions: descriptions and which tile of a large image holds an object;
  III multi-image and video instructions (compare, needle, count, temporal order, motion) with
      replay of the stage I/II data;
  IV  (ours, `--count-steps N`, 15000 by default; 0 ends after stage III) mostly counting items on
      videos growing from 8 to 32 frames, with replay of every other task: counting is what the
      tiny LM learns last.
Stages I-III train the projector and the LM. The paper's stage I trains the projector alone on
a pretrained LM; ours has no pretrained LM, so it learns its words from stage I on.
The loss is on answer tokens only (and the EOS that ends them). Everything runs through our own
model code: the CLIP tower, 2d pooling, projector, and the Jamba LM on the spliced embeddings
(with the differentiable scan, compiled in C where `model.cpu_kernels` built, and differentiable
attention, chosen automatically while autograd records).

Seeded and resumable: the data of step s is a function of (seed, s), and a training state is
written every `--save-every` steps; rerunning the same command continues from it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import synthetic
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from model import load_model
from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig, ModelConfig
from model.longllava import LongLLaVA
from model.projector import pool_features
from model.tokenizer import load_tokenizer
from sampling.preprocess import iter_tiles, preprocess_image
from sampling.prompt import (
    ImageGroup,
    ImageSlot,
    TiledGroup,
    VideoGroup,
    build_prompt_layout,
    compose_user_content,
    tokenize_layout,
)

LM_CONFIG = dict(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    attn_layer_period=3,  # layers 2 and 5 attention, the rest Mamba
    attn_layer_offset=2,
    expert_layer_period=2,  # odd layers a top-2 MoE of 4 experts, as Jamba's every other layer
    expert_layer_offset=1,
    num_experts=4,
    num_experts_per_tok=2,
    mamba_d_state=8,
    mamba_d_conv=4,
    mamba_expand=2,
    mamba_dt_rank="auto",
    mamba_conv_bias=True,
    mamba_proj_bias=False,
    mamba_inner_layernorms=True,
    hidden_act="silu",
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    n_ctx=16384,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
# The architecture comparison (issue 7): the same recipe and layer count with every mixer Mamba
# or every mixer attention. Attention mixers are lighter (q/k/v/o 49K vs Mamba's 108K parameters
# at this width), so the pure-attention model has ~10 % fewer parameters; RESULTS.md lists them.
LAYOUTS = {
    "hybrid": {},
    "mamba": {"attn_layer_period": 7, "attn_layer_offset": 6},  # no layer index i < 6 has i % 7 == 6
    "attention": {"attn_layer_period": 1, "attn_layer_offset": 0},
}


def lm_config(layout: str = "hybrid") -> dict:
    return {**LM_CONFIG, **LAYOUTS[layout]}


# 56 px images in 14 px patches: a 4×4 grid, 2d-pooled to 2×2 = 4 tokens per image.
CLIP_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,  # mm_vision_select_layer -2 runs the first two
    num_attention_heads=4,
    num_channels=3,
    image_size=56,
    patch_size=14,
    layer_norm_eps=1e-5,
    hidden_act="quick_gelu",
    projection_dim=32,
)
MM_CONFIG = dict(
    mm_vision_tower="openai/clip-vit-large-patch14-336",  # the layout's name; the weights are ours
    mm_hidden_size=CLIP_CONFIG["hidden_size"],
    mm_projector_type="mlp2x_gelu",
    mm_vision_select_layer=-2,
    mm_vision_select_feature="patch",
    mm_patch_merge_type="flat",
    image_aspect_ratio="pad",
    resamplePooling="2d",
    tokenizer_model_max_length=16384,
)
SPECIAL_TOKENS = ("<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>")
MARKUP_TOKENS = ("<img>", "</img>", "<t>", "<vid>", "</vid>", "<|User|>", "<|Assistant|>")
MARKUP_LINES = (
    "<|startoftext|><|User|>\n<img><image></img>\n",
    "<vid><img><image></img><t><img><image></img><t><img><image></img></vid>",
    "<img><image>\n<img><image></img><img><image></img>\n<img><image></img><img><image></img></img>\n",
    "\n<|startoftext|><|Assistant|>\n",
)
# (name, tasks, fraction of the steps); stage III replays stage I/II tasks at their share.
STAGES = (
    ("I", {"describe": 1.0}, 0.15),
    ("II", {"describe": 0.5, "tile": 0.5}, 0.15),
    (
        "III",
        {"needle": 0.25, "count": 0.2, "order": 0.2, "motion": 0.1, "compare": 0.1, "describe": 0.075, "tile": 0.075},
        0.70,
    ),
)
# Stage IV (ours, after the paper's three): the tiny LM learns counting last and slowest (RESULTS.md),
# so `--count-steps` adds a stage of mostly counting items whose videos grow from 8 to 32 frames, with
# replay of every other task at those lengths.
COUNT_STAGE_MIX = {
    "count": 0.6,
    "needle": 0.1,
    "order": 0.1,
    "describe": 0.05,
    "motion": 0.05,
    "compare": 0.05,
    "tile": 0.05,
}
# Video lengths per part of stage IV (end as a fraction of the stage, lengths drawn uniformly): short
# videos first; the second half dwells on 32 frames, where counting was weakest (RESULTS.md).
COUNT_STAGE_LENGTHS = ((0.25, (4, 8)), (0.5, (4, 8, 16)), (1.0, (8, 16, 32, 32)))
VIDEO_TASKS = ("needle", "count", "order", "motion")
EVAL_SEED = 777_000  # evaluation items come from seeds far from the training ones


# ---------------------------------------------------------------------------------------------
# Model, tokenizer, export
# ---------------------------------------------------------------------------------------------


def train_tokenizer(lines: Sequence[str], vocab_size: int) -> HFTokenizer:
    """Byte-level BPE on the template and task text, Jamba's special ids (pad 0, bos 1, eos 2, unk 3)."""
    tokenizer = HFTokenizer(models.BPE(unk_token="<|unk|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [line for line in MARKUP_LINES for _ in range(50)] + list(lines)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    # One token per separator, so a frame costs 4 image + 3 markup tokens (`<img>`, `</img>`,
    # `<t>`) rather than the ~8 pieces BPE makes of them.
    tokenizer.add_tokens(list(MARKUP_TOKENS))
    return tokenizer


def write_tokenizer(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    train_tokenizer(synthetic.template_text(), LM_CONFIG["vocab_size"]).save(str(directory / "tokenizer.json"))
    roles = dict(zip(("pad_token", "bos_token", "eos_token", "unk_token"), SPECIAL_TOKENS, strict=True))
    config = {"add_bos_token": True, "add_eos_token": False, **roles}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(roles, indent=2) + "\n", encoding="utf-8")


def build_model(tokenizer_dir: Path, seed: int, layout: str = "hybrid") -> LongLLaVA:
    torch.manual_seed(seed)
    config = ModelConfig(
        lm=JambaConfig.from_dict(lm_config(layout)),
        mm=LongLLaVAConfig.from_dict(MM_CONFIG),
        vision=CLIPVisionConfig.from_dict(CLIP_CONFIG),
    )
    model = LongLLaVA(config, load_tokenizer(tokenizer_dir))
    for name, p in model.named_parameters():
        if name.endswith("dt_proj.bias"):  # Mamba's init: step sizes log-uniform in [1e-3, 1e-1]
            with torch.no_grad():
                dt = torch.exp(torch.empty_like(p).uniform_(math.log(1e-3), math.log(1e-1)))
                p.copy_(dt + torch.log(-torch.expm1(-dt)))
        elif name.endswith("embed_tokens.weight"):
            torch.nn.init.normal_(p, std=0.5)
    return model


def checkpoint_tensors(model: LongLLaVA) -> dict[str, torch.Tensor]:
    """The model's tensors under LongLLaVA's checkpoint names (AI21 naming for the LM, the
    inverse of model/loading.py's table)."""
    dense = {i for i, e in enumerate(model.config.lm.layer_num_experts) if e == 1}
    tensors = {}
    for name, value in model.lm.state_dict().items():
        parts = name.split(".")
        if name.startswith("model.layers."):
            layer = int(parts[2])
            name = name.replace(".pre_ff_layernorm.", ".pre_moe_layernorm.")
            name = name.replace(".mamba.b_layernorm.", ".mamba.B_layernorm.").replace(
                ".mamba.c_layernorm.", ".mamba.C_layernorm."
            )
            if ".feed_forward." in name:
                name = name.replace(".feed_forward.", ".moe.experts.0." if layer in dense else ".moe.")
        tensors[name] = value
    for name, value in model.vision.state_dict().items():
        tensors["model.vision_tower.vision_tower." + name] = value
    for name, value in model.projector.state_dict().items():
        tensors["model.mm_projector." + name] = value
    return {k: v.detach().contiguous().clone() for k, v in tensors.items()}


def export(model: LongLLaVA, tokenizer_dir: Path, out: Path, layout: str = "hybrid") -> Path:
    """Write config.json, model.safetensors and the tokenizer files into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlavaJambaForCausalLM"],
        "model_type": "llava_jamba",
        "torch_dtype": "float32",
        **lm_config(layout),
        **MM_CONFIG,
        "vision_config": CLIP_CONFIG,
        "demo_model": "trained on synthetic images and videos by examples/train_demo_model.py",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(checkpoint_tensors(model), out / "model.safetensors", metadata={"format": "pt"})
    for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (out / file).write_bytes((tokenizer_dir / file).read_bytes())
    return out


# ---------------------------------------------------------------------------------------------
# Items -> model inputs
# ---------------------------------------------------------------------------------------------


def visual_inputs(item: synthetic.Item, size: int) -> tuple[list, list[torch.Tensor]]:
    """(prompt groups, preprocessed images in slot order), as the inference pipeline makes them."""
    groups, pixels = [], []
    for visual in item.visuals:
        if isinstance(visual, synthetic.Picture):
            groups.append(ImageGroup())
            pixels.append(preprocess_image(visual.image, size))
        elif isinstance(visual, synthetic.Video):
            groups.append(VideoGroup(len(visual.frames)))
            pixels += [preprocess_image(frame, size) for frame in visual.frames]
        else:
            groups.append(TiledGroup(visual.rows, visual.cols))
            pixels.append(preprocess_image(visual.image, size))
            pixels += [preprocess_image(piece, size) for _, _, piece in iter_tiles(visual.image, size)]
    return groups, pixels


def prompt_segments(model: LongLLaVA, item: synthetic.Item, groups: list) -> tuple:
    layout = build_prompt_layout(compose_user_content(item.question, groups), tokens_per_image=model.tokens_per_image)
    return tokenize_layout(layout, model.tokenizer.encode).segments


def encode_pixels(model: LongLLaVA, pixels: torch.Tensor) -> torch.Tensor:
    """[N, 3, S, S] -> [N, t, e] with autograd through the projector, and through the CLIP tower
    while it trains (LongLLaVA.encode_images is inference-only)."""
    tower_trains = any(p.requires_grad for p in model.vision.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and tower_trains):
        features = model.vision(pixels)
    return model.projector(pool_features(features, model.pooling))


# Stage 0: the heads read the pooled features [N, t, e] flattened; "no object" is one more class.
ATTRIBUTE_CLASSES = {
    "color": len(synthetic.COLORS) + 1,
    "shape": len(synthetic.SHAPES) + 1,
    "column": 3,
    "row": 3,
}


def pretrain_vision(model: LongLLaVA, args: argparse.Namespace) -> list[dict]:
    """Stage 0: train the CLIP tower to name each frame's object colour, shape and position third
    through throwaway linear heads on its pooled features; returns the log records."""
    tokens = model.tokens_per_image * model.config.vision.hidden_size
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(tokens, n) for k, n in ATTRIBUTE_CLASSES.items()})
    optimizer = torch.optim.AdamW([*model.vision.parameters(), *heads.parameters()], lr=args.vision_lr)
    records, correct, losses = [], [], []
    for step in range(args.vision_steps):
        rng = random.Random(f"vision:{args.seed}:{step}")
        frames, labels = zip(*(synthetic.attribute_frame(rng) for _ in range(args.vision_batch_size)), strict=True)
        pixels = torch.stack([preprocess_image(frame, model.image_size) for frame in frames])
        features = pool_features(model.vision(pixels), model.pooling).flatten(1)
        loss = torch.zeros(())
        hits = []
        for name, head in heads.items():
            target = torch.tensor([label[name] for label in labels])
            logits = head(features)
            loss = loss + F.cross_entropy(logits, target, ignore_index=-100)
            hits.append(((logits.argmax(1) == target) | (target == -100)).float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        correct.append(torch.stack(hits).prod(0).mean().item())  # every attribute right
        if (step + 1) % args.log_every == 0 or step + 1 == args.vision_steps:
            record = {"step": step + 1, "stage": "0", "loss": sum(losses) / len(losses)}
            record["all_attributes_right"] = round(sum(correct) / len(correct), 3)
            print(json.dumps(record), flush=True)
            records.append(record)
            losses, correct = [], []
    return records


def splice(model: LongLLaVA, segments: Sequence, features: torch.Tensor) -> torch.Tensor:
    """Text embeddings and image features in prompt order -> [L, e] (differentiable twin of
    `LongLLaVA.merge_embeddings`)."""
    pieces = []
    for segment in segments:
        if isinstance(segment, ImageSlot):
            pieces.append(features[segment.image])
        else:
            pieces.append(model.lm.embed(torch.tensor(segment, dtype=torch.long)))
    return torch.cat(pieces)


def batch_loss(model: LongLLaVA, items: Sequence[synthetic.Item]) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer tokens (and their EOS) of a padded batch."""
    size = model.image_size
    prepared, all_pixels = [], []
    for item in items:
        groups, pixels = visual_inputs(item, size)
        prepared.append((prompt_segments(model, item, groups), len(all_pixels), len(pixels)))
        all_pixels += pixels
    features = encode_pixels(model, torch.stack(all_pixels))
    rows, labels = [], []
    for (segments, first, count), item in zip(prepared, items, strict=True):
        prompt = splice(model, segments, features[first : first + count])
        answer = [*model.tokenizer.encode(item.answer), model.tokenizer.eos_token_id]
        answer_ids = torch.tensor(answer, dtype=torch.long)
        rows.append(torch.cat([prompt, model.lm.embed(answer_ids[:-1])]))
        labels.append(torch.cat([torch.full((len(prompt) - 1,), -100), answer_ids]))
    length = max(len(r) for r in rows)
    embeds = torch.stack([F.pad(r, (0, 0, 0, length - len(r))) for r in rows])  # right padding: causal, harmless
    targets = torch.stack([F.pad(t, (0, length - len(t)), value=-100) for t in labels])
    logits = model.lm(inputs_embeds=embeds, logits_to_keep=None)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    return loss, length


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def stage_at(step: int, total: int) -> tuple[str, dict[str, float]]:
    end = 0.0
    for name, mix, fraction in STAGES:
        end += fraction
        if step < round(end * total):
            return name, mix
    return STAGES[-1][0], STAGES[-1][1]


def items_for_step(seed: int, step: int, total: int, batch_size: int, max_frames: int) -> list[synthetic.Item]:
    """The batch of `step`: a function of (seed, step) only, so a resumed run sees the same data.
    Video tasks draw their length up to `max_frames`; one length per batch keeps padding small."""
    _, mix = stage_at(step, total)
    rng = random.Random(f"{seed}:{step}")
    tasks = rng.choices(list(mix), weights=list(mix.values()), k=batch_size)
    num_frames = rng.choice([n for n in (4, 8, 16, 32, 64, 128) if n <= max_frames])
    items = []
    for i, task in enumerate(tasks):
        options = {"num_frames": num_frames} if task in VIDEO_TASKS else {}
        if task == "count":
            options["num_frames"] = min(num_frames, 32)
        if task == "motion":
            options["num_frames"] = min(num_frames, 16)
        items.append(synthetic.make_item(task, seed * 10_000_000 + step * batch_size + i, **options))
    return items


def count_stage_items(seed: int, step: int, count_steps: int, batch_size: int, offset: int) -> list[synthetic.Item]:
    """Stage IV's batch at its `step` (0-based), its video length drawn from `COUNT_STAGE_LENGTHS`
    for that part of the stage. Item seeds continue after stage III's (`offset` = its step count)."""
    rng = random.Random(f"{seed}:IV:{step}")
    tasks = rng.choices(list(COUNT_STAGE_MIX), weights=list(COUNT_STAGE_MIX.values()), k=batch_size)
    lengths = next(lengths for end, lengths in COUNT_STAGE_LENGTHS if step < end * count_steps)
    num_frames = rng.choice(lengths)
    base = seed * 10_000_000 + (offset + step) * batch_size
    return [
        synthetic.make_item(task, base + i, **({"num_frames": num_frames} if task in VIDEO_TASKS else {}))
        for i, task in enumerate(tasks)
    ]


def learning_rate(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))  # cosine down to 10%


def train(args: argparse.Namespace) -> LongLLaVA:
    out = Path(args.out)
    tokenizer_dir = out / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").exists():
        write_tokenizer(tokenizer_dir)
    model = build_model(tokenizer_dir, args.seed, args.layout).train()
    state_file = out / "train_state.pt"
    log = (out / "train_log.jsonl").open("a", encoding="utf-8")
    state = torch.load(state_file, weights_only=False) if state_file.exists() else None
    if state is None:
        for record in pretrain_vision(model, args):
            log.write(json.dumps(record) + "\n")
    model.vision.requires_grad_(False)  # frozen after stage 0, as the paper keeps CLIP frozen
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    start, window = time.time(), []
    deadline = start + 60 * args.stop_after_minutes if args.stop_after_minutes else math.inf
    total = args.steps + args.count_steps
    last = min(total, step + args.stop_after_steps) if args.stop_after_steps else total
    while step < last and time.time() < deadline:
        if step < args.steps:
            rate = learning_rate(step, args.steps, args.lr)
            items = items_for_step(args.seed, step, args.steps, args.batch_size, args.max_frames)
        else:
            rate = learning_rate(step - args.steps, args.count_steps, args.count_lr, warmup=20)
            items = count_stage_items(args.seed, step - args.steps, args.count_steps, args.batch_size, args.steps)
        for group in optimizer.param_groups:
            group["lr"] = rate
        loss, length = batch_loss(model, items)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        window.append(loss.item())
        if step % args.log_every == 0 or step in (args.steps, total):
            stage = stage_at(step - 1, args.steps)[0] if step <= args.steps else "IV"
            record = {"step": step, "stage": stage, "loss": sum(window) / len(window)}
            record |= {"tokens": length, "elapsed_s": round(time.time() - start, 1)}
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            window = []
        if step % args.save_every == 0 or step == last or time.time() >= deadline:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
            torch.save(state, state_file.with_suffix(".tmp"))
            state_file.with_suffix(".tmp").replace(state_file)
    return model


# ---------------------------------------------------------------------------------------------
# Evaluation: greedy answers through the inference path (cache, chunked-capable LM forward)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def answer(model: LongLLaVA, item: synthetic.Item, max_new_tokens: int = 8) -> str:
    groups, pixels = visual_inputs(item, model.image_size)
    segments = prompt_segments(model, item, groups)
    embeds = model.merge_embeddings(segments, model.encode_images(torch.stack(pixels)))
    cache = model.lm.new_cache(capacity=embeds.shape[1] + max_new_tokens)
    logits = model.lm(inputs_embeds=embeds, cache=cache)
    ids: list[int] = []
    for _ in range(max_new_tokens):
        token = int(logits[0, -1].argmax())
        if token in model.eos_token_ids:
            break
        ids.append(token)
        logits = model.lm(torch.tensor([[token]]), cache=cache)
    return model.tokenizer.decode(ids).strip()


def evaluate(model: LongLLaVA, per_task: int, settings: Sequence[tuple[str, dict]]) -> dict[str, float]:
    results = {}
    for name, options in settings:
        task = name.split("@")[0]
        correct = sum(
            answer(model, item) == item.answer
            for item in (synthetic.make_item(task, EVAL_SEED + i, **options) for i in range(per_task))
        )
        results[name] = correct / per_task
        print(f"{name:>14}: {correct}/{per_task}", flush=True)
    return results


EVAL_SETTINGS = (
    ("describe", {}),
    ("compare", {}),
    ("tile", {}),
    ("motion", {}),
    ("order@16", {"num_frames": 16}),
    ("order@32", {"num_frames": 32}),
    ("order@128", {"num_frames": 128}),
    ("count@8", {"num_frames": 8}),
    ("count@16", {"num_frames": 16}),
    ("count@32", {"num_frames": 32}),
    ("needle@16", {"num_frames": 16}),
    ("needle@64", {"num_frames": 64}),
    ("needle@128", {"num_frames": 128}),
    ("needle@256", {"num_frames": 256}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/out/demo_train", help="run folder (state, log, model/)")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--count-steps", type=int, default=15000, help="stage IV (counting) steps after --steps")
    parser.add_argument("--count-lr", type=float, default=1e-3, help="stage IV peak learning rate")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-frames", type=int, default=128, help="longest training video")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--eval-items", type=int, default=50, help="fresh items per evaluation setting")
    parser.add_argument("--eval-only", action="store_true", help="evaluate the exported model/ and stop")
    parser.add_argument("--vision-steps", type=int, default=3000, help="stage 0 steps")
    parser.add_argument("--vision-batch-size", type=int, default=32)
    parser.add_argument("--vision-lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layout", choices=list(LAYOUTS), default="hybrid", help="mixer layout (hybrid ships)")
    parser.add_argument(
        "--stop-after-minutes",
        type=float,
        default=None,
        help="save and stop early (then export and evaluate); rerun the same command to continue",
    )
    parser.add_argument("--stop-after-steps", type=int, default=None, help="save and stop after this many steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.eval_only:
        trained = train(args)
        export(trained.eval(), out / "tokenizer", out / "model", args.layout)
        size = sum(f.stat().st_size for f in (out / "model").iterdir())
        print(f"wrote {out / 'model'} ({size / 1e6:.1f} MB)", flush=True)
    model = load_model(out / "model")  # the exported directory, through the public loader
    results = evaluate(model, args.eval_items, EVAL_SETTINGS)
    (out / "eval.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
