"""The fast inference path against the official fixtures and the reference generator."""

import pytest
import torch

from pipeline_lib.generator.fast import FastSynthesis, flops_per_image, psnr
from pipeline_lib.generator.stylegan2 import Generator, GeneratorConfig
from pipeline_lib.images import to_uint8_hwc


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_float32_matches_official(small_G, cases, channels_last):
    fast = FastSynthesis(small_G, channels_last=channels_last)
    S, S_rgb = small_G.styles(cases["ws"])
    assert (fast(S, S_rgb) - cases["img"]).abs().max() < 1e-4
    assert (fast(S, S_rgb, noise_mode="none") - cases["img_noise_none"]).abs().max() < 1e-4
    with pytest.raises(ValueError, match="noise_mode"):
        fast(S, S_rgb, noise_mode="random")


def test_fast_bfloat16_stays_close_to_float32(small_G, cases):
    fast = FastSynthesis(small_G, dtype=torch.bfloat16)
    S, S_rgb = small_G.styles(cases["ws"])
    out = fast(S, S_rgb)
    assert out.dtype == torch.float32
    assert psnr(out, cases["img"]) > 40


def test_uint8_conversion_is_contiguous_nhwc_and_rounds_like_nvidia():
    img = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 1.5]).reshape(1, 1, 1, 6).repeat(2, 3, 1, 1)
    u8 = to_uint8_hwc(img)
    assert u8.shape == (2, 1, 6, 3) and u8.is_contiguous()
    assert u8[0, 0, :, 0].tolist() == [0, 64, 128, 255, 255, 255]


def test_paper256_costs_about_56_gflop_per_image():
    with torch.device("meta"):
        G = Generator(GeneratorConfig())
    assert 56e9 < flops_per_image(G) < 57e9
