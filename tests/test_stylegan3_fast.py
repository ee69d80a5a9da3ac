"""The fast StyleGAN3 synthesis computes the reference's function: in float32 on the CPU it equals
`StyleGAN3Generator.synthesize` (and so NVIDIA's official output) within 1e-4 on the fixture
generators T and R, also with a user transform, a style offset and an active conv_clamp; its
polyphase filter algebra equals zero-insertion + filtering on random signals."""

import functools

import numpy as np
import pytest
import torch
from stylegan3_fixtures import cases, generator, max_err

from pipeline_lib.generator.stylegan3_fast import (
    StyleGAN3FastSynthesis,
    flops_per_image,
    stencil,
    stencil_terms,
    up_phase_taps,
    upsample,
)
from pipeline_lib.generator.stylegan3_filters import upfirdn2d

ATOL = 1e-4


@pytest.mark.parametrize("tag", ["t", "r"])
def test_fast_float32_equals_reference_and_official(tag):
    G = generator(tag)
    c = cases(tag)
    fast = StyleGAN3FastSynthesis(G, dtype=torch.float32)
    with torch.no_grad():
        S, S_rest = G.styles(G.mapping(c["z"]))
        img = fast(S, S_rest)
        assert max_err(img, G.synthesize(S, S_rest)) < ATOL
        assert max_err(img, c["img"]) < ATOL
        S2 = S[:2].clone()
        S2[:, 5:9] += 3.0  # a style offset: still the same function of (S, S_rest)
        assert max_err(fast(S2, S_rest[:2]), G.synthesize(S2, S_rest[:2])) < ATOL


@pytest.mark.parametrize("tag", ["t", "r"])
def test_fast_with_transform_and_clamp(tag):
    c = cases(tag)
    G = generator(tag, conv_clamp=2.0)
    fast = StyleGAN3FastSynthesis(G, dtype=torch.float32, channels_last=False)
    with torch.no_grad():
        S, S_rest = G.styles(G.mapping(c["z"][:2]))
        assert max_err(fast(S, S_rest), c["img_conv_clamp2.0"][:2]) < ATOL  # official, clamp active
        G.set_transform(translate=(0.125, -0.0625), angle_deg=20.0)
        fast = StyleGAN3FastSynthesis(G, dtype=torch.float32)
        assert max_err(fast(S, S_rest), G.synthesize(S, S_rest)) < ATOL


@pytest.mark.parametrize("up,down,pad0,pad1", [(2, 2, 9, 8), (4, 2, 17, 14), (2, 2, -3, -2), (4, 2, 5, 30)])
def test_polyphase_stencils_equal_zero_insertion(up, down, pad0, pad1):
    """The stencils as the fast path runs them (polyphase up-sampling interleaved by stack, then
    the strided down-sampling stencil) equal upfirdn2d's zero insertion + filtering in 1-D."""
    rng = np.random.default_rng(up * 100 + pad0)
    n, lu, ld = 23, 6 * up, 6 * down
    x, fu, fd = rng.standard_normal(n), rng.standard_normal(lu), rng.standard_normal(ld)
    t = torch.from_numpy(x).reshape(1, 1, 1, n)
    z = upfirdn2d(t, torch.from_numpy(fu)[None], up=up, padding=[pad0, pad1, 0, 0], gain=1.0)[0, 0, 0]
    g, pad_l, pad_r, m = up_phase_taps(n, up, pad0, pad1, np.flip(fu))
    assert m == len(z)
    xp = torch.nn.functional.pad(torch.from_numpy(x)[None], (pad_l, pad_r)).double()  # negative = crop
    tt = -(-m // up)
    got = upsample(xp, [stencil_terms(gp) for gp in g], 1, tt, torch.float64)[0]
    assert len(got) == tt * up >= m
    torch.testing.assert_close(got[:m], z, atol=1e-5, rtol=0)  # the stencil accumulates in float32
    want = torch.from_numpy(np.correlate(z.numpy(), np.flip(fd), "valid")[::down].copy())
    down_got = stencil(got[None], stencil_terms(np.flip(fd)), (1,), len(want), down)[0]
    torch.testing.assert_close(down_got.double(), want, atol=1e-5, rtol=0)


def test_radial_stencil_equals_strided_conv():
    """The 2-D (config R) down-sampling stencil equals upfirdn2d's strided 2-D filter."""
    gen = torch.Generator().manual_seed(0)
    z, f = torch.randn([2, 3, 30, 30], generator=gen), torch.randn([8, 8], generator=gen)
    want = upfirdn2d(z, f, down=2)
    got = stencil(z, stencil_terms(np.flip(f.numpy(), (0, 1))), (2, 3), want.shape[-1], 2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_half_precision_plan_follows_official_fp16_layers():
    G = generator("t")
    fast = StyleGAN3FastSynthesis(G, dtype=torch.float16)
    specs = G.conv_layers + G.rgb_layers
    assert [p.dtype == torch.float16 for p in fast.plans] == [s.use_fp16 for s in specs]
    assert all(p.dtype == torch.bfloat16 for p in StyleGAN3FastSynthesis(G, torch.bfloat16, mixed=False).plans)
    conv, fir = flops_per_image(G)
    assert conv > 0 and fir > 0


def test_fast_gradients_equal_reference():
    """Training back-propagates through the synthesis to S: the stencils' gradients are the
    reference's (float32)."""
    G = generator("t")
    S, S_rest = G.styles(G.mapping(cases("t")["z"][:1]))
    fast = StyleGAN3FastSynthesis(G, dtype=torch.float32)
    grads = []
    for synth in (fast, G.synthesize):
        s = S.clone().requires_grad_(True)
        (synth(s, S_rest) * torch.linspace(-1, 1, 64)).sum().backward()
        grads.append(s.grad)
    assert grads[0].abs().max() > 0
    assert max_err(grads[0], grads[1]) < 1e-4 * grads[1].abs().max().item()


def test_compiled_layer_equals_eager():
    """torch.compile (Inductor, here its CPU backend) of one layer's filtered leaky ReLU with
    4x up-sampling computes what eager does (which down-samples by convs, not stencils)."""
    G = generator("t")
    fast = StyleGAN3FastSynthesis(G, dtype=torch.float32)
    i = next(k for k, p in enumerate(fast.plans) if p.up == 4)
    plan, spec = fast.plans[i], G.conv_layers[i]
    n = spec.in_size + spec.kernel_size - 1
    x = torch.randn([2, plan.c_out, n, n], generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    eager = fast._filtered_lrelu(i, plan, x)  # down-sampling by depthwise convs
    compiled = torch.compile(functools.partial(fast._filtered_lrelu, i, plan), dynamic=False)(x)  # by stencils
    assert compiled.shape == (2, plan.c_out, spec.out_size, spec.out_size)
    assert max_err(compiled, eager) < 1e-5


def test_tf32_conv_op_equals_conv2d_and_compiles_without_a_graph_break():
    """`conv2d_tf32` (the float32 layers' conv on CUDA) is F.conv2d, forward and backward, and a
    compiled function calling it is one graph (fullgraph=True raises on a break): the flags
    context manager it replaces broke the compiled forward once per float32 layer."""
    from pipeline_lib.generator.tf32_conv import conv2d_tf32

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(6, 5, 3, 3, generator=gen).requires_grad_()
    got = conv2d_tf32(x, w, 2)
    want = torch.nn.functional.conv2d(x, w, padding=2)
    assert torch.allclose(got, want, atol=1e-5) and got.shape == (2, 6, 11, 11)
    g = torch.randn(got.shape, generator=gen)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(torch.autograd.grad(got, (x, w), g),
                                                                  torch.autograd.grad(want, (x, w), g)))  # fmt: skip
    compiled = torch.compile(lambda a, b: conv2d_tf32(a * 2, b, 1).relu(), fullgraph=True, backend="eager")
    with torch.no_grad():
        assert torch.allclose(compiled(x, w), torch.nn.functional.conv2d(x * 2, w, padding=1).relu(), atol=1e-5)
