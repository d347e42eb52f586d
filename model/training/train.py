"""The resumable training loop: stage 0 (`vision_pretraining`), then stages I-IV (`stages`) on the
projector and the LM with the CLIP tower frozen.

A run folder holds the tokenizer (`tokenizer/`), the log (`train_log.jsonl`, one JSON record per
logged step) and the training state (`train_state.pt`: model, optimizer, step), written every
`save_every` steps and when the run stops; a rerun of the same command continues from the state
and, since each step's data is a function of (seed, step), ends where an uninterrupted run would.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import TextIO

import torch

from model.longllava import LongLLaVA
from model.training import synthetic
from model.training.architecture import build_model
from model.training.batches import batch_loss
from model.training.stages import count_stage_items, items_for_step, learning_rate, stage_at
from model.training.tokenizer import write_tokenizer
from model.training.vision_pretraining import pretrain_vision

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"


def train(args: argparse.Namespace) -> LongLLaVA:
    """Train (or continue training) the demo model in the run folder `args.out`; returns it.

    args: out, seed, layout, steps (stages I-III), count_steps (stage IV), batch_size, lr,
    count_lr, max_frames, log_every, save_every, stop_after_minutes and stop_after_steps (None:
    no limit), and stage 0's vision_steps, vision_batch_size, vision_lr."""
    out = Path(args.out)
    tokenizer_dir = out / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").exists():
        write_tokenizer(tokenizer_dir)
    model = build_model(tokenizer_dir, args.seed, args.layout).train()
    state_file = out / STATE_FILE
    state = torch.load(state_file, weights_only=False) if state_file.exists() else None
    with (out / LOG_FILE).open("a", encoding="utf-8") as log:
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
        _train_steps(model, optimizer, step, args, log, state_file)
    return model


def _train_steps(
    model: LongLLaVA,
    optimizer: torch.optim.Optimizer,
    step: int,
    args: argparse.Namespace,
    log: TextIO,
    state_file: Path,
) -> None:
    """Stages I-IV from `step` until the last step, `stop_after_steps` more steps or the deadline."""
    start, window = time.time(), []
    deadline = start + 60 * args.stop_after_minutes if args.stop_after_minutes else math.inf
    total = args.steps + args.count_steps
    last = min(total, step + args.stop_after_steps) if args.stop_after_steps else total
    while step < last and time.time() < deadline:
        rate, items = _step_data(step, args)
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
            _save_state(state_file, model, optimizer, step)


def _step_data(step: int, args: argparse.Namespace) -> tuple[float, list[synthetic.Item]]:
    """(learning rate, batch) of `step`: stages I-III for the first `args.steps` steps, then IV."""
    if step < args.steps:
        rate = learning_rate(step, args.steps, args.lr)
        return rate, items_for_step(args.seed, step, args.steps, args.batch_size, args.max_frames)
    rate = learning_rate(step - args.steps, args.count_steps, args.count_lr, warmup=20)
    return rate, count_stage_items(args.seed, step - args.steps, args.count_steps, args.batch_size, args.steps)


def _save_state(state_file: Path, model: LongLLaVA, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Write the training state through a temporary file, so an interrupted write leaves the last one."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
    torch.save(state, state_file.with_suffix(".tmp"))
    state_file.with_suffix(".tmp").replace(state_file)
