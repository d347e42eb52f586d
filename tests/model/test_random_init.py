"""Random parameter values by name (model/random_init.py): each kind of parameter in its range,
weights scaled by their fan-in, and a seed that names the values."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model.random_init import DT_MAX, DT_MIN, mamba_dt_bias, random_value, randomize_parameters


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_each_kind_of_parameter_in_its_range():
    a_log = random_value("model.layers.0.mamba.A_log", (64, 16), _g())
    assert math.log(0.5) <= a_log.min() and a_log.max() <= math.log(12.0)
    step = F.softplus(random_value("model.layers.0.mamba.dt_proj.bias", (4096,), _g()))
    assert step.min() >= DT_MIN * 0.999 and step.max() <= DT_MAX * 1.001
    assert torch.equal(F.softplus(mamba_dt_bias((4096,), _g())), step)
    for name in ("model.layers.0.mamba.b_layernorm.weight", "vision_model.pre_layrnorm.weight", "mamba.D", "D"):
        value = random_value(name, (4096,), _g())
        assert abs(value.mean() - 1) < 0.05 and abs(value.std() - 0.3) < 0.05, name
    bias = random_value("vision_model.pre_layrnorm.bias", (4096,), _g())
    assert abs(bias.mean()) < 0.05 and abs(bias.std() - 0.5) < 0.05


def test_weights_are_scaled_by_their_fan_in():
    def std(name: str, shape: tuple[int, ...]) -> float:
        return random_value(name, shape, _g()).std().item()

    assert abs(std("q_proj.weight", (256, 64)) - 1.5 / 8) < 0.01  # [out, in]
    assert abs(std("experts.gate_up_proj", (4, 128, 64)) - 1.5 / 8) < 0.01  # [E, out, in]
    assert abs(std("patch_embedding.weight", (64, 4, 4, 4)) - 1.5 / 8) < 0.01  # [out, in, kh, kw]


def test_the_seed_names_the_values():
    def randomized(seed: int) -> torch.Tensor:
        module = torch.nn.Linear(8, 4)
        randomize_parameters(module, seed)
        return torch.cat([p.flatten() for p in module.parameters()])

    assert torch.equal(randomized(3), randomized(3)) and not torch.equal(randomized(3), randomized(4))
