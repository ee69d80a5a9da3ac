"""StyleGAN3's filtered leaky ReLU as ONE Triton kernel per layer (GPU inference, issue 14).

The four-pass kernels (`stylegan3_triton.py`) store the up-sampled map and read it back: per
layer about 18 times the input's bytes, at 15-19 % of the copy bandwidth because every tap is a
load. Here a program takes one output tile (TO x TO positions, CB channels) and keeps
everything between the modulated conv's output and the layer's output on chip, written as
four small matrix products with banded filter matrices (tensor cores do the taps):

    X   [TI, CB, TI]   the input tile (rows, channels, columns), the conv's output as stored
    Z1 = U  @ X        up along H:  [TA, TI] @ [TI, CB*TI]        -> [TA, CB*TI], then d Z1 + b U m
    Z2 = Z1 @ U^T      up along W:  [TA*CB, TI] @ [TI, TA]        -> [TA*CB, TA]
    A  = act(Z2)       leaky ReLU x sqrt 2, the clamp (float32)
    Y  = sum_r Dh_r @ (A @ Dw_r^T)  down along W then H           -> [TO, CB*TO]

U[a, t] = g[a % up, t - a // up] (the polyphase taps of `up_phase_taps`) and D[o, a] =
kd[a - down o] are the same for every tile, because a tile's first up-sampled row is a
multiple of `up`; they are built once per layer (`FusedPlan`). The separable down filter is
rank 1 (Dh = Dw); config R's radial 2-D filter is a sum of `rank` separable ones, from its
singular value decomposition in float64, cut where the singular values fall below 1e-7 of the
largest: the released R-256's twelve radial layers need 3 to 5 terms, which equal the 2-D
filter to 1.6e-8 of its largest tap (the fixture's R layers: 3).

Arithmetic: half layers multiply half operands (the tile, the up-sampled map before and after
the activation, the filter matrices) with float32 accumulation, as the stencils store their
intermediates in the layer's dtype, and the filter matrices as two half parts (hi + lo, see
`FusedPlan.matrices`): half taps alone cost 13.6 dB at T-256. Float32 operands use `tf32x3`,
but `StyleGAN3FastSynthesis` runs its float32 layers with the exact four passes, which were
2.5x faster there. Tiles are padded to powers of two (Triton's shapes): a tile computes TO rows
of which `step` are kept, the next tile starts `step` further.

Measured on the H200, T-256, batch 64, fp16-mixed compiled (benchmarks/NOTES.md): 667 img/s
against 520 with the four passes in every layer, 68.7 dB from the float32 reference either way
(NVIDIA's fp16: 55.1 dB); R-256 259 img/s against 60."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from pipeline_lib.generator.stylegan3_triton import _act  # leaky ReLU x sqrt 2, then the clamp


@triton.jit
def _fused_kernel(
    x_ptr, out_ptr, dcoef_ptr, bias_ptr, u_ptr, dh_ptr, dw_ptr,
    n, n_out, C, pad, clamp, tiles, step,
    UP: tl.constexpr, DOWN: tl.constexpr, TI: tl.constexpr, TA: tl.constexpr, TO: tl.constexpr,
    CB: tl.constexpr, RANK: tl.constexpr, HAS_CLAMP: tl.constexpr, PRECISION: tl.constexpr, SPLIT: tl.constexpr,
):  # fmt: skip
    """x [N, n, n, C] (the conv's output, NHWC) -> out [N, n_out, n_out, C]; program = one image's
    output tile x CB channels."""
    pid = tl.program_id(0)
    b = pid // (tiles * tiles)
    v0h = (pid // tiles) % tiles * step  # the tile's first output row / column
    v0w = pid % tiles * step
    c = tl.program_id(1) * CB + tl.arange(0, CB)
    cmask = c < C
    dt = out_ptr.dtype.element_ty

    # The input tile, demodulated, biased and zero outside the map (F.pad after the bias).
    ti = tl.arange(0, TI)
    h = v0h * DOWN // UP - pad + ti
    w = v0w * DOWN // UP - pad + ti
    hmask = (h >= 0) & (h < n)
    wmask = (w >= 0) & (w < n)
    ptr = x_ptr + ((b * n + h).to(tl.int64)[:, None, None] * n + w[None, None, :]) * C + c[None, :, None]
    mask = hmask[:, None, None] & cmask[None, :, None] & wmask[None, None, :]
    x = tl.reshape(tl.load(ptr, mask=mask, other=0.0), [TI, CB * TI])  # the conv's output, unrounded
    d = tl.load(dcoef_ptr + b * C + c, mask=cmask, other=0.0)
    bias = tl.load(bias_ptr + c, mask=cmask, other=0.0)

    # Up along H; the demodulation and bias after it (U (x d + b m) = d U x + b U m, m = 1 inside
    # the map: no rounding of x d + b), then up along W (rows now run over (up-sampled row, channel)).
    ta = tl.arange(0, TA)
    u = tl.load(u_ptr + ta[:, None] * TI + ti[None, :])  # [TA, TI]
    ut = tl.load(u_ptr + ta[None, :] * TI + ti[:, None])  # [TI, TA]
    z = tl.dot(u, x, input_precision=PRECISION)
    inside = tl.sum(tl.where(hmask[None, :], u.to(tl.float32), 0.0), axis=1)  # (U m)[a] along H
    if SPLIT:  # the taps' low half: U = hi + lo, both half
        u_lo = tl.load(u_ptr + TA * TI + ta[:, None] * TI + ti[None, :])
        z = tl.dot(u_lo, x, acc=z)
        inside += tl.sum(tl.where(hmask[None, :], u_lo.to(tl.float32), 0.0), axis=1)
    z = tl.reshape(z, [TA, CB, TI])
    z = z * d[None, :, None] + bias[None, :, None] * inside[:, None, None] * tl.where(wmask, 1.0, 0.0)[None, None, :]
    z = tl.reshape(z.to(dt), [TA * CB, TI])
    z2 = tl.dot(z, ut, input_precision=PRECISION)  # [TA*CB, TA]
    if SPLIT:
        z2 = tl.dot(z, tl.load(u_ptr + TA * TI + ta[None, :] * TI + ti[:, None]), acc=z2)
    z = z2
    a = _act(z, clamp, HAS_CLAMP).to(dt)

    # Down along W, then along H, for each separable term of the down filter.
    to = tl.arange(0, TO)
    y = tl.zeros([TO, CB * TO], dtype=tl.float32)
    for r in tl.static_range(RANK):
        dwt = tl.load(dw_ptr + r * TO * TA + to[None, :] * TA + ta[:, None])  # [TA, TO]
        dh = tl.load(dh_ptr + r * TO * TA + to[:, None] * TA + ta[None, :])  # [TO, TA]
        y1 = tl.dot(a, dwt, input_precision=PRECISION)  # [TA*CB, TO]
        if SPLIT:
            y1 = tl.dot(a, tl.load(dw_ptr + (RANK + r) * TO * TA + to[None, :] * TA + ta[:, None]), acc=y1)
        y1 = tl.reshape(y1.to(dt), [TA, CB * TO])
        y = tl.dot(dh, y1, acc=y, input_precision=PRECISION)  # [TO, CB*TO]
        if SPLIT:
            y = tl.dot(tl.load(dh_ptr + (RANK + r) * TO * TA + to[:, None] * TA + ta[None, :]), y1, acc=y)

    y = tl.reshape(y, [TO, CB, TO])
    oh = v0h + to
    ow = v0w + to
    keep = (to < step) & (oh < n_out)
    keep_w = (to < step) & (ow < n_out)
    ptr = out_ptr + ((b * n_out + oh).to(tl.int64)[:, None, None] * n_out + ow[None, None, :]) * C + c[None, :, None]
    tl.store(ptr, y.to(dt), mask=keep[:, None, None] & cmask[None, :, None] & keep_w[None, None, :])


NUM_WARPS = 4  # per program (benchmarks/sg3_fused_tuning.py measures 4 and 8)


@dataclass(frozen=True)
class FusedPlan:
    """One layer's tile sizes and filter matrices (float64 numpy; `matrices` casts them)."""

    up: int
    down: int
    TA: int  # up-sampled rows (and columns) a tile computes
    TI: int  # input rows a tile reads
    TO: int  # output rows a tile computes, of which `step` are kept
    step: int
    CB: int  # channels per program
    u: np.ndarray  # [TA, TI]
    dh: np.ndarray  # [rank, TO, TA]
    dw: np.ndarray  # [rank, TO, TA]

    @property
    def rank(self) -> int:
        return self.dh.shape[0]

    def matrices(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, dh, dw) in `dtype`; for a half dtype each with its rounding error appended as a
        second half-precision part along the first axis (hi, lo: hi + lo equals the float64
        taps to about 2^-22), so that the products keep float32-accurate taps: half taps alone
        are a gain error that every layer repeats (NVIDIA's fp16 reference path casts its taps
        to fp16; measured at T-256: 55.1 dB from the float32 output, as NVIDIA's)."""
        out = []
        for m in (self.u, self.dh, self.dw):
            t = torch.from_numpy(np.ascontiguousarray(m))
            if dtype != torch.float32:
                hi = t.to(dtype)
                t = (
                    torch.cat([hi, (t - hi.double()).to(dtype)])
                    if t.ndim == 3
                    else torch.stack([hi, (t - hi.double()).to(dtype)])
                )
            out.append(t.to(dtype).contiguous())
        return tuple(out)


def radial_rank_terms(kd: np.ndarray, rel_tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """2-D correlation taps [L, L] -> (rows [R, L], cols [R, L]) with kd = sum_r rows[r] cols[r]^T,
    R the number of singular values above rel_tol times the largest (float64 SVD)."""
    uu, s, vt = np.linalg.svd(np.asarray(kd, dtype=np.float64))
    rank = max(1, int(np.sum(s > rel_tol * s[0])))
    return uu[:, :rank].T * s[:rank, None], vt[:rank]


def _band(taps: np.ndarray, rows: int, cols: int, stride: int) -> np.ndarray:
    """D[o, a] = taps[a - stride o] where that index exists."""
    m = np.zeros((rows, cols))
    for o in range(rows):
        for i, tap in enumerate(taps):
            if 0 <= stride * o + i < cols:
                m[o, stride * o + i] = tap
    return m


def _pow2(x: int) -> int:
    return max(16, triton.next_power_of_2(int(x)))


def fused_plan(
    g: np.ndarray, kd: np.ndarray, down: int, channels: int, tile: int | None = None, channels_per_program: int = 0
) -> FusedPlan:
    """Plan a layer from its polyphase up taps g [up, J] and correlation down taps kd ([L] or
    [L, L]). The defaults were measured best on the H200 (benchmarks/sg3_fused_tuning.py,
    with the hi + lo taps): tile (TA) 32; 16 channels per program where up is 2 and they divide
    the channels, else 8."""
    up, J = g.shape
    L = kd.shape[0]
    rows, cols = (kd[None], kd[None]) if kd.ndim == 1 else radial_rank_terms(kd)

    TA = tile or 32
    step = (TA - L) // down + 1  # outputs kept per tile
    while step * down % up:
        step -= 1  # a tile's first up-sampled row must be a multiple of up (then U is tile-invariant)
    TI, TO = _pow2((TA - 1) // up + J), _pow2(step)
    u = np.zeros((TA, TI))
    for a in range(TA):
        for j in range(J):
            if a // up + j < TI:
                u[a, a // up + j] = g[a % up, j]
    dh = np.stack([_band(r, TO, TA, down) for r in rows])
    dw = np.stack([_band(c, TO, TA, down) for c in cols])
    CB = channels_per_program or (16 if up == 2 and channels % 16 == 0 else 8)
    return FusedPlan(up, down, TA, TI, TO, step, CB, u, dh, dw)


def filtered_lrelu(
    x: torch.Tensor,
    dcoef: torch.Tensor,
    bias: torch.Tensor,
    u: torch.Tensor,
    dh: torch.Tensor,
    dw: torch.Tensor,
    up: int,
    down: int,
    pad: int,
    n_out: int,
    step: int,
    channels_per_program: int,
    clamp: float,
) -> torch.Tensor:
    """x: the modulated conv's output [N, C, n, n] (channels-last, the layer's dtype), dcoef
    [N, C] and bias [C] float32; u, dh, dw: a `FusedPlan`'s matrices in the layer's dtype; pad:
    the left zero padding of x (negative = crop); clamp < 0 for none. Returns [N, C, n_out,
    n_out] channels-last in x's dtype."""
    N, C, n, _ = x.shape
    x = x.permute(0, 2, 3, 1)  # NHWC view of channels-last memory: no copy
    if not x.is_contiguous():
        raise ValueError("filtered_lrelu expects a channels-last input")
    if u.dtype != x.dtype or dh.dtype != x.dtype or dw.dtype != x.dtype:
        raise ValueError(f"filtered_lrelu: filter matrices in {u.dtype}, input in {x.dtype}")
    out = torch.empty((N, n_out, n_out, C), device=x.device, dtype=x.dtype)
    split = x.dtype != torch.float32  # half: hi + lo parts (FusedPlan.matrices)
    TA, TI = u.shape[-2:]
    rank, TO = dh.shape[0] // (2 if split else 1), dh.shape[1]
    tiles = -(-n_out // step)
    grid = (N * tiles * tiles, triton.cdiv(C, channels_per_program))
    _fused_kernel[grid](
        x, out, dcoef, bias, u, dh, dw, n, n_out, C, pad, clamp, tiles, step,
        UP=up, DOWN=down, TI=TI, TA=TA, TO=TO, CB=channels_per_program, RANK=rank, HAS_CLAMP=clamp >= 0,
        PRECISION="tf32x3" if x.dtype == torch.float32 else "tf32", SPLIT=split,  # (precision: float32 operands only)
        num_warps=NUM_WARPS,
    )  # fmt: skip
    return out.permute(0, 3, 1, 2)


# The same function as one op for torch.compile (an opaque call in its graph; a fresh output).
filtered_lrelu_op = torch.library.custom_op("genfields::sg3_fused_filtered_lrelu", filtered_lrelu, mutates_args=())


@filtered_lrelu_op.register_fake
def _(x, dcoef, bias, u, dh, dw, up, down, pad, n_out, step, channels_per_program, clamp):
    N, C = x.shape[:2]
    return x.new_empty((N, n_out, n_out, C)).permute(0, 3, 1, 2)
