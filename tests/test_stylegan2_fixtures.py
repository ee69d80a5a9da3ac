"""Our generator against NVIDIA's official StyleGAN2-ADA outputs (float32, atol 1e-4), with the
official up-sampling steps and with their polyphase rewrite."""

import pytest
import torch

from pipeline_lib.generator.stylegan2 import Generator, GeneratorConfig

ATOL = 1e-4
LAYERS = [
    "b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.conv1", "b16.torgb",
    "b32.conv0", "b32.conv1", "b32.torgb",
]  # fmt: skip


@pytest.fixture(params=["transpose", "polyphase"])
def small_G(request, small_state_dict, small_kwargs):
    """Every fixture test runs on both up-sampling implementations."""
    G = Generator(GeneratorConfig.from_official_kwargs(small_kwargs)).set_up_impl(request.param)
    G.load_state_dict(small_state_dict, strict=True)
    return G.eval().requires_grad_(False)


def max_err(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_mapping_matches_official(small_G, cases):
    ws = small_G.mapping(cases["z"])
    assert max_err(ws[:, 0], cases["w"]) < ATOL
    assert max_err(ws, cases["ws"]) < ATOL


def test_truncation_matches_official(small_G, cases):
    ws = small_G.mapping(cases["z"], truncation_psi=0.7)
    assert max_err(ws, cases["ws_psi0.7"]) < ATOL
    assert max_err(small_G.ws_to_image(ws), cases["img_psi0.7"]) < ATOL


def test_truncation_cutoff_only_touches_first_rows(small_G, cases):
    full = small_G.mapping(cases["z"])
    cut = small_G.mapping(cases["z"], truncation_psi=0.5, truncation_cutoff=3)
    assert torch.equal(cut[:, 3:], full[:, 3:])
    assert max_err(cut[:, :3], small_G.mapping.w_avg.lerp(full[:, :3], 0.5)) < 1e-6


@pytest.mark.parametrize("layer", LAYERS)
def test_per_layer_styles_match_official(small_G, cases, layer):
    spec = next(s for s in small_G.layers if s.short_name == layer)
    S, S_rgb = small_G.styles(cases["ws"])
    source = S if spec.kind == "conv" else S_rgb
    ours = source[:, spec.offset : spec.offset + spec.style_dim]
    assert max_err(ours, cases[f"styles.synthesis.{layer}"]) < ATOL


def test_concatenated_styles_match_official(small_G, cases):
    S, S_rgb = small_G.styles(cases["ws"])
    assert max_err(S, cases["styles_conv_concat"]) < ATOL
    assert max_err(S_rgb, cases["styles_torgb_concat"]) < ATOL


def test_image_and_every_block_match_official(small_G, cases):
    img, blocks = small_G.synthesize(*small_G.styles(cases["ws"]), noise_mode="const", return_blocks=True)
    assert max_err(img, cases["img"]) < ATOL
    for res, (x, block_img) in blocks.items():
        assert max_err(x, cases[f"block_x.b{res}"]) < ATOL, f"block b{res} x"
        assert max_err(block_img, cases[f"block_img.b{res}"]) < ATOL, f"block b{res} img"


def test_forward_equals_mapping_styles_synthesize(small_G, cases):
    assert max_err(small_G(cases["z"]), cases["img"]) < ATOL


def test_noise_none_matches_official(small_G, cases):
    img = small_G.synthesize(*small_G.styles(cases["ws"]), noise_mode="none")
    assert max_err(img, cases["img_noise_none"]) < ATOL
    assert max_err(img, cases["img"]) > 1e-3  # the case really differs from const noise


def test_style_offset_matches_official(small_G, cases):
    S, S_rgb = small_G.styles(cases["ws"])
    spec = next(s for s in small_G.layers if s.short_name == "b4.conv1")
    dS = torch.zeros_like(S)
    dS[:, spec.offset : spec.offset + spec.style_dim] = cases["style_offset.synthesis.b4.conv1"]
    assert max_err(small_G.synthesize(S + dS, S_rgb), cases["img_style_offset"]) < ATOL


@pytest.mark.parametrize("up_impl", ["transpose", "polyphase"])
def test_conv_clamp_matches_official(small_state_dict, small_kwargs, cases, up_impl):
    kwargs = {**small_kwargs, "synthesis_kwargs": {**small_kwargs["synthesis_kwargs"], "conv_clamp": 1.5}}
    G = Generator(GeneratorConfig.from_official_kwargs(kwargs)).set_up_impl(up_impl)
    G.load_state_dict(small_state_dict)
    with torch.no_grad():
        img = G.ws_to_image(cases["ws"])
    assert max_err(img, cases["img_conv_clamp1.5"]) < ATOL
    assert max_err(img, cases["img"]) > 1e-3


def test_random_noise_is_random_but_seedable(small_G, cases):
    S, S_rgb = small_G.styles(cases["ws"])
    torch.manual_seed(5)
    a = small_G.synthesize(S, S_rgb, noise_mode="random")
    torch.manual_seed(5)
    b = small_G.synthesize(S, S_rgb, noise_mode="random")
    c = small_G.synthesize(S, S_rgb, noise_mode="random")
    assert torch.equal(a, b)
    assert max_err(a, c) > 1e-4
    with pytest.raises(ValueError, match="noise_mode"):
        small_G.synthesize(S, S_rgb, noise_mode="fixed")


def test_gradients_flow_from_image_to_styles(small_G, cases):
    S, S_rgb = small_G.styles(cases["ws"])
    S = S.clone().requires_grad_(True)
    small_G.synthesize(S, S_rgb).square().mean().backward()
    assert S.grad is not None and S.grad.abs().sum() > 0


def test_wrong_style_shape_is_explained(small_G, cases):
    S, S_rgb = small_G.styles(cases["ws"])
    with pytest.raises(ValueError, match="do not match this generator"):
        small_G.synthesize(S[:, :-1], S_rgb)
