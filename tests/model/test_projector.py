"""Pooling equals its upstream definitions (interpolation), 2d equals 2×2 average pooling, and
the projector's names and shapes are the checkpoint's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.projector import build_projector, num_pooled_tokens, pool_features


def _upstream_2d(features: torch.Tensor, g: int, out: int) -> torch.Tensor:
    """LongLLaVA clip_encoder.py's 2d resampling, per image, generalised from 24 -> 12."""
    return torch.stack(
        [
            F.interpolate(f.permute(1, 0).view(-1, g, g).unsqueeze(0), size=(out, out), mode="bilinear")
            .view(-1, out * out)
            .permute(1, 0)
            for f in features
        ]
    )


def _upstream_1d(features: torch.Tensor, out: int) -> torch.Tensor:
    return torch.stack(
        [
            F.interpolate(f.unsqueeze(0).permute(0, 2, 1), size=(out,), mode="linear").squeeze(0).permute(1, 0)
            for f in features
        ]
    )


def test_2d_pooling_of_clip_l_grid_is_2x2_average_and_144_tokens():
    features = torch.randn(3, 576, 8, generator=torch.Generator().manual_seed(0))
    pooled = pool_features(features, "2d")
    assert pooled.shape == (3, 144, 8) and num_pooled_tokens(576, "2d") == 144
    grid = features.view(3, 24, 24, 8)
    by_hand = (grid[:, 0::2, 0::2] + grid[:, 0::2, 1::2] + grid[:, 1::2, 0::2] + grid[:, 1::2, 1::2]) / 4
    torch.testing.assert_close(pooled, by_hand.reshape(3, 144, 8))
    torch.testing.assert_close(pooled, _upstream_2d(features, 24, 12))


@pytest.mark.parametrize(("g", "out"), [(5, 3), (3, 2), (1, 1)])
def test_2d_pooling_of_odd_grids_interpolates(g, out):
    features = torch.randn(2, g * g, 4, generator=torch.Generator().manual_seed(g))
    pooled = pool_features(features, "2d")
    assert pooled.shape == (2, out * out, 4) and num_pooled_tokens(g * g, "2d") == out * out
    torch.testing.assert_close(pooled, _upstream_2d(features, g, out))


def test_2d_pooling_rejects_a_non_square_token_count():
    with pytest.raises(ValueError, match="cls_patch"):
        pool_features(torch.zeros(1, 577, 4), "2d")


def test_1d_pooling_is_linear_interpolation_not_a_4_token_mean():
    features = torch.randn(2, 576, 6, generator=torch.Generator().manual_seed(1))
    pooled = pool_features(features, "1d")
    assert pooled.shape == (2, 144, 6) and num_pooled_tokens(576, "1d") == 144
    torch.testing.assert_close(pooled, _upstream_1d(features, 144))
    # Output i samples position 4i + 1.5: the mean of tokens 4i+1 and 4i+2 only.
    torch.testing.assert_close(pooled, (features[:, 1::4] + features[:, 2::4]) / 2)


def test_1d_pooling_with_cls_gives_upstreams_144_tokens():
    assert num_pooled_tokens(577, "1d") == 144
    assert pool_features(torch.zeros(1, 577, 2), "1d").shape == (1, 144, 2)


def test_none_pooling_is_identity():
    features = torch.randn(1, 10, 3)
    assert pool_features(features, "none") is features and num_pooled_tokens(10, "none") == 10


def test_pooling_keeps_bfloat16():
    assert pool_features(torch.randn(1, 16, 4, dtype=torch.bfloat16), "2d").dtype == torch.bfloat16


@pytest.mark.parametrize("pooling", ["2D", "avg", ""])
def test_unknown_pooling_is_rejected(pooling):
    with pytest.raises(ValueError, match="resamplePooling"):
        pool_features(torch.zeros(1, 16, 2), pooling)
    with pytest.raises(ValueError, match="resamplePooling"):
        num_pooled_tokens(16, pooling)


def test_mlp2x_gelu_names_shapes_and_math():
    torch.manual_seed(0)
    projector = build_projector("mlp2x_gelu", 12, 20)
    shapes = {k: tuple(v.shape) for k, v in projector.state_dict().items()}
    assert shapes == {"0.weight": (20, 12), "0.bias": (20,), "2.weight": (20, 20), "2.bias": (20,)}
    x = torch.randn(2, 5, 12)
    first, second = projector[0], projector[2]
    torch.testing.assert_close(projector(x), second(F.gelu(first(x))))


def test_linear_and_deeper_mlp_names():
    assert {k: tuple(v.shape) for k, v in build_projector("linear", 12, 20).state_dict().items()} == {
        "weight": (20, 12),
        "bias": (20,),
    }
    assert set(build_projector("mlp3x_gelu", 12, 20).state_dict()) == {
        f"{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")
    }


def test_wrong_width_checkpoint_is_detectable_by_shape():
    projector = build_projector("mlp2x_gelu", 1024, 64)
    wrong = build_projector("mlp2x_gelu", 768, 64).state_dict()
    with pytest.raises(RuntimeError, match=r"0\.weight.*size mismatch|size mismatch.*0\.weight"):
        projector.load_state_dict(wrong)


@pytest.mark.parametrize("kind", ["mlp", "mlp0x_gelu", "identity", "mlp2x_relu"])
def test_unknown_projector_type_is_rejected(kind):
    with pytest.raises(ValueError, match="mm_projector_type"):
        build_projector(kind, 4, 4)
