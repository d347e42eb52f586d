"""The built-in demo model: a small LongLLaVA-architecture checkpoint (hybrid Jamba LM, CLIP
tower, 2d pooling, MLP projector) trained on this project's synthetic images and videos of
coloured shapes by `examples/train_demo_model.py`, shipped as package data in the real
LongLLaVA format (config.json, model.safetensors, tokenizer files) and loaded by the same
`model.load_model` as real checkpoints.

It answers the synthetic tasks' questions about 56-px frames of coloured circles, squares,
triangles and crosses, and knows nothing else: reliably which object a video shows (up to 1000
frames), which of two came first, what a picture shows and how many frames of a video (up to 32
frames) show a colour; poorly which of several pictures or which tile of a large image shows an
object (benchmarks/RESULTS.md has the figures). The CLI uses it when no model is configured, and says
so on stderr (`DEMO_NOTICE`).
"""

from __future__ import annotations

from pathlib import Path

DEMO_MODEL_DIR = Path(__file__).resolve().parent
DEMO_NOTICE = (
    "note: no --model given, using the built-in demo model (trained here on synthetic videos of coloured "
    "shapes; it knows nothing else): for real use, `longllava pull FreedomIntelligence/LongLLaVA-9B` and pass "
    "--model FreedomIntelligence/LongLLaVA-9B (or a checkpoint folder), or set LONGLLAVA_MODEL"
)


def demo_model_dir() -> Path | None:
    """The packaged checkpoint's folder, or None when this install has no demo model."""
    return DEMO_MODEL_DIR if (DEMO_MODEL_DIR / "config.json").is_file() else None
