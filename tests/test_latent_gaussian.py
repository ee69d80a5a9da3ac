"""The Gaussianized latent space: the transform, the streaming fit, distances, the file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.latent.gaussian import (
    CovarianceAccumulator,
    LatentGaussian,
    MomentAccumulator,
    fit_latent_gaussian,
    gaussianity_figure,
    mapping_w_batches,
    to_v,
    to_w,
)

TINY_CFG = GeneratorConfig(
    z_dim=16, w_dim=16, img_resolution=32, num_mapping_layers=2, channel_base=128, channel_max=16
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small shared test machines: intra-op threads on tiny tensors only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LinearGaussianG:
    """A stand-in whose 'mapping' ends in the same leaky ReLU, on an exactly Gaussian v = A z + b,
    so the true mean and covariance of V are known: b and A A^T."""

    def __init__(self, dim: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.z_dim = dim
        self.A = rng.normal(size=(dim, dim)) * rng.uniform(0.2, 2.0, size=(dim, 1))
        self.b = rng.normal(size=dim)
        self.mapping = self._mapping

    def _mapping(self, z, truncation_psi=1.0, truncation_cutoff=None):
        v = z.double() @ torch.from_numpy(self.A).T + torch.from_numpy(self.b)
        return to_w(v).float()[:, None, :].repeat(1, 3, 1)


def test_v_w_are_inverse_and_the_fold_is_slope_5():
    w = torch.tensor([-1.0, -0.2, 0.0, 0.3, 2.0])
    assert torch.equal(to_v(w), torch.tensor([-5.0, -1.0, 0.0, 0.3, 2.0]))
    x = torch.randn(100, 7, dtype=torch.float64)
    torch.testing.assert_close(to_w(to_v(x)), x, rtol=0, atol=1e-15)
    torch.testing.assert_close(to_v(to_w(x)), x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(to_w(to_v(x.numpy())), x.numpy(), atol=1e-15)
    # NVIDIA's lrelu: leaky_relu(0.2) * sqrt(2); to_v undoes the fold, leaving sqrt(2) x pre-activation
    pre = torch.randn(50, dtype=torch.float64)
    post = torch.nn.functional.leaky_relu(pre, 0.2) * 2**0.5
    torch.testing.assert_close(to_v(post), 2**0.5 * pre)


def test_streaming_accumulators_equal_one_pass_numpy_even_far_from_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3001, 5)) * [1, 2, 3, 0.5, 1] + 1e6  # a large offset punishes E[xx]-mm
    x[:, 1] = np.abs(x[:, 1] - 1e6) ** 1.5  # skewed column
    cov, mom = CovarianceAccumulator(5), MomentAccumulator(5)
    for chunk in np.array_split(x, [1, 7, 500, 1800]):
        cov.update(chunk)
        mom.update(chunk)
    np.testing.assert_allclose(cov.mean, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(cov.covariance(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    d = x - x.mean(0)
    m2, m3, m4 = (d**2).mean(0), (d**3).mean(0), (d**4).mean(0)
    np.testing.assert_allclose(mom.skewness(), m3 / m2**1.5, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(mom.excess_kurtosis(), m4 / m2**2 - 3, rtol=1e-6, atol=1e-8)


def test_fit_recovers_a_known_gaussian():
    G = LinearGaussianG(dim=6)
    n = 40_000
    g = fit_latent_gaussian(G, num_samples=n, seed=3, batch=7000)
    true_cov = G.A @ G.A.T
    sd = np.sqrt(np.diag(true_cov))
    # sampling errors: mean ~ sd / sqrt(n), covariance ~ sd_i sd_j sqrt(2 / n); allow 5 sigma
    np.testing.assert_array_less(np.abs(g.mean - G.b), 5 * sd / np.sqrt(n))
    np.testing.assert_array_less(np.abs(g.cov - true_cov), 5 * np.outer(sd, sd) * np.sqrt(2 / n))
    assert g.num_samples == n and g.seed == 3
    # V is exactly Gaussian here, W is not
    summary = g.gaussianity_summary()
    assert summary["v"]["mean_abs_skew"] < 0.05 and summary["v"]["mean_abs_excess_kurtosis"] < 0.1
    assert summary["w"]["mean_abs_skew"] > 10 * summary["v"]["mean_abs_skew"]
    # eigenbasis: descending, orthonormal, reconstructs the covariance
    assert np.all(np.diff(g.eigvals) <= 0)
    np.testing.assert_allclose(g.eigvecs.T @ g.eigvecs, np.eye(6), atol=1e-12)
    np.testing.assert_allclose(g.eigvecs @ np.diag(g.eigvals) @ g.eigvecs.T, g.cov, atol=1e-10)


def test_mahalanobis_and_pca_by_hand():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(4, 4))
    g = LatentGaussian.from_moments(rng.normal(size=4), A @ A.T + 0.1 * np.eye(4), num_samples=10, seed=0)
    v = rng.normal(size=(5, 4))
    d = v - g.mean
    by_hand = np.einsum("ni,ij,nj->n", d, np.linalg.inv(g.cov), d)
    np.testing.assert_allclose(g.mahalanobis_sq(v), by_hand, rtol=1e-10)
    vt = torch.from_numpy(v).float().requires_grad_(True)
    m = g.mahalanobis_sq(vt)
    np.testing.assert_allclose(m.detach().numpy(), by_hand, rtol=1e-4)
    m.sum().backward()  # differentiable, as the projector's prior needs
    np.testing.assert_allclose(vt.grad.numpy(), 2 * d @ np.linalg.inv(g.cov), rtol=1e-3, atol=1e-4)
    c = g.pca_coefficients(v)
    np.testing.assert_allclose(np.square(c).sum(-1), by_hand, rtol=1e-10)
    np.testing.assert_allclose(g.from_pca(c), v, atol=1e-12)
    np.testing.assert_allclose(g.from_pca(g.pca_coefficients(v, False), False), v, atol=1e-12)


def test_save_load_round_trip(tmp_path):
    G = LinearGaussianG(dim=5)
    g = fit_latent_gaussian(G, num_samples=2000, seed=11, batch=512)
    path = tmp_path / "sub" / "gaussian.h5"
    g.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["gaussian.h5"]  # no temporary file left
    h = LatentGaussian.load(path)
    for name in ("mean", "cov", "eigvals", "eigvecs"):
        np.testing.assert_array_equal(getattr(h, name), getattr(g, name))
    assert (h.num_samples, h.seed) == (2000, 11)
    assert h.gaussianity_summary() == g.gaussianity_summary()
    with h5py.File(path, "r") as f:
        assert f.attrs["num_samples"] == 2000 and f.attrs["seed"] == 11
    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("mean", data=np.zeros(3))
    with pytest.raises(ValueError, match="not a latent Gaussian"):
        LatentGaussian.load(bad)


def test_real_generator_fit_and_figure(tmp_path):
    G = init_random_generator(TINY_CFG, seed=3, w_avg_samples=200)
    g = fit_latent_gaussian(G, num_samples=4000, seed=0, batch=1000)
    w = torch.cat(list(mapping_w_batches(G, 1000, seed=99, batch=1000)))
    m = g.mahalanobis_sq(to_v(w.double()))
    assert abs(m.mean().item() / G.w_dim - 1) < 0.15  # a fresh sample sits at ~dim
    assert set(g.gaussianity_summary()) == {"w", "v"}
    out = tmp_path / "fig1.png"
    gaussianity_figure(w.numpy(), out, dims=(0, 1, 2), pair=(0, 1), title="tiny")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
