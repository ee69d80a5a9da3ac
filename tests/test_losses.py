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


def test_landmark_loss_is_eq8_the_l2_norm_of_the_51_inner_3d_points():
    ref = torch.zeros(2, 68, 3)
    out = ref.clone()
    out[:, :17] += 100.0  # jaw line (points 1-17): ignored
    assert landmark_loss(ref, out).item() == 0
    # Image 0: every inner point off by (1, 2, 2) -> ||.||_2 = sqrt(51 * 9); image 1: one point off in z by 4.
    out[0, 17:] += torch.tensor([1.0, 2.0, 2.0])
    out[1, 40, 2] += 4.0
    expected = (math.sqrt(51 * 9) + 4.0) / 2  # one norm per image, mean over the batch
    assert landmark_loss(ref, out).item() == pytest.approx(expected, rel=1e-6)
    out[1, 40, 2] -= 4.0  # depth counts like x and y: (1, 2, 2) and (1, 2, -2) differ from ref equally
    out[1, 17:] += torch.tensor([1.0, 2.0, -2.0])
    assert landmark_loss(ref, out).item() == pytest.approx(math.sqrt(51 * 9), rel=1e-6)
    with pytest.raises(ValueError):
        landmark_loss(ref[..., :2], out[..., :2])


def test_landmark_loss_has_a_zero_gradient_at_zero_difference():
    ref = torch.rand(3, 68, 3)
    out = ref.clone().requires_grad_(True)
    landmark_loss(ref, out).backward()
    assert torch.isfinite(out.grad).all() and (out.grad == 0).all()


def test_euler_loss_is_eq8_the_l2_norm_of_the_angles():
    ref = torch.tensor([[10.0, 0.0, -5.0], [0.0, 0.0, 0.0]])
    out = torch.tensor([[13.0, 0.0, -1.0], [0.0, 12.0, 0.0]])
    assert euler_loss(ref, out).item() == pytest.approx((5.0 + 12.0) / 2)


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


def test_style_nll_is_eq12_summed_over_channels_and_averaged_over_the_batch():
    mean = torch.tensor([0.0, 1.0, -2.0])
    std = torch.tensor([1.0, 2.0, 0.5])
    one_sigma = (mean + std)[None]  # one standard deviation away on each of the 3 channels
    assert style_negative_log_likelihood(one_sigma, mean, std).item() == pytest.approx(3 * 0.5)  # a sum, not a mean
    S = torch.tensor([[1.0, 1.0, -2.0], [0.0, 5.0, -1.0]])
    by_hand = [1.0 / 2, (4.0**2 / (2 * 4.0)) + (1.0**2 / (2 * 0.25))]  # [(1-0)^2/2], [(5-1)^2/(2*4) + (1)^2/(2*0.25)]
    assert style_negative_log_likelihood(S, mean, std).item() == pytest.approx(sum(by_hand) / 2)
    assert style_negative_log_likelihood(mean[None], mean, std).item() == 0


def test_total_loss_weights_and_the_reconstruction_and_optional_terms():
    terms = {
        k: torch.tensor(v)
        for k, v in {"identity": 2.0, "landmark": 100.0, "euler": 10.0, "reconstruction": 0.5, "style_nll": 3.0}.items()
    }
    plain = LossWeights()
    assert total_loss(terms, plain, reconstruction_step=False).item() == pytest.approx(2 + 0.01 * 100)
    assert total_loss(terms, plain, reconstruction_step=True).item() == pytest.approx(2 + 1 + 0.02 * 0.5)
    final = LossWeights(lambda_reg=0.1, euler=True)
    assert total_loss(terms, final, reconstruction_step=True).item() == pytest.approx(2 + 0.01 * 110 + 0.01 + 0.3)
