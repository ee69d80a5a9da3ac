"""The fast inference path against the official fixtures and the reference generator."""

import copy
import json

import pytest
import torch

from pipeline_lib.dataset.synthesis import SynthesisSettings
from pipeline_lib.generator.fast import PRECISIONS, FastSynthesis, flops_per_image, psnr
from pipeline_lib.generator.stylegan2 import Generator, GeneratorConfig
from pipeline_lib.images import to_uint8_hwc
from pipeline_lib.settings import DatasetSettings, load_config
from pipeline_lib.settings.paper import SYNTHESIS_PRECISIONS


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


@pytest.mark.parametrize("up_impl", ["phase2x2", "phases4", "transpose"])
@pytest.mark.parametrize("rgb_impl", ["conv", "bmm"])
def test_other_upsampling_and_torgb_forms_match_official_in_float32(small_G, cases, up_impl, rgb_impl):
    fast = FastSynthesis(small_G, up_impl=up_impl, rgb_impl=rgb_impl, channels_last=True)
    S, S_rgb = small_G.styles(cases["ws"])
    assert (fast(S, S_rgb) - cases["img"]).abs().max() < 1e-4


# Measured on this fixture (CPU, torch 2.13): float16 65.9 dB, float16-mixed with blocks 16-32 in
# fp16 69.4 dB, bfloat16 45.6 dB. The bounds leave about 5 dB of margin.
@pytest.mark.parametrize("mode, kwargs, bound", [("float16", {}, 60.0), ("float16-mixed", {"num_fp16_res": 2}, 63.0)])
def test_float16_modes_are_close_to_float32_and_deterministic(small_G, cases, mode, kwargs, bound):
    S, S_rgb = small_G.styles(cases["ws"])
    first = FastSynthesis(small_G, mode, **kwargs)(S, S_rgb)
    again = FastSynthesis(small_G, mode, **kwargs)(S, S_rgb)
    assert torch.equal(first, again)
    assert psnr(first, cases["img"]) > bound
    assert psnr(first, cases["img"]) > psnr(FastSynthesis(small_G, "bfloat16")(S, S_rgb), cases["img"]) + 10


def test_mixed_mode_runs_nvidias_fp16_blocks(small_G, fixture_dir):
    fast = FastSynthesis(small_G, "float16-mixed", num_fp16_res=2)
    assert [(p.resolution, p.dtype) for p in fast.convs if p.dtype == torch.float16] == [(16, torch.float16)] * 2 + [
        (32, torch.float16)
    ] * 2
    assert all(p.dtype == torch.float32 for p in FastSynthesis(small_G, "float16-mixed").convs)  # its num_fp16_res 0
    paper256 = json.loads((fixture_dir / "paper256_structure.json").read_text())
    cfg = GeneratorConfig()  # paper256's shape; num_fp16_res not stored -> train.py's 4
    assert [r for r in cfg.block_resolutions if r >= cfg.fp16_resolution()] == paper256["fp16_block_resolutions"]


def test_float16_prescaling_keeps_huge_weights_and_styles_finite(small_G, cases):
    """Demodulation makes the image invariant to the scale of a conv's weight and of its styles,
    so weights x 1e4 and styles x 1e3 must give the same image; unscaled fp16 would overflow."""
    big = copy.deepcopy(small_G)
    with torch.no_grad():
        for spec in big.conv_layers:
            big.module_of(spec).weight.mul_(1e4)
    S, S_rgb = small_G.styles(cases["ws"])
    out = FastSynthesis(big, "float16")(S * 1e3, S_rgb)
    assert torch.isfinite(out).all() and psnr(out, cases["img"]) > 60.0


def test_precision_names_agree_with_the_settings():
    assert tuple(PRECISIONS) == SYNTHESIS_PRECISIONS
    assert SynthesisSettings.defaults().dtype in PRECISIONS
    with pytest.raises(ValueError, match="dataset.dtype must be one of"):
        DatasetSettings.parse({**load_config()["dataset"], "dtype": "float8"})
