"""Training support: the differentiable scan against the reference scan (values and gradients), and
backward through the whole model (Mamba conv and scan, attention, MoE, CLIP tower, projector)."""

from __future__ import annotations

import pytest
import torch

import model.mamba as mamba_mod
from model import load_model
from model.config import JambaConfig
from model.jamba import JambaLM
from model.projector import pool_features
from model.scan import scan_differentiable, scan_reference
from model.testing import write_tiny_longllava

TRAIN_LM = dict(
    vocab_size=61,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    attn_layer_period=4,
    attn_layer_offset=2,
    expert_layer_period=2,
    expert_layer_offset=1,
    num_experts=4,
    num_experts_per_tok=2,
    mamba_d_state=8,
    mamba_d_conv=4,
    mamba_expand=2,
)


def _inputs(b=2, l=21, d=6, n=4, seed=0, dtype=torch.float32, delta_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, d, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(b, l, d, generator=g) - 1) * delta_scale
    A = -torch.exp(torch.randn(d, n, generator=g))
    B, C = torch.randn(b, l, n, generator=g), torch.randn(b, l, n, generator=g)
    state = torch.randn(b, d, n, generator=g)
    return [t.to(dtype).requires_grad_() for t in (x, delta, A, B, C, state)]


@pytest.mark.parametrize("l", [1, 7, 8, 21])
@pytest.mark.parametrize("b", [1, 3])
def test_differentiable_scan_equals_reference(l, b):
    inputs = _inputs(b=b, l=l)
    y_ref, h_ref = scan_reference(*inputs)
    y, h = scan_differentiable(*inputs)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("l", [1, 5])
def test_differentiable_scan_gradcheck(l):
    inputs = _inputs(b=2, l=l, d=2, n=3, dtype=torch.float64)
    assert torch.autograd.gradcheck(scan_differentiable, inputs)


@pytest.mark.parametrize("delta_scale", [1.0, 30.0])
def test_differentiable_scan_gradients_equal_reference(delta_scale):
    """Also with large steps, where exp(-A·S) of a naive cumulative form would overflow."""
    grads = []
    for scan in (scan_reference, scan_differentiable):
        inputs = _inputs(l=37, delta_scale=delta_scale)
        y, h = scan(*inputs)
        (y.square().mean() + h.sum()).backward()
        grads.append([t.grad for t in inputs])
    for ref, got in zip(*grads, strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def _train_lm(seed=0) -> JambaLM:
    torch.manual_seed(seed)
    lm = JambaLM(JambaConfig.from_dict(TRAIN_LM))
    for module in lm.modules():  # nn.Linear/Embedding init; A_log and D by reset_ssm_parameters
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            torch.nn.init.normal_(module.weight, std=0.2)
    return lm


def test_training_forward_equals_inference_forward():
    lm = _train_lm()
    ids = torch.randint(0, 61, (2, 19), generator=torch.Generator().manual_seed(1))
    train_logits = lm(ids, logits_to_keep=None)
    assert train_logits.requires_grad
    with torch.no_grad():
        infer_logits = lm(ids, logits_to_keep=None)
    torch.testing.assert_close(train_logits, infer_logits, atol=1e-4, rtol=1e-4)


def test_inference_paths_are_kept_without_grad(monkeypatch):
    """Frozen weights (as load_model returns them) or no_grad: never the training twins."""

    def forbidden(*args):
        raise AssertionError("training path used for inference")

    monkeypatch.setattr(mamba_mod, "scan_differentiable", forbidden)
    monkeypatch.setattr(mamba_mod, "scan_differentiable_compiled", forbidden)
    lm = _train_lm().requires_grad_(False)
    ids = torch.randint(0, 61, (1, 9))
    lm(ids)
    with torch.no_grad():
        _train_lm()(ids)


@pytest.mark.parametrize("scan", [None, scan_differentiable], ids=["automatic", "pytorch"])
def test_backward_through_lm_matches_reference_scan(scan):
    """None: the automatic training choice (on the CPU the compiled twin of scan_differentiable
    where the kernels built); scan_differentiable forced: the PyTorch path."""
    ids = torch.randint(0, 61, (2, 23), generator=torch.Generator().manual_seed(2))
    grads = []
    for impl in (scan, scan_reference):
        lm = _train_lm()
        lm.set_scan(impl)
        logits = lm(ids[:, :-1], logits_to_keep=None)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        grads.append({name: p.grad for name, p in lm.named_parameters()})
    for name, ref in grads[1].items():
        got = grads[0][name]
        if ref is None:  # an expert no token was routed to
            assert got is None, name
            continue
        assert torch.isfinite(got).all(), name
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-3, msg=name)
    used = [name for name, g in grads[0].items() if g is not None and g.abs().sum() > 0]
    for part in ("mamba.A_log", "mamba.conv1d.weight", "self_attn.q_proj", "feed_forward.router", "embed_tokens"):
        assert any(part in name for name in used), part


def test_backward_through_vision_and_projector(tmp_path):
    model = load_model(write_tiny_longllava(tmp_path / "ckpt", shards=1)).requires_grad_(True).train()
    pixels = torch.randn(3, 3, model.image_size, model.image_size)
    features = model.projector(pool_features(model.vision(pixels), model.pooling))  # [3, t, e]
    text = model.lm.embed(torch.tensor([[5, 6, 7]]))
    embeds = torch.cat([text, features.reshape(1, -1, features.shape[-1]), text], dim=1)
    logits = model.lm(inputs_embeds=embeds, logits_to_keep=None)
    logits.logsumexp(-1).mean().backward()
    for module in (model.projector, model.vision, model.lm):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
