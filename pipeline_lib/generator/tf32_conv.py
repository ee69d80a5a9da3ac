"""A conv2d that lets cuDNN use TF32, as one op that `torch.compile` traces without a break.

NVIDIA's StyleGAN3 runs the float32 layers' convs with torch's default TF32 on, while
`devices.py` turns TF32 off for our float32 reference; so the fast path asks for TF32 in those
convs only. Written as `with torch.backends.cudnn.flags(allow_tf32=True):` inside a compiled
forward, the context manager breaks the graph (dynamo cannot trace it): the compiled
`StyleGAN3FastSynthesis` then compiled its conv and filtered-lrelu helpers once per layer index
until dynamo's recompile limit (8) and ran the later, largest layers eagerly (every
compiled benchmark run of 2026-12-03 logged "hit config.recompile_limit (8)"). As a custom op
the flags are set inside an opaque call. The backward is the ordinary conv's (float32, TF32 as
the caller's global flags say)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.library.custom_op("genfields::conv2d_tf32", mutates_args=())
def conv2d_tf32(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """F.conv2d(x, weight, padding=padding) (stride 1, no bias) with cuDNN's TF32 allowed."""
    cudnn = torch.backends.cudnn
    with cudnn.flags(
        enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=True
    ):
        return F.conv2d(x, weight, padding=padding)


@conv2d_tf32.register_fake
def _(x, weight, padding):
    return F.conv2d(x, weight, padding=padding)  # shapes and strides only


def _setup_context(ctx, inputs, output):
    x, weight, padding = inputs
    ctx.save_for_backward(x, weight)
    ctx.padding = padding


def _backward(ctx, grad):
    x, weight = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[:2]
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [1, 1], [ctx.padding] * 2, [1, 1], False, [0, 0], 1, [need_x, need_w, False]
    )
    return grad_x, grad_w, None


conv2d_tf32.register_autograd(_backward, setup_context=_setup_context)
