"""The projector's fast objective against its reference (CPU, tiny generators): the fast
synthesis with explicit per-image noise maps equals the reference with swapped buffers, LPIPS
in two halves equals lpips's own forward, the fast path in float32 projects like the reference
in W, W+ and S, and in bf16 it still converges to about the same reconstructions."""

from __future__ import annotations

import pytest
import torch

from pipeline_lib.generator.fast import FastSynthesis
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.latent.evaluation import psnr
from pipeline_lib.latent.gaussian import fit_latent_gaussian
from pipeline_lib.latent.image_losses import VGG16_FEATURE_CONVS, LpipsLoss, PixelLoss
from pipeline_lib.latent.objective import FastObjective, ReferenceObjective, make_objective, swapped_noise
from pipeline_lib.latent.projector import ProjectorConfig, latent_statistics, noise_buffers, project

TINY_CFG = GeneratorConfig(
    z_dim=16, w_dim=16, img_resolution=32, num_mapping_layers=2, channel_base=128, channel_max=16
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup():
    # noise strengths left non-zero (init_random_generator perturbs them): the noise maps matter
    G = init_random_generator(TINY_CFG, seed=3, w_avg_samples=200)
    gaussian = fit_latent_gaussian(G, num_samples=2000, seed=0)
    stats = latent_statistics(G, num_samples=500, seed=123)
    with torch.no_grad():
        target = G.ws_to_image(G.mapping(torch.randn(2, 16, generator=torch.Generator().manual_seed(1))))
    return G, gaussian, stats, target


@pytest.fixture(scope="module")
def lpips_loss(tmp_path_factory):
    gen = torch.Generator().manual_seed(0)
    chans = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    state = {}
    for i, idx in enumerate(VGG16_FEATURE_CONVS):
        state[f"features.{idx}.weight"] = torch.randn(chans[i + 1], chans[i], 3, 3, generator=gen) * 0.05
        state[f"features.{idx}.bias"] = torch.zeros(chans[i + 1])
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return LpipsLoss(path)


def test_fast_synthesis_takes_per_image_noise_maps(setup):
    G = setup[0]
    gen = torch.Generator().manual_seed(0)
    S, S_rgb = G.styles_from_w(G.mapping(torch.randn(3, 16, generator=gen))[:, 0])
    maps = {name: torch.randn(3, 1, *m.noise_const.shape, generator=gen) for name, m in noise_buffers(G).items()}
    fast = FastSynthesis(G)
    noise = [maps[f"{spec.ada_name}.noise_const"] for spec in G.conv_layers]
    with swapped_noise(G, maps):
        ref = G.synthesize(S, S_rgb, noise_mode="const")
    torch.testing.assert_close(fast(S, S_rgb, noise=noise), ref, atol=1e-4, rtol=1e-4)
    # without maps it is unchanged: the generator's own constant noise
    torch.testing.assert_close(fast(S, S_rgb), G.synthesize(S, S_rgb), atol=1e-4, rtol=1e-4)
    assert (fast(S, S_rgb, noise=noise) - fast(S, S_rgb)).abs().max() > 1e-3  # the maps are used
    with pytest.raises(ValueError, match="one map per conv layer"):
        fast(S, S_rgb, noise=noise[:-1])
    with pytest.raises(ValueError, match="one map per conv layer"):
        fast(S, S_rgb, noise_mode="none", noise=noise)


def test_lpips_in_two_halves_equals_lpips(lpips_loss):
    gen = torch.Generator().manual_seed(1)
    x, y = (torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(2))
    feats = lpips_loss.target_features(y)
    torch.testing.assert_close(lpips_loss.distance(x, feats), lpips_loss(x, y), atol=1e-6, rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = lpips_loss.distance(x, lpips_loss.target_features(y))
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, lpips_loss(x, y), atol=0, rtol=0.05)


def test_make_objective_picks_the_reference_only_for_float32_eager(setup):
    G = setup[0]
    assert isinstance(make_objective(G, PixelLoss(), "float32", False), ReferenceObjective)
    assert isinstance(make_objective(G, PixelLoss(), "bfloat16", False), FastObjective)
    with pytest.raises(ValueError, match="precision"):
        ProjectorConfig(precision="float16")
    with pytest.raises(ValueError, match="computes in"):
        project(G, setup[3], ProjectorConfig(loss="pixel"), objective=FastObjective(G, PixelLoss(), "bfloat16", False))


@pytest.mark.parametrize("space", ["w", "w+", "s"])
def test_fast_float32_projects_like_the_reference(setup, lpips_loss, space):
    G, gaussian, stats, target = setup
    cfg = ProjectorConfig(space=space, num_steps=8, loss="lpips", w_avg_samples=500, prior_weight=1e-3)
    prior = gaussian if space != "s" else None
    ref = project(G, target, cfg, prior, seeds=[4, 5], stats=stats, image_loss=lpips_loss)
    fast = project(G, target, cfg, prior, seeds=[4, 5], stats=stats,
                   objective=FastObjective(G, lpips_loss, "float32", compile=False))  # fmt: skip
    torch.testing.assert_close(fast.images, ref.images, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(fast.S, ref.S, atol=2e-4, rtol=1e-3)
    assert list(fast.losses) == list(ref.losses) and set(fast.noise) == set(ref.noise)
    for k in ref.losses:
        torch.testing.assert_close(fast.losses[k], ref.losses[k], atol=1e-5, rtol=1e-3)
    for k in ref.noise:
        torch.testing.assert_close(fast.noise[k], ref.noise[k], atol=2e-4, rtol=1e-3)


def test_bfloat16_converges_like_float32(setup):
    G, gaussian, stats, target = setup
    cfg = ProjectorConfig(space="w+", num_steps=60, loss="pixel", w_avg_samples=500, prior_weight=1e-4)
    ref = project(G, target, cfg, gaussian, seeds=[0, 1], stats=stats)
    fast = project(G, target, ProjectorConfig(**{**cfg.__dict__, "precision": "bfloat16"}), gaussian, seeds=[0, 1],
                   stats=stats)  # fmt: skip
    start = psnr(G.ws_to_image(stats["w_avg"].repeat(2, G.num_ws, 1)), target)
    p_ref, p_fast = psnr(ref.images, target), psnr(fast.images, target)
    # measured: from 7.8 / 5.1 dB at w_avg, float32 13.06 / 13.99 dB and bf16 13.06 / 13.99 dB; the
    # two reconstructions 53.3 / 46.7 dB apart
    assert (p_ref - start > 5).all() and (p_fast - start > 5).all(), (start, p_ref, p_fast)
    assert ((p_fast - p_ref).abs() < 1.5).all(), (p_ref, p_fast)
    assert (psnr(fast.images, ref.images) > 35).all()


def test_stylegan3_projects_on_the_fast_path_without_noise_maps():
    """StyleGAN3 has no noise buffers; its synthesis is whatever `fast_synthesis` gives it (the
    StyleGAN3 fast path, bf16 in NVIDIA's fp16 layers), so both precisions agree to bf16 rounding."""
    from pipeline_lib.generator.stylegan3 import init_random_stylegan3
    from pipeline_lib.generator.stylegan3_layers import StyleGAN3Config

    tiny = {"z_dim": 8, "w_dim": 8, "img_resolution": 16, "channel_base": 64, "channel_max": 4, "num_layers": 6,
            "margin_size": 4}  # fmt: skip
    G = init_random_stylegan3(StyleGAN3Config(**tiny), seed=0, w_avg_samples=256)
    stats = latent_statistics(G, 256, 123)
    with torch.no_grad():
        target = G.synthesize(*G.styles(G.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))))
    for space in ("w", "w+", "s"):
        runs = [project(G, target, ProjectorConfig(space=space, num_steps=3, loss="pixel", w_avg_samples=256,
                                                   precision=precision), stats=stats)
                for precision in ("float32", "bfloat16")]  # fmt: skip
        assert runs[1].noise == {} and runs[1].S.shape == runs[0].S.shape
        assert (psnr(runs[1].images, runs[0].images) > 35).all()  # measured max abs difference 0.011
