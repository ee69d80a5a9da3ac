"""Log-compression of large PCA coefficients (our design; see compression.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.latent.compression import compress_w, log_compress, log_expand, sample_ws
from pipeline_lib.latent.gaussian import fit_latent_gaussian

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


@pytest.mark.parametrize("tau,scale", [(2.0, 1.0), (0.5, 0.3), (3.0, 2.0)])
def test_identity_inside_continuous_monotone_odd(tau, scale):
    c = np.linspace(-4 * tau - 5, 4 * tau + 5, 20001)
    f = log_compress(c, tau, scale)
    inside = np.abs(c) <= tau
    np.testing.assert_array_equal(f[inside], c[inside])
    assert np.all(np.diff(f) > 0)  # strictly monotone
    np.testing.assert_allclose(log_compress(-c, tau, scale), -f, atol=0)  # odd
    assert np.all(np.abs(f) <= np.abs(c))  # never expands
    # continuous and C1 at +-tau: one-sided slopes both -> 1
    for t in (tau, -tau):
        eps = 1e-6
        assert abs(log_compress(t + eps, tau, scale) - log_compress(t, tau, scale) - eps) < 1e-10
        assert abs(log_compress(t, tau, scale) - log_compress(t - eps, tau, scale) - eps) < 1e-10
    # the largest jump between neighbouring grid points is the grid step (no discontinuity)
    assert np.max(np.diff(f)) <= np.diff(c)[0] * (1 + 1e-9)
    np.testing.assert_allclose(log_expand(f, tau, scale), c, rtol=1e-12, atol=1e-12)
    t = torch.from_numpy(c)
    torch.testing.assert_close(log_compress(t, tau, scale), torch.from_numpy(f))


def test_values_and_bad_arguments():
    assert log_compress(np.array(5.0), 2.0) == pytest.approx(2 + np.log(4.0))
    with pytest.raises(ValueError):
        log_compress(np.zeros(2), tau=-1)
    with pytest.raises(ValueError):
        log_compress(np.zeros(2), scale=0)


def test_sample_ws_methods():
    G = init_random_generator(TINY_CFG, seed=3, w_avg_samples=200)
    g = fit_latent_gaussian(G, num_samples=3000, seed=0)
    raw = sample_ws(G, g, seed=5, num=200, method="raw")
    trunc = sample_ws(G, g, seed=5, num=200, method="truncation", psi=0.5)
    comp = sample_ws(G, g, seed=5, num=200, method="log_compression", tau=1.5)
    assert raw.shape == trunc.shape == comp.shape == (200, G.w_dim)
    torch.testing.assert_close(trunc, G.mapping.w_avg.lerp(raw, 0.5))
    c_raw = g.pca_coefficients(g.to_v(raw.double()))
    c_comp = g.pca_coefficients(g.to_v(comp.double()))
    inside = (c_raw.abs() <= 1.5).all(dim=1)
    assert 0 < inside.sum() < 200
    torch.testing.assert_close(comp[inside], raw[inside], rtol=0, atol=1e-5)  # typical samples untouched
    assert c_comp.abs().max() <= 1.5 + np.log1p(c_raw.abs().max().item() - 1.5) + 1e-4
    assert (g.mahalanobis_sq(g.to_v(comp.double())) <= g.mahalanobis_sq(g.to_v(raw.double())) + 1e-6).all()
    # only the leading components
    lead = compress_w(raw, g, tau=1.5, components=3)
    c_lead = g.pca_coefficients(g.to_v(lead.double()))
    torch.testing.assert_close(c_lead[:, 3:], c_raw[:, 3:], rtol=0, atol=1e-4)
    with pytest.raises(ValueError):
        sample_ws(G, g, seed=5, num=2, method="bogus")
    with pytest.raises(ValueError):
        sample_ws(G, None, seed=5, num=2, method="log_compression")
