"""StyleGAN3's filtered leaky ReLU as ONE Triton kernel per layer (GPU inference, issue 14).

The four-pass kernels (`stylegan3_triton.py`) store the up-sampled map and read it back: per
layer about 18 times the input's bytes, at 15-19 % of the copy bandwidth because every tap is a
load. Here a program takes one output tile (TOH x TO positions, CB channels) and keeps
everything between the modulated conv's output and the layer's output on chip, written as
small matrix products with banded filter matrices (tensor cores do the taps). The tile's TAH
up-sampled rows are computed in chunks of TAC rows, each chunk's down-sampled rows added into
the output tile, so that the registers hold one chunk of the up-sampled map at a time:

    for each chunk k (up-sampled rows a0 = k TAC ... a0 + TAC - 1):
      X   [TIC, CB*TI]   the input rows the chunk needs, (channel, column) along the second axis
      Z1 = Uc @ X        up along H:  [TAC, TIC] @ [TIC, CB*TI]    -> [TAC, CB*TI], then d Z1 + b Uc m
      Z2 = Z1 @ Uw^T     up along W:  [TAC*CB, TI] @ [TI, TA]      -> [TAC*CB, TA]
      A  = act(Z2)       leaky ReLU x sqrt 2, the clamp (float32)
      Y += sum_r Dh_r[:, chunk] @ (A @ Dw_r^T)  down along W, then H -> [TOH, CB*TO]

Uw[a, t] = g[a % up, t - a // up] (the polyphase taps of `up_phase_taps`), Uc the same with
the chunk's sizes, and D[o, a] = kd[a - down o] are the same for every tile and chunk, because
a tile's and a chunk's first up-sampled row are multiples of `up`; they are built once per
layer (`FusedPlan`). The separable down filter is rank 1 (Dh = Dw); config R's radial 2-D
filter is a sum of `rank` separable ones, from its singular value decomposition in float64, cut
where the singular values fall below 1e-7 of the largest: the released R-256's twelve radial
layers need 3 to 5 terms, which equal the 2-D filter to 1.6e-8 of its largest tap (the
fixture's R layers: 3).

Why chunks: Nsight Compute on a version that computed whole 32 x 32 up-sampled tiles showed
255 registers per thread, one program of 4 warps per multiprocessor and the issue slots 25 %
busy: latency-bound, the float32 map alone taking 128 registers per thread. Chunks hold less at
once and make tall tiles cheap (only the loop gets longer: less overlap recomputed between
tiles). Measured (benchmarks/NOTES.md), they help the up-2 layers (64 rows in chunks of 16) and
not the up-4 ones (one chunk of 32 rows is faster there), about 6 % over the layers of T-256:
ptxas still gives the kernel 168 to 254 registers (`ptxas -v` on Triton 3.6's code for sm_90),
and capping them (`MAX_REGISTERS`) spills and is slower.

Arithmetic: half layers multiply half operands (the tile, the up-sampled map before and after
the activation, the filter matrices) with float32 accumulation, as the stencils store their
intermediates in the layer's dtype, and the filter matrices as two half parts (hi + lo, see
`FusedPlan.matrices`): half taps alone cost 13.6 dB at T-256. Float32 operands use `tf32x3`,
but `StyleGAN3FastSynthesis` runs its float32 layers with the exact four passes, which were
2.5x faster there. Tiles are padded to powers of two (Triton's shapes): a tile computes TO
columns (TOH rows) of which `step` (`step_h`) are kept, the next tile starts that far further.
No float32 map is ever reshaped (a reshape of a product's result goes through shared memory);
maps are indexed per column instead.

Measured on the H200, T-256, batch 64, fp16-mixed compiled (benchmarks/NOTES.md): see there;
the first (unchunked) version ran at 719 img/s against 520 with the four passes in every
layer, 69.8 dB from the float32 reference (NVIDIA's fp16: 55.1 dB); R-256 274 img/s."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from pipeline_lib.generator.stylegan3_triton import _act  # leaky ReLU x sqrt 2, then the clamp


@triton.jit
def _fused_kernel(
    x_ptr, out_ptr, dcoef_ptr, bias_ptr, uw_ptr, uc_ptr, dh_ptr, dw_ptr, oscale_ptr,
    n, n_out, C, pad, clamp, tiles_h, tiles_w, step_h, step,
    UP: tl.constexpr, DOWN: tl.constexpr, TI: tl.constexpr, TA: tl.constexpr, TO: tl.constexpr,
    TAH: tl.constexpr, TAC: tl.constexpr, TIC: tl.constexpr, TOH: tl.constexpr,
    CB: tl.constexpr, RANK: tl.constexpr, HAS_CLAMP: tl.constexpr, PRECISION: tl.constexpr, SPLIT: tl.constexpr,
    OUT_SCALE: tl.constexpr,
):  # fmt: skip
    """x [N, n, n, C] (the conv's output, NHWC) -> out [N, n_out, n_out, C]; program = one image's
    output tile x CB channels. OUT_SCALE: the output times oscale [N, C] (float32, the next
    layer's input scaling) before its one rounding."""
    pid = tl.program_id(0)
    b = pid // (tiles_h * tiles_w)
    v0h = (pid // tiles_w) % tiles_h * step_h  # the tile's first output row / column
    v0w = pid % tiles_w * step
    c0 = tl.program_id(1) * CB
    dt = out_ptr.dtype.element_ty

    # The input columns [TI] and channels [CB] (loaded as [rows, columns, channels], channels
    # innermost as stored: vector loads), and what the demodulation and bias need per row of the
    # up-sampled maps [(up-sampled row, channel), column]: d and b per channel, and the W-up
    # matrix's column sums over the columns inside the map (the bias is zero outside it).
    c = c0 + tl.arange(0, CB)
    cmask = c < C
    ti = tl.arange(0, TI)
    w = v0w * DOWN // UP - pad + ti
    wmask = (w >= 0) & (w < n)
    tic = tl.arange(0, TIC)
    tac = tl.arange(0, TAC)
    ta = tl.arange(0, TA)
    to = tl.arange(0, TO)
    toh = tl.arange(0, TOH)
    uc = tl.load(uc_ptr + tac[:, None] * TIC + tic[None, :])  # [TAC, TIC]
    uwt = tl.load(uw_ptr + ta[None, :] * TI + ti[:, None])  # [TI, TA]
    colsum = tl.sum(tl.where(wmask[:, None], uwt.to(tl.float32), 0.0), axis=0)  # [TA]
    if SPLIT:  # the taps' low halves: U = hi + lo, both half
        uc_lo = tl.load(uc_ptr + TAC * TIC + tac[:, None] * TIC + tic[None, :])
        uwt_lo = tl.load(uw_ptr + TA * TI + ta[None, :] * TI + ti[:, None])
        colsum += tl.sum(tl.where(wmask[:, None], uwt_lo.to(tl.float32), 0.0), axis=0)
    d = tl.load(dcoef_ptr + b * C + c, mask=cmask, other=0.0)
    bias = tl.load(bias_ptr + c, mask=cmask, other=0.0)
    d_rows = tl.reshape(tl.broadcast_to(d[None, :], [TAC, CB]), [TAC * CB])

    y = tl.zeros([TOH, CB * TO], dtype=tl.float32)
    for k in range(TAH // TAC):
        # The chunk's input rows; up along H, then along W (rows now run over (up-sampled row,
        # channel)), then the demodulation and bias: U (x d + b m) Uw^T = d (U x Uw^T) + b (U m)
        # (m Uw^T), m = 1 inside the map (so x d + b is never rounded).
        h = (v0h * DOWN + k * TAC) // UP - pad + tic
        hmask = (h >= 0) & (h < n)
        ptr = x_ptr + ((b * n + h).to(tl.int64)[:, None, None] * n + w[None, :, None]) * C + c[None, None, :]
        mask = hmask[:, None, None] & wmask[None, :, None] & cmask[None, None, :]
        x = tl.permute(tl.load(ptr, mask=mask, other=0.0), (0, 2, 1))  # the conv's output, unrounded
        x = tl.reshape(x, [TIC, CB * TI])
        z = tl.dot(uc, x, input_precision=PRECISION)  # [TAC, CB*TI]
        inside = tl.sum(tl.where(hmask[None, :], uc.to(tl.float32), 0.0), axis=1)  # (U m)[a] along H
        if SPLIT:
            z = tl.dot(uc_lo, x, acc=z)
            inside += tl.sum(tl.where(hmask[None, :], uc_lo.to(tl.float32), 0.0), axis=1)
        z = tl.reshape(z.to(dt), [TAC * CB, TI])
        z2 = tl.dot(z, uwt, input_precision=PRECISION)  # [TAC*CB, TA]
        if SPLIT:
            z2 = tl.dot(z, uwt_lo, acc=z2)
        b_rows = tl.reshape(inside[:, None] * bias[None, :], [TAC * CB])
        a = _act(z2 * d_rows[:, None] + b_rows[:, None] * colsum[None, :], clamp, HAS_CLAMP).to(dt)

        # Down along W, then along H (this chunk's columns of Dh), for each separable term.
        for r in tl.static_range(RANK):
            dwt = tl.load(dw_ptr + r * TO * TA + to[None, :] * TA + ta[:, None])  # [TA, TO]
            dh = tl.load(dh_ptr + r * TOH * TAH + toh[:, None] * TAH + k * TAC + tac[None, :])  # [TOH, TAC]
            y1 = tl.dot(a, dwt, input_precision=PRECISION)  # [TAC*CB, TO]
            if SPLIT:
                y1 = tl.dot(a, tl.load(dw_ptr + (RANK + r) * TO * TA + to[None, :] * TA + ta[:, None]), acc=y1)
            y1 = tl.reshape(y1.to(dt), [TAC, CB * TO])
            y = tl.dot(dh, y1, acc=y, input_precision=PRECISION)  # [TOH, CB*TO]
            if SPLIT:
                dh_lo = tl.load(dh_ptr + (RANK + r) * TOH * TAH + toh[:, None] * TAH + k * TAC + tac[None, :])
                y = tl.dot(dh_lo, y1, acc=y)

    # The kept outputs [step_h rows, step columns, CB channels], times the next layer's scaling.
    y = tl.reshape(y, [TOH, CB, TO])
    if OUT_SCALE:
        y = y * tl.load(oscale_ptr + b * C + c, mask=cmask, other=0.0)[None, :, None]
    oh = v0h + toh
    ow = v0w + to
    keep = (toh < step_h) & (oh < n_out)
    keep_w = (to < step) & (ow < n_out)
    ptr = out_ptr + ((b * n_out + oh).to(tl.int64)[:, None, None] * n_out + ow[None, :, None]) * C + c[None, None, :]
    tl.store(
        ptr, tl.permute(y, (0, 2, 1)).to(dt), mask=keep[:, None, None] & keep_w[None, :, None] & cmask[None, None, :]
    )


NUM_WARPS = 4  # per program (benchmarks/sg3_fused_tuning.py measures 4 and 8)
MAX_REGISTERS = 0  # > 0: cap on registers per thread (more programs per multiprocessor, maybe spills)
last_compiled = None  # the kernel the last call launched (its registers, spills, shared memory: tuning)


@dataclass(frozen=True)
class FusedPlan:
    """One layer's tile sizes and filter matrices (float64 numpy; `matrices` casts them)."""

    up: int
    down: int
    TA: int  # up-sampled columns a tile computes
    TI: int  # input columns a tile reads
    TO: int  # output columns a tile computes, of which `step` are kept
    step: int
    TAH: int  # up-sampled rows a tile computes, in chunks of TAC
    TAC: int
    TIC: int  # input rows a chunk reads
    TOH: int  # output rows a tile computes, of which `step_h` are kept
    step_h: int
    CB: int  # channels per program
    uw: np.ndarray  # [TA, TI]: up along W
    uc: np.ndarray  # [TAC, TIC]: up along H, one chunk
    dh: np.ndarray  # [rank, TOH, TAH]
    dw: np.ndarray  # [rank, TO, TA]

    @property
    def rank(self) -> int:
        return self.dh.shape[0]

    def matrices(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """(uw, uc, dh, dw) in `dtype`; for a half dtype each with its rounding error appended as
        a second half-precision part along the first axis (hi, lo: hi + lo equals the float64
        taps to about 2^-22), so that the products keep float32-accurate taps: half taps alone
        are a gain error that every layer repeats (NVIDIA's fp16 reference path casts its taps
        to fp16; measured at T-256: 55.1 dB from the float32 output, as NVIDIA's)."""
        out = []
        for m in (self.uw, self.uc, self.dh, self.dw):
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


def _up_matrix(g: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """U[a, t] = g[a % up, t - a // up] where that tap exists: `rows` up-sampled samples from
    `cols` input samples, the first up-sampled sample a multiple of up."""
    up, J = g.shape
    u = np.zeros((rows, cols))
    for a in range(rows):
        for j in range(J):
            if a // up + j < cols:
                u[a, a // up + j] = g[a % up, j]
    return u


def _kept(size: int, L: int, up: int, down: int) -> int:
    """Outputs kept per tile of `size` up-sampled samples: all whose L taps lie in the tile,
    the next tile's first up-sampled sample a multiple of up (then U is tile-invariant)."""
    step = (size - L) // down + 1
    while step * down % up:
        step -= 1
    return step


def fused_plan(
    g: np.ndarray,
    kd: np.ndarray,
    down: int,
    channels: int,
    tile: int | None = None,
    channels_per_program: int = 0,
    rows: int | None = None,
    chunk: int | None = None,
) -> FusedPlan:
    """Plan a layer from its polyphase up taps g [up, J] and correlation down taps kd ([L] or
    [L, L]): tiles of `tile` (TA) up-sampled columns and `rows` (TAH) up-sampled rows, computed
    `chunk` (TAC) rows at a time, and CB channels per program. The defaults are what
    benchmarks/sg3_fused_tuning.py measured best per layer on the H200 at T-256
    (`results_2026-12-03/fused/s3/tuning.log`): up 2: 64 rows in chunks of 16, 16 channels;
    up 4: 32 rows in one chunk, 8 channels (these layers' up-sampled maps are 4x their input)."""
    up, J = g.shape
    L = kd.shape[0]
    terms_h, terms_w = (kd[None], kd[None]) if kd.ndim == 1 else radial_rank_terms(kd)
    TA = tile or 32
    TAH = rows or (64 if up == 2 else 32)
    chunk = chunk or (16 if up == 2 else 32)
    if chunk % up or TAH % chunk:
        raise ValueError(f"fused_plan: chunk {chunk} must be a multiple of up ({up}) and divide rows ({TAH})")
    step, step_h = _kept(TA, L, up, down), _kept(TAH, L, up, down)
    TI, TIC, TO, TOH = _pow2((TA - 1) // up + J), _pow2((chunk - 1) // up + J), _pow2(step), _pow2(step_h)
    dh = np.stack([_band(r, TOH, TAH, down) for r in terms_h])
    dw = np.stack([_band(c, TO, TA, down) for c in terms_w])
    CB = channels_per_program or (16 if up == 2 else 8)
    return FusedPlan(
        up, down, TA, TI, TO, step, TAH, chunk, TIC, TOH, step_h, CB,
        _up_matrix(g, TA, TI), _up_matrix(g, chunk, TIC), dh, dw,
    )  # fmt: skip


def filtered_lrelu(
    x: torch.Tensor,
    dcoef: torch.Tensor,
    bias: torch.Tensor,
    uw: torch.Tensor,
    uc: torch.Tensor,
    dh: torch.Tensor,
    dw: torch.Tensor,
    up: int,
    down: int,
    pad: int,
    n_out: int,
    step: int,
    step_h: int,
    channels_per_program: int,
    clamp: float,
    out_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """x: the modulated conv's output [N, C, n, n] (channels-last, the layer's dtype), dcoef
    [N, C] and bias [C] float32; uw, uc, dh, dw: a `FusedPlan`'s matrices in the layer's dtype
    (their shapes give the tile sizes); pad: the left zero padding of x (negative = crop); clamp
    < 0 for none; out_scale [N, C] float32: multiplies the output before it is rounded (the next
    layer's style scaling, one pass less). Returns [N, C, n_out, n_out] channels-last in x's dtype."""
    N, C, n, _ = x.shape
    x = x.permute(0, 2, 3, 1)  # NHWC view of channels-last memory: no copy
    if not x.is_contiguous():
        raise ValueError("filtered_lrelu expects a channels-last input")
    if any(m.dtype != x.dtype for m in (uw, uc, dh, dw)):
        raise ValueError(f"filtered_lrelu: filter matrices in {uw.dtype}, input in {x.dtype}")
    if out_scale is not None and out_scale.shape != (N, C):
        raise ValueError(f"filtered_lrelu: out_scale {tuple(out_scale.shape)}, expected {(N, C)}")
    out = torch.empty((N, n_out, n_out, C), device=x.device, dtype=x.dtype)
    split = x.dtype != torch.float32  # half: hi + lo parts (FusedPlan.matrices)
    (TA, TI), (TAC, TIC), (TOH, TAH), TO = uw.shape[-2:], uc.shape[-2:], dh.shape[-2:], dw.shape[-2]
    rank = dh.shape[0] // (2 if split else 1)
    tiles_h, tiles_w = -(-n_out // step_h), -(-n_out // step)
    grid = (N * tiles_h * tiles_w, triton.cdiv(C, channels_per_program))
    global last_compiled
    last_compiled = _fused_kernel[grid](
        x, out, dcoef, bias, uw, uc, dh, dw, dcoef if out_scale is None else out_scale.contiguous(),
        n, n_out, C, pad, clamp, tiles_h, tiles_w, step_h, step,
        UP=up, DOWN=down, TI=TI, TA=TA, TO=TO, TAH=TAH, TAC=TAC, TIC=TIC, TOH=TOH,
        CB=channels_per_program, RANK=rank, HAS_CLAMP=clamp >= 0,
        PRECISION="tf32x3" if x.dtype == torch.float32 else "tf32", SPLIT=split,  # (precision: float32 operands only)
        OUT_SCALE=out_scale is not None, num_warps=NUM_WARPS, **({"maxnreg": MAX_REGISTERS} if MAX_REGISTERS else {}),
    )  # fmt: skip
    return out.permute(0, 3, 1, 2)


# The same function as one op for torch.compile (an opaque call in its graph; a fresh output).
filtered_lrelu_op = torch.library.custom_op("genfields::sg3_fused_filtered_lrelu", filtered_lrelu, mutates_args=())


@filtered_lrelu_op.register_fake
def _(x, dcoef, bias, uw, uc, dh, dw, up, down, pad, n_out, step, step_h, channels_per_program, clamp, out_scale=None):
    N, C = x.shape[:2]
    return x.new_empty((N, n_out, n_out, C)).permute(0, 3, 1, 2)
