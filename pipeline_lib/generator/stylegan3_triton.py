"""StyleGAN3's filtered leaky ReLU as Triton kernels (GPU inference, issue 14).

What the stencil passes of `stylegan3_fast.py` compute, in kernels whose every load is a
contiguous run of channels (NHWC, channels innermost) and whose programs take 2-D tiles
(positions x channels), so that a tap's load serves a whole tile:

    A   up H:          z1[a, w] = sum_j gH[a % up, j] * (x[a // up + j - pad, w] * dcoef + bias)
                       (the modulated conv's demodulation and bias applied on the load; the
                       padding rows are zeros, as F.pad after the bias)
    B1  up W:          z2[a, b] = sum_j gW[b % up, j] * z1[a, b // up + j - pad]
    B2  act, down W:   y1[a, v] = sum_i kd[i] * act(z2[a, down v + i])
    C   down H:        y[v, u]  = sum_i kd[i] * y1[down v + i, u]

act = leaky ReLU (0.2) x sqrt 2, then the clamp, as NVIDIA's `filtered_lrelu`. Config R's radial
filter of its non-critical layers is not separable: there B2 and C are one 2-D kernel that reads
act(z2) at its 144 taps. A first version fused B1 and B2 (the 2x map never stored, recomputed per
down tap): 72 loads per output took 3x the time of storing the map (324 ms against 107 ms at
T-256, batch 64; benchmarks/NOTES.md).

Every tap is accumulated in float32; intermediates are stored in the layer's dtype, as the
stencils store theirs (so float32 layers equal the stencil path to rounding, tested with
Triton's interpreter on the CPU in tests/test_stylegan3_triton.py). The filter taps are float32
tensors (cached loads).

The kernels have no backward: `StyleGAN3FastSynthesis` uses them only when no gradient is
needed (the dataset, evaluation and editing), and the stencils otherwise (training). They are a
`torch.library` custom op, so `torch.compile` treats the layer as one opaque call and fuses
what surrounds it (the style scaling, the casts).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _up_kernel(
    x_ptr, out_ptr, taps_ptr, dcoef_ptr, bias_ptr, L_in, L_out, M, C, pad,
    UP: tl.constexpr, J: tl.constexpr, AFFINE: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """[B, L_in, M] -> [B, L_out, M], polyphase up-sampling along L; program = one output row."""
    row = tl.program_id(0)
    b = row // L_out
    a = row % L_out
    p = a % UP
    t0 = a // UP - pad
    m = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mmask = m < M
    if AFFINE:
        c = m % C
        d = tl.load(dcoef_ptr + b * C + c, mask=mmask, other=0.0)
        bias = tl.load(bias_ptr + c, mask=mmask, other=0.0)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for j in tl.static_range(J):
        src = t0 + j
        valid = (src >= 0) & (src < L_in)
        v = tl.load(x_ptr + (b * L_in + src).to(tl.int64) * M + m, mask=mmask & valid, other=0.0).to(tl.float32)
        if AFFINE:
            v = tl.where(valid, v * d + bias, 0.0)
        acc += tl.load(taps_ptr + p * J + j) * v
    tl.store(out_ptr + row.to(tl.int64) * M + m, acc.to(out_ptr.dtype.element_ty), mask=mmask)


@triton.jit
def _act(z, clamp, HAS_CLAMP: tl.constexpr):
    a = tl.where(z >= 0, z, z * 0.2) * 1.4142135623730951
    if HAS_CLAMP:
        a = tl.minimum(tl.maximum(a, -clamp), clamp)
    return a


@triton.jit
def _up_w_kernel(
    z_ptr, out_ptr, taps_ptr, L_in, L_out, C, pad,
    UP: tl.constexpr, J: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """[B, L_in, C] -> [B, L_out, C], polyphase up-sampling along L (kernel B1, along W): a
    program takes BLOCK_L output positions x BLOCK_C channels, each position with its phase's
    taps (a gather from the tiny tap table, cached)."""
    row = tl.program_id(0)
    a = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    amask = a < L_out
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    p = a % UP
    t0 = a // UP - pad
    base = z_ptr + row.to(tl.int64) * L_in * C
    acc = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
    for j in tl.static_range(J):
        src = t0 + j
        ok = amask & (src >= 0) & (src < L_in)
        val = tl.load(base + (src * C)[:, None] + c[None, :], mask=ok[:, None] & cmask[None, :], other=0.0)
        tap = tl.load(taps_ptr + p * J + j, mask=amask, other=0.0)
        acc += tap[:, None] * val.to(tl.float32)
    ptr = out_ptr + row.to(tl.int64) * L_out * C + (a * C)[:, None] + c[None, :]
    tl.store(ptr, acc.to(out_ptr.dtype.element_ty), mask=amask[:, None] & cmask[None, :])


@triton.jit
def _act_down_w_kernel(
    z_ptr, out_ptr, taps_ptr, L_in, V, C, clamp,
    DOWN: tl.constexpr, LD: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """[B, L_in, C] up-sampled (before act) -> [B, V, C]: y[v] = sum_i kd[i] act(z[down v + i])
    (kernel B2, along W)."""
    row = tl.program_id(0)
    v = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (v < V)[:, None] & (c < C)[None, :]
    base = z_ptr + row.to(tl.int64) * L_in * C + (DOWN * v * C)[:, None] + c[None, :]
    acc = tl.zeros([BLOCK_V, BLOCK_C], dtype=tl.float32)
    for i in tl.static_range(LD):
        z = tl.load(base + i * C, mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(taps_ptr + i) * _act(z, clamp, HAS_CLAMP)
    ptr = out_ptr + row.to(tl.int64) * V * C + (v * C)[:, None] + c[None, :]
    tl.store(ptr, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _down_kernel(y_ptr, out_ptr, taps_ptr, L_in, V, M, DOWN: tl.constexpr, LD: tl.constexpr, BLOCK: tl.constexpr):
    """[B, L_in, M] -> [B, V, M]: y[v] = sum_i kd[i] y1[down v + i] (kernel C)."""
    row = tl.program_id(0)
    b = row // V
    v = row % V
    m = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mmask = m < M
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i in tl.static_range(LD):
        src = (b * L_in + DOWN * v + i).to(tl.int64)
        acc += tl.load(taps_ptr + i) * tl.load(y_ptr + src * M + m, mask=mmask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row.to(tl.int64) * M + m, acc.to(out_ptr.dtype.element_ty), mask=mmask)


@triton.jit
def _radial_down_kernel(
    z_ptr, out_ptr, taps_ptr, H, W, V, C, clamp,
    DOWN: tl.constexpr, LD: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """[N, H, W, C] up-sampled (before act) -> [N, V, V, C]: the 2-D radial down filter on act(z)."""
    row = tl.program_id(0)  # n * V + output row
    n = row // V
    vh = row % V
    vw = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    vmask = vw < V
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = vmask[:, None] & (c < C)[None, :]
    acc = tl.zeros([BLOCK_V, BLOCK_C], dtype=tl.float32)
    for ih in tl.static_range(LD):
        base = (n * H + DOWN * vh + ih).to(tl.int64) * W
        for iw in tl.static_range(LD):
            ptr = z_ptr + ((base + DOWN * vw + iw) * C)[:, None] + c[None, :]
            z = tl.load(ptr, mask=mask, other=0.0).to(tl.float32)
            acc += tl.load(taps_ptr + ih * LD + iw) * _act(z, clamp, HAS_CLAMP)
    ptr = out_ptr + ((row.to(tl.int64) * V + vw) * C)[:, None] + c[None, :]
    tl.store(ptr, acc.to(out_ptr.dtype.element_ty), mask=mask)


def _block(n: int, cap: int) -> int:
    return max(16, min(cap, triton.next_power_of_2(n)))


def _up(x: torch.Tensor, taps, L_out: int, pad: int, dcoef=None, bias=None) -> torch.Tensor:
    """x [B, L_in, M] -> [B, L_out, M] in x's dtype (kernel A)."""
    B, L_in, M = x.shape
    up, J = taps.shape
    out = torch.empty((B, L_out, M), device=x.device, dtype=x.dtype)
    affine = dcoef is not None
    C = dcoef.shape[1] if affine else 1
    dummy = taps
    BLOCK = _block(M, 1024)
    grid = (B * L_out, triton.cdiv(M, BLOCK))
    _up_kernel[grid](
        x, out, taps, dcoef if affine else dummy, bias if affine else dummy, L_in, L_out, M, C, pad,
        UP=up, J=J, AFFINE=affine, BLOCK=BLOCK,
    )  # fmt: skip
    return out


def _up_w(z1: torch.Tensor, taps, rows: int, L_in: int, L_out: int, C: int, pad: int) -> torch.Tensor:
    """z1 [rows, L_in, C] (any view of that memory) -> [rows, L_out, C] (kernel B1)."""
    out = torch.empty((rows, L_out, C), device=z1.device, dtype=z1.dtype)
    BLOCK_L, BLOCK_C = _block(L_out, 32), _block(C, 64)
    grid = (rows, triton.cdiv(L_out, BLOCK_L), triton.cdiv(C, BLOCK_C))
    _up_w_kernel[grid](
        z1, out, taps, L_in, L_out, C, pad, UP=taps.shape[0], J=taps.shape[1], BLOCK_L=BLOCK_L, BLOCK_C=BLOCK_C
    )
    return out


CHUNK_BYTES = 2**31  # the largest up-sampled map (z2) one launch may hold: bounds the peak memory


def filtered_lrelu(
    x: torch.Tensor,
    dcoef: torch.Tensor,
    bias: torch.Tensor,
    up_taps: torch.Tensor,
    down_taps: torch.Tensor,
    pad: int,
    length: int,
    down: int,
    n_out: int,
    clamp: float,
) -> torch.Tensor:
    """x: the modulated conv's output [N, C, n, n] (channels-last, the layer's dtype), dcoef
    [N, C] and bias [C] float32, up_taps [up, J] (polyphase rows), down_taps [Ld] (separable) or
    [Ld, Ld] (radial), both correlation taps in float32; `length` samples per phase, `clamp` <
    0 for none. Returns [N, C, n_out, n_out] channels-last in x's dtype.

    Images are processed in chunks whose up-sampled map stays under CHUNK_BYTES (at 1024 px a
    batch of 32 would otherwise hold ~18 GB per map); every output sample depends on its own
    image only, so chunking changes no value."""
    N, C, n, _ = x.shape
    per_image = (length * up_taps.shape[0]) ** 2 * C * x.element_size()
    chunk = max(1, CHUNK_BYTES // per_image)
    if N > chunk:
        out = x.new_empty((N, n_out, n_out, C)).permute(0, 3, 1, 2)
        for a in range(0, N, chunk):
            b = min(a + chunk, N)
            args = (up_taps, down_taps, pad, length, down, n_out, clamp)
            out[a:b] = filtered_lrelu(x[a:b], dcoef[a:b], bias, *args)
        return out
    up = up_taps.shape[0]
    U = length * up  # the up-sampled side
    x = x.permute(0, 2, 3, 1)  # NHWC view of channels-last memory: no copy
    if not x.is_contiguous():
        raise ValueError("filtered_lrelu expects a channels-last input")
    z1 = _up(x.reshape(N, n, n * C), up_taps, U, pad, dcoef, bias)  # [N, U, n*C]
    z2 = _up_w(z1, up_taps, N * U, n, U, C, pad)  # [N*U, U, C]: W up-sampled too (before act)
    has_clamp = clamp >= 0
    BLOCK_C = _block(C, 64)
    if down_taps.ndim == 2:  # radial (config R): the 2-D down filter
        out = torch.empty((N, n_out, n_out, C), device=x.device, dtype=x.dtype)
        BLOCK_V = _block(n_out, 32)
        grid = (N * n_out, triton.cdiv(n_out, BLOCK_V), triton.cdiv(C, BLOCK_C))
        _radial_down_kernel[grid](
            z2, out, down_taps, U, U, n_out, C, clamp,
            DOWN=down, LD=down_taps.shape[0], HAS_CLAMP=has_clamp, BLOCK_V=BLOCK_V, BLOCK_C=BLOCK_C,
        )  # fmt: skip
        return out.permute(0, 3, 1, 2)
    y1 = torch.empty((N * U, n_out, C), device=x.device, dtype=x.dtype)
    BLOCK_V = _block(n_out, 32)
    grid = (N * U, triton.cdiv(n_out, BLOCK_V), triton.cdiv(C, BLOCK_C))
    _act_down_w_kernel[grid](
        z2, y1, down_taps, U, n_out, C, clamp,
        DOWN=down, LD=down_taps.shape[0], HAS_CLAMP=has_clamp, BLOCK_V=BLOCK_V, BLOCK_C=BLOCK_C,
    )  # fmt: skip
    out = torch.empty((N, n_out, n_out * C), device=x.device, dtype=x.dtype)
    BLOCK = _block(n_out * C, 1024)
    _down_kernel[(N * n_out, triton.cdiv(n_out * C, BLOCK))](
        y1.view(N, U, n_out * C), out, down_taps, U, n_out, n_out * C, DOWN=down, LD=down_taps.shape[0], BLOCK=BLOCK
    )
    return out.view(N, n_out, n_out, C).permute(0, 3, 1, 2)


# The same function as one op for torch.compile (an opaque call in its graph; a fresh output).
filtered_lrelu_op = torch.library.custom_op("genfields::sg3_filtered_lrelu", filtered_lrelu, mutates_args=())


@filtered_lrelu_op.register_fake
def _(x, dcoef, bias, up_taps, down_taps, pad, length, down, n_out, clamp):
    N, C = x.shape[:2]
    return x.new_empty((N, n_out, n_out, C)).permute(0, 3, 1, 2)
