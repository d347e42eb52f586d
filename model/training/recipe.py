"""Train the small demo LongLLaVA on synthetic images and videos, on CPU, and export it.

The export is a real LongLLaVA checkpoint directory that `model.load_model` reads.

    python examples/train_demo_model.py --out benchmarks/out/demo_train            # train + export + eval
    python examples/train_demo_model.py --out benchmarks/out/demo_train --eval-only
    python examples/train_demo_model.py --out benchmarks/out/demo_train --stop-after-minutes 20  # resumable
    python examples/train_demo_model.py --out benchmarks/out/demo_train --layout mamba --count-steps 0  # comparison

(`python -m model.training ...` is the same command.) The recipe is LongLLaVA's progressive one
(arXiv 2409.02889 §4), scaled down, after a stage 0 that stands in for the pretrained CLIP the
paper starts from (nothing can be downloaded here):
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
from collections.abc import Sequence
from pathlib import Path

import torch

from model import load_model
from model.training.architecture import LAYOUTS
from model.training.evaluation import EVAL_SETTINGS, evaluate
from model.training.export import export
from model.training.train import train


def build_parser() -> argparse.ArgumentParser:
    """The recipe's command line: the run folder, the stages' lengths and rates, evaluation."""
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
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Train (unless --eval-only), export to `OUT/model`, evaluate it through the public loader and
    write `OUT/eval.json`. argv: the arguments (default: the process's)."""
    args = build_parser().parse_args(argv)
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
