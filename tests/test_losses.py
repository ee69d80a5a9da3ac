"""Each loss term of M_ref's training (Eqs. 7-12) against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline_lib.training.losses import (
    LossWeights,
    euler_loss,
    identity_loss,
    landmark_loss,
    reconstruction_loss,
    style_negative_log_likelihood,
    total_loss,
)


def test_identity_loss_is_the_mean_absolute_difference():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    assert identity_loss(a, b).item() == pytest.approx((0.5 + 0 + 0 + 2) / 4)
    assert identity_loss(a, a).item() == 0


def test_landmark_loss_uses_the_51_inner_points_in_2d():
    ref = torch.zeros(2, 68, 3)
    out = ref.clone()
    out[:, :17, :2] += 100.0  # jaw line: ignored
    out[:, :, 2] += 50.0  # depth: ignored
    assert landmark_loss(ref, out).item() == 0
    out[:, 17:, 0] += 3.0
    out[:, 17:, 1] += 4.0
    assert landmark_loss(ref, out).item() == pytest.approx((9 + 16) / 2)


def test_euler_loss_is_the_mean_squared_angle_error():
    ref = torch.tensor([[10.0, 0.0, -5.0]])
    out = torch.tensor([[13.0, 0.0, -1.0]])
    assert euler_loss(ref, out).item() == pytest.approx((9 + 0 + 16) / 3)


def test_reconstruction_loss_mixes_ms_ssim_and_l1_with_alpha():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 3, 192, 192, generator=g) * 1.6 - 0.8
    assert reconstruction_loss(ref, ref).item() == pytest.approx(0, abs=1e-6)
    out = ref + 0.2  # +0.1 in [0, 1]
    assert reconstruction_loss(ref, out, alpha=0.0).item() == pytest.approx(0.1, rel=1e-5)
    pure_ssim = reconstruction_loss(ref, out, alpha=1.0).item()
    assert 0 < pure_ssim < 1
    mixed = reconstruction_loss(ref, out, alpha=0.84).item()
    assert mixed == pytest.approx(0.84 * pure_ssim + 0.16 * 0.1, rel=1e-5)


def test_style_nll_is_the_gaussian_negative_log_likelihood_per_channel():
    mean = torch.tensor([0.0, 1.0, -2.0])
    std = torch.tensor([1.0, 2.0, 0.5])
    S = (mean + std)[None]  # one standard deviation away on every channel
    expected = 0.5 + torch.log(std).mean().item() + 0.5 * math.log(2 * math.pi)
    assert style_negative_log_likelihood(S, mean, std).item() == pytest.approx(expected, rel=1e-6)
    farther = style_negative_log_likelihood((mean + 3 * std)[None], mean, std).item()
    assert farther - style_negative_log_likelihood(S, mean, std).item() == pytest.approx(4.0, rel=1e-6)


def test_total_loss_weights_and_the_reconstruction_and_optional_terms():
    terms = {k: torch.tensor(v) for k, v in dict(identity=2.0, landmark=100.0, euler=10.0, reconstruction=0.5, style_nll=3.0).items()}
    plain = LossWeights()
    assert total_loss(terms, plain, reconstruction_step=False).item() == pytest.approx(2 + 0.01 * 100)
    assert total_loss(terms, plain, reconstruction_step=True).item() == pytest.approx(2 + 1 + 0.02 * 0.5)
    final = LossWeights(lambda_reg=0.1, euler=True)
    assert total_loss(terms, final, reconstruction_step=True).item() == pytest.approx(2 + 0.01 * 110 + 0.01 + 0.3)
