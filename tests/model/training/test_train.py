"""The training loop resumes where it stopped."""

from __future__ import annotations

import pytest
import torch

from model.training.train import train


@pytest.mark.parametrize(("steps", "count_steps", "stop_first"), [(4, 0, 2), (2, 2, 3)])
def test_training_resumes_where_it_stopped(tmp_path, steps, count_steps, stop_first):
    """A run stopped and rerun equals one uninterrupted run (same data, same optimizer state), also
    across the boundary into stage IV."""
    import argparse

    def run(out, stop_after_steps=None):
        args = argparse.Namespace(
            out=str(out), steps=steps, count_steps=count_steps, count_lr=5e-4, batch_size=2, lr=1e-3, max_frames=4,
            seed=0, save_every=3, log_every=1, layout="hybrid", vision_steps=2, vision_batch_size=4, vision_lr=1e-3,
            stop_after_minutes=None, stop_after_steps=stop_after_steps,
        )
        return train(args)

    whole = run(tmp_path / "a")
    run(tmp_path / "b", stop_after_steps=stop_first)
    resumed = run(tmp_path / "b")
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, msg=name)
    log = (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()
    assert sum('"stage": "IV"' in line for line in log) == count_steps
