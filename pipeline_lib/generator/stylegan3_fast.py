"""Inference-and-gradient StyleGAN3 (T and R) synthesis for throughput, with the reference's call.

Why it is faster than `StyleGAN3Generator.synthesize` (which follows the official reference ops):
- The modulated conv runs as ONE ordinary conv with the shared weight (input scaled by the styles,
  output by the demodulation coefficients), not a grouped conv with per-sample weights, so cuDNN
  uses its tensor-core kernels; activations are channels-last (what cuDNN's fp16 kernels want).
- The filtered leaky ReLU (bias, up-sample, lrelu x sqrt 2, clamp, down-sample; the paper's
  Fig. 4 / NVIDIA's `filtered_lrelu`) is written as STENCILS, weighted sums of shifted slices
  with the filter taps as Python floats, never as convolutions: cuDNN runs FIR filters only as
  grouped convs with 1-4 channels per group, on slow generic kernels (benchmarks/NOTES.md), while
  `torch.compile` turns each stencil into one memory-bound Triton kernel with the casts, bias,
  leaky ReLU and clamp fused in. Four passes per layer:
    up H:   z[up*t + p] = sum_j g[p, j] x[t + j]     (polyphase: each output phase p is a short
    up W:   the same along W                           filter at the INPUT rate; the phases are
                                                       interleaved by stack + reshape, so the
                                                       zero-inserted map never exists)
    down W: y[v] = sum_i kd[i] a(z[down*v + i])        (strided slices: only the kept samples are
    down H: the same along H                           computed; a = leaky ReLU x sqrt 2, clamp,
                                                       inlined into the loads); config R's radial
                                                       filter of its non-critical layers is one
                                                       2-D pass, y[v, u] = sum_ij k[i, j] a(z[dv+i, du+j]).
  Every tap is accumulated in float32 and each pass stores the layer's dtype. Compiled, a layer
  is the conv (cuDNN), up H (demodulation, bias and padding inlined), up W, down W, and down H
  fused with the next layer's style scaling. Eager runs one op per up tap and the down-sampling
  as depthwise strided convs (`_eager_down`): correct, not fast.
- Layout and memory traffic: the stencils run on the NHWC view of channels-last maps (a
  permute, no copy): channels are the contiguous axis, every slice load is coalesced, and the
  next modulated conv reads the output as channels-last without a transpose. Per layer the
  passes move about 36 n^2 C bytes in fp16 (`fir_bytes_per_image`), against about 4 n^2 C for
  one fully fused kernel. In NCHW (`channels_last=False`) the same stencils run on NCHW tensors.
- On CUDA without gradients (`fir="auto"`) the half layers run ONE fused Triton kernel per layer
  (`stylegan3_fused.py`: the up-sampled tile stays on chip, the taps are tensor-core products
  of banded filter matrices, the output leaves multiplied by the next layer's styles) and the
  float32 layers four Triton passes (`stylegan3_triton.py`).
- Channels are stored padded to a multiple of 8 (`aligned`; zero weights, zero bias): the
  released 362, 181 and 91 otherwise misalign every NHWC pixel (no vector loads, and cuDNN's
  half kernels want multiples of 8); measured at T-256, the passes went from 364 to 521 img/s.
- Precision as NVIDIA runs it: half precision (fp16, or bf16) only in the layers where the official
  code uses fp16 (`use_fp16`, the last `num_fp16_res` sampling rates), float32 elsewhere, the
  official conv_clamp; styles and demodulation stay float32 and the conv weight is pre-scaled by
  1/sqrt(fan-in) so that no fp16 product overflows. `mixed=False` runs every layer in `dtype`.

With dtype float32 it equals the reference to rounding (tests/test_stylegan3_fast.py), also
compiled. Gradients flow through it (plain differentiable ops), as the training step needs.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.generator.stylegan3 import StyleGAN3Generator
from pipeline_lib.generator.stylegan3_layers import StyleGAN3LayerSpec
from pipeline_lib.generator.tf32_conv import conv2d_tf32

LRELU_SLOPE, LRELU_GAIN = 0.2, math.sqrt(2)
CHANNEL_ALIGN = 8  # channels padded (zero weights) to a multiple: the released 362/181/91 are not


def aligned(c: int) -> int:
    """The channel count the fast path stores: a multiple of CHANNEL_ALIGN, so that every NHWC
    pixel starts on a 16-byte boundary (vector loads; cuDNN's tensor-core kernels want multiples
    of 8). The extra channels hold zeros: zero weights in and out, zero bias, act(0) = 0."""
    return -(-c // CHANNEL_ALIGN) * CHANNEL_ALIGN


def up_phase_taps(n: int, up: int, pad0: int, pad1: int, kf: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """Polyphase form of: zero-insert `up`, pad (pad0, pad1), correlate with `kf` (length L).

    Output sample up*t + p of that chain equals sum_j g[p, j] * x[t + dmin + j]. Returns g [up, J],
    the left and right zero padding of x (negative = crop) for a valid correlation that yields
    T = ceil(M / up) samples per phase, and M, the chain's output length."""
    L = len(kf)
    m = n * up + pad0 + pad1 - L + 1
    dmin = min(math.ceil((p - pad0) / up) for p in range(up))
    dmax = max((L - 1 + p - pad0) // up for p in range(up))
    J = dmax - dmin + 1
    g = np.zeros([up, J])
    for p in range(up):
        for j in range(J):
            idx = up * (dmin + j) + pad0 - p
            if 0 <= idx < L:
                g[p, j] = kf[idx]
    t = -(-m // up)
    pad_l = -dmin
    return g, pad_l, t + J - 1 - n - pad_l, m


def _slice(x: torch.Tensor, dim: int, start: int, length: int, step: int = 1) -> torch.Tensor:
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, start + step * (length - 1) + 1, step)
    return x[tuple(index)]


def stencil_terms(taps: np.ndarray) -> list[tuple[tuple[int, ...], float]]:
    """The non-zero taps of a 1-D or 2-D filter as ((offset per dim), Python float) pairs: what
    `stencil` unrolls (plain Python, so torch.compile bakes them into the kernel as constants)."""
    taps = np.asarray(taps, dtype=np.float64)
    return [(tuple(int(i) for i in idx), float(taps[idx])) for idx in np.ndindex(*taps.shape) if taps[idx] != 0]


def stencil(x: torch.Tensor, terms, dims: tuple[int, ...], length: int, step: int = 1) -> torch.Tensor:
    """float32 sum over `terms` (`stencil_terms`) of tap * x[step * t + offset] along each of
    `dims`, t < length. Every product is accumulated in float32 whatever x's dtype."""
    acc = None
    for offsets, tap in terms:
        term = x
        for dim, i in zip(dims, offsets):
            term = _slice(term, dim, i, length, step)
        acc = term.float() * tap if acc is None else torch.add(acc, term, alpha=tap)
    return acc


def upsample(x: torch.Tensor, g: list, dim: int, length: int, dtype: torch.dtype) -> torch.Tensor:
    """Polyphase up-sampling along `dim`: phase p = stencil of g[p] (`stencil_terms` of row p of
    `up_phase_taps`, at the input rate), then the phases interleaved (stack after `dim`, merge):
    `length` * len(g) samples, in `dtype`."""
    phases = [stencil(x, gp, (dim,), length).to(dtype) for gp in g]
    return torch.stack(phases, dim=dim + 1).flatten(dim, dim + 1)


class _Layer:
    """Static plan of one layer (sizes, paddings, dtypes, taps as Python floats)."""

    def __init__(self, spec: StyleGAN3LayerSpec, layer: nn.Module, dtype: torch.dtype, torgb: bool):
        self.torgb, self.dtype = torgb, dtype
        self.offset, self.dim = spec.offset, spec.style_dim
        self.k, self.c_in, self.c_out = spec.kernel_size, spec.in_channels, spec.out_channels
        self.c_in_p, self.c_out_p = aligned(self.c_in), self.c_out if torgb else aligned(self.c_out)
        self.up, self.down, self.out_size = layer.spec.up, spec.down, spec.out_size
        self.scale = 1.0 if torgb else 1 / math.sqrt(self.c_in * self.k**2)  # weight pre-scale (fp16 range)
        self.clamp = layer.conv_clamp
        self.radial = layer.down_filter is not None and layer.down_filter.ndim == 2
        self.fused = None  # the fused kernel's FusedPlan, for half layers (StyleGAN3FastSynthesis._prepare)
        if torgb:
            assert self.up == 1 and self.down == 1 and layer.up_filter is None and layer.down_filter is None
            return
        n = spec.in_size + self.k - 1  # the modulated conv's output side
        fu = np.ones(1) if layer.up_filter is None else layer.up_filter.double().cpu().numpy()
        kf = np.flip(fu) * self.up  # convolution -> correlation; gain up per pass (up^2 in all)
        g, self.pad_l, self.pad_r, m = up_phase_taps(n, self.up, spec.padding[0], spec.padding[1], kf)
        self.g = [stencil_terms(gp) for gp in g]  # per output phase
        self.g_array = g  # [up, J], for the Triton kernels
        self.j = g.shape[1]  # taps per phase
        self.t = -(-m // self.up)  # samples per phase
        fd = np.ones(1) if layer.down_filter is None else layer.down_filter.double().cpu().numpy()
        self.kd_array = np.flip(fd, tuple(range(fd.ndim))).copy()  # correlation taps, 1-D or 2-D
        self.kd = stencil_terms(self.kd_array)
        self.n_out = (m - fd.shape[0]) // self.down + 1
        if self.n_out != spec.out_size:
            raise ValueError(f"{spec.short_name}: planned {self.n_out} samples, the layer table says {spec.out_size}")

    def act(self, y: torch.Tensor) -> torch.Tensor:
        """Leaky ReLU x sqrt 2, then the clamp, at the up-sampled rate (float32), on the interleaved
        map as the down stencil reads it (Inductor inlines it into those loads; on the phases it
        would store each phase and copy it into the interleaved map)."""
        y = F.leaky_relu(y, LRELU_SLOPE) * LRELU_GAIN
        return y.clamp(-self.clamp, self.clamp) if self.clamp is not None else y


FIR_IMPLEMENTATIONS = ("stencil", "triton", "triton-passes", "auto")

_TRITON = {}  # the custom ops of stylegan3_fused.py / _triton.py and fused_plan, once imported (never while tracing)


def triton_available() -> bool:
    """Whether Triton imports; imports the filtered-lrelu custom op once if so."""
    if "op" not in _TRITON:
        try:
            from pipeline_lib.generator.stylegan3_fused import filtered_lrelu_op, fused_plan
            from pipeline_lib.generator.stylegan3_triton import filtered_lrelu_op as passes_op
        except ImportError:
            return False
        _TRITON.update(op=filtered_lrelu_op, plan=fused_plan, passes=passes_op)
    return True


class StyleGAN3FastSynthesis(nn.Module):
    def __init__(
        self,
        G: StyleGAN3Generator,
        dtype: torch.dtype = torch.float16,  # the half precision of NVIDIA's fp16 layers (or all, mixed=False)
        mixed: bool = True,  # half only where the official code uses fp16
        channels_last: bool = True,  # NHWC activations (what cuDNN's tensor-core kernels read)
        fir: str = "auto",  # filtered lrelu: "stencil", "triton" (stylegan3_fused.py, no gradient), "triton-passes", "auto"
        tf32: bool | None = None,  # TF32 convs in the float32 layers (default: with a half dtype, as NVIDIA ships)
    ):
        super().__init__()
        if fir not in FIR_IMPLEMENTATIONS:
            raise ValueError(f"fir must be one of {FIR_IMPLEMENTATIONS}, got {fir!r}")
        if fir.startswith("triton") and not channels_last:
            raise ValueError("fir='triton' runs on channels-last activations: pass channels_last=True")
        if fir.startswith("triton") and not triton_available():
            raise ImportError("fir='triton' needs the triton package (pip install triton), or use fir='stencil'")
        self.fir = fir
        # NVIDIA's fp16 path runs its float32 layers' convs with torch's default cuDNN TF32 on;
        # our devices.py turns TF32 off for the float32 reference, so the fast path asks for it
        # here, for those convs only (cuDNN otherwise picks an FFT algorithm: 15 % of the time).
        self.tf32 = dtype != torch.float32 if tf32 is None else tf32
        self.triton = fir != "stencil" and triton_available()
        self.dtype, self.mixed = dtype, mixed
        self.channels_last = channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.style_dim, self.rgb_style_dim = G.style_dim, G.rgb_style_dim
        self.output_scale = G.cfg.output_scale
        self.split = G.rgb_style_dim - 4
        self.input = copy.deepcopy(G.synthesis.input).float().requires_grad_(False)
        self.plans: list[_Layer] = []
        with torch.no_grad():
            for i, spec in enumerate(G.conv_layers + G.rgb_layers):
                self._prepare(i, spec, G.module_of(spec), spec.kind == "torgb")

    @property
    def arithmetic(self) -> str:
        """What computes the pixels, in words (recorded with a dataset)."""
        half = sum(p.dtype != torch.float32 for p in self.plans)
        if half == 0:
            where = "float32 in every layer"
        elif half == len(self.plans):
            where = f"{str(self.dtype).removeprefix('torch.')} in every layer"
        else:
            where = f"{str(self.dtype).removeprefix('torch.')} in NVIDIA's {half} fp16 layers, float32 in the others"
        fir = {
            "stencil": "float32-accumulating stencils",
            "triton": "one fused float32-accumulating Triton kernel per half layer, four Triton passes in float32 "
            "layers (stencils where a gradient is recorded)",
            "triton-passes": "four float32-accumulating Triton passes (stencils where a gradient is recorded)",
            "auto": "on CUDA without gradients one fused float32-accumulating Triton kernel per half layer and four "
            "Triton passes in float32 layers, stencils otherwise",
        }[self.fir]
        tf32 = "; TF32 convs in the float32 layers" if self.tf32 and half else ""
        return f"StyleGAN3FastSynthesis: {where}{tf32}; filtered leaky ReLU as {fir}"

    def _prepare(self, i: int, spec: StyleGAN3LayerSpec, layer: nn.Module, torgb: bool) -> None:
        dt = self.dtype if (spec.use_fp16 or not self.mixed) else torch.float32
        plan = _Layer(spec, layer, dt, torgb)
        self.plans.append(plan)
        w = layer.weight.detach().double()
        if not torgb:
            w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        self.register_buffer(f"wsq{i}", w.square().sum(dim=[2, 3]).t().float().contiguous())  # [I, O]
        w = F.pad(w, [0, 0, 0, 0, 0, plan.c_in_p - plan.c_in, 0, plan.c_out_p - plan.c_out])  # aligned()
        self.register_buffer(f"w{i}", (w * plan.scale).to(dt).contiguous(memory_format=self.memory_format))
        self.register_buffer(f"b{i}", F.pad(layer.bias.detach().float(), [0, plan.c_out_p - plan.c_out]))
        self.register_buffer(f"gain{i}", layer.magnitude_ema.detach().double().rsqrt().float())
        if not torgb:  # the down filter as a depthwise conv weight (correlation taps) for eager
            fd = torch.ones(1) if layer.down_filter is None else layer.down_filter.detach().float()
            kd = fd.flip(list(range(fd.ndim))).cpu()
            self.register_buffer(f"kd{i}", kd.expand(plan.c_out_p, 1, *kd.shape).contiguous())
            self.register_buffer(f"up_taps{i}", torch.from_numpy(plan.g_array).float())  # Triton kernels
            self.register_buffer(f"down_taps{i}", torch.from_numpy(plan.kd_array).float())
            # float32 layers keep the four passes, exact (and 2.5x faster than tf32x3 products there)
            if self.triton and dt != torch.float32:  # the fused kernel's tiles and filter matrices (stylegan3_fused.py)
                plan.fused = _TRITON["plan"](plan.g_array, plan.kd_array, plan.down, plan.c_out_p)
                for name, m in zip(("fuw", "fuc", "fdh", "fdw"), plan.fused.matrices(dt)):
                    self.register_buffer(f"{name}{i}", m)

    def _styles(self, i: int, plan: _Layer, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's float32 input scaling [N, C_in (aligned)] (styles x magnitude_ema gain)
        and demodulation coefficients [N, C_out (aligned)], which scale the conv's output
        before the bias (the modulated conv as one shared-weight conv)."""
        gain = getattr(self, f"gain{i}")
        if plan.torgb:
            s = s * (1 / math.sqrt(plan.c_in * plan.k**2))
            dcoef = torch.ones_like(s[:, :1]) / plan.scale
        else:
            s = s * s.square().mean().rsqrt()
            dcoef = (s.square() @ getattr(self, f"wsq{i}") + 1e-8).rsqrt() / plan.scale
            dcoef = F.pad(dcoef, [0, plan.c_out_p - plan.c_out], value=1.0)  # the zero channels
        return F.pad(s * gain, [0, plan.c_in_p - plan.c_in]), dcoef

    def _conv(self, i: int, plan: _Layer, xs: torch.Tensor) -> torch.Tensor:
        """Shared-weight conv of the style-scaled input, in the layer's dtype."""
        xs = xs.to(plan.dtype).contiguous(memory_format=self.memory_format)
        if self.tf32 and plan.dtype == torch.float32 and xs.is_cuda:  # one op: no graph break (tf32_conv.py)
            return conv2d_tf32(xs, getattr(self, f"w{i}"), plan.k - 1)
        return F.conv2d(xs, getattr(self, f"w{i}"), padding=plan.k - 1)

    def _use_triton(self, x: torch.Tensor) -> bool:
        """The Triton kernels have no backward: the stencils whenever a gradient is recorded."""
        if not self.triton or (torch.is_grad_enabled() and x.requires_grad):
            return False
        if self.fir.startswith("triton"):
            return True
        return x.is_cuda and self.channels_last

    def _triton_filtered_lrelu(
        self, i: int, plan: _Layer, y: torch.Tensor, dcoef: torch.Tensor, next_scale: torch.Tensor | None
    ) -> tuple[torch.Tensor, bool]:
        """The layer's filtered leaky ReLU in Triton; returns (output, whether the fused kernel
        already multiplied it by `next_scale`, the next layer's input scaling)."""
        y = y.contiguous(memory_format=torch.channels_last)
        clamp = -1.0 if plan.clamp is None else float(plan.clamp)
        if self.fir == "triton-passes" or plan.fused is None:
            args = (getattr(self, f"up_taps{i}"), getattr(self, f"down_taps{i}"), plan.pad_l, plan.t, plan.down)
            return _TRITON["passes"](y, dcoef.contiguous(), getattr(self, f"b{i}"), *args, plan.n_out, clamp), False
        f = plan.fused
        mats = [getattr(self, f"{name}{i}") for name in ("fuw", "fuc", "fdh", "fdw")]
        args = (f.up, f.down, plan.pad_l, plan.n_out, f.step, f.step_h, f.CB, clamp, next_scale)
        return _TRITON["op"](y, dcoef.contiguous(), getattr(self, f"b{i}"), *mats, *args), next_scale is not None

    def _filtered_lrelu(self, i: int, plan: _Layer, x: torch.Tensor) -> torch.Tensor:
        """[N, C, n, n] float32 (bias added) -> [N, C, n_out, n_out] in the layer's dtype."""
        if self.channels_last:
            x = x.permute(0, 2, 3, 1)  # NHWC view: channels innermost
            hd, wd = 1, 2
        else:
            hd, wd = 2, 3
        pads = [0, 0] * (x.ndim - 1 - wd) + [plan.pad_l, plan.pad_r] * 2  # W then H, negative = crop
        x = F.pad(x, pads)
        x = upsample(x, plan.g, hd, plan.t, plan.dtype)
        x = plan.act(upsample(x, plan.g, wd, plan.t, plan.dtype).float())
        if torch.compiler.is_compiling():
            if plan.radial:
                x = stencil(x, plan.kd, (hd, wd), plan.n_out, plan.down).to(plan.dtype)
            else:
                x = stencil(x, plan.kd, (wd,), plan.n_out, plan.down).to(plan.dtype)
                x = stencil(x, plan.kd, (hd,), plan.n_out, plan.down).to(plan.dtype)
            return x.permute(0, 3, 1, 2) if self.channels_last else x
        return self._eager_down(i, plan, x.permute(0, 3, 1, 2) if self.channels_last else x)

    def _eager_down(self, i: int, plan: _Layer, z: torch.Tensor) -> torch.Tensor:
        """The down-sampling outside torch.compile: depthwise strided convs (one input and one
        output channel per group, the case cuDNN and oneDNN have kernels for) on the activated
        float32 map, instead of one eager op per tap (144 for config R's radial filter). The
        same sums as the stencils (tests/test_stylegan3_fast.py compares the two)."""
        k, d, c = getattr(self, f"kd{i}"), plan.down, plan.c_out_p
        if plan.radial:
            z = F.conv2d(z, k, stride=d, groups=c)
        else:
            z = F.conv2d(z, k[:, :, None, :], stride=(1, d), groups=c)
            z = F.conv2d(z, k[:, :, :, None], stride=(d, 1), groups=c)
        return z[:, :, : plan.n_out, : plan.n_out].to(plan.dtype)

    def forward(self, S: torch.Tensor, S_rest: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Image [N, C, H, W] float32, as `StyleGAN3Generator.synthesize(S, S_rest)` (which has
        no noise inputs: `noise_mode` is accepted and ignored, as there)."""
        S, S_rest = S.float(), S_rest.float()
        x = self.input(S_rest[:, self.split :])
        x = F.pad(x, [0, 0, 0, 0, 0, self.plans[0].c_in_p - x.shape[1]])  # aligned()
        styles = [
            self._styles(i, plan, (S_rest if plan.torgb else S)[:, plan.offset : plan.offset + plan.dim])
            for i, plan in enumerate(self.plans)
        ]
        scaled = False  # whether x already carries this layer's input scaling (the fused kernel's output)
        for i, plan in enumerate(self.plans):
            scale, dcoef = styles[i]
            y = self._conv(i, plan, x if scaled else x * scale.to(x.dtype)[:, :, None, None])
            if not plan.torgb and self._use_triton(y):
                next_scale = styles[i + 1][0] if i + 1 < len(self.plans) else None
                x, scaled = self._triton_filtered_lrelu(i, plan, y, dcoef, next_scale)
                continue
            scaled = False
            x = y.float() * dcoef[:, :, None, None] + getattr(self, f"b{i}")[None, :, None, None]
            if plan.torgb:
                x = x.clamp(-plan.clamp, plan.clamp) if plan.clamp is not None else x
            else:
                x = self._filtered_lrelu(i, plan, x)
        return x.float() * self.output_scale


def flops_per_image(G: StyleGAN3Generator) -> tuple[float, float]:
    """(modulated-conv FLOPs, FIR FLOPs) per image as the fast path runs them (2 x multiply-adds)."""
    conv = fir = 0.0
    for spec in G.conv_layers + G.rgb_layers:
        n = spec.in_size + spec.kernel_size - 1
        conv += 2 * spec.out_channels * spec.in_channels * spec.kernel_size**2 * n * n
        if spec.kind == "conv":
            up, down, c = G.module_of(spec).spec.up, spec.down, spec.out_channels
            taps_u, taps_d = -(-spec.up_taps // up), spec.down_taps
            t = n * up
            fir += 2 * c * (taps_u * (n * t + t * t))  # polyphase H then W
            fir += (
                2
                * c
                * (taps_d * (t * t / down + t * t / down**2) if not spec.down_radial else taps_d**2 * (t / down) ** 2)
            )
    return conv, fir


def fir_bytes_per_image(fast: StyleGAN3FastSynthesis) -> float:
    """Bytes the filtered leaky ReLUs move per image when each of its passes reads its input once
    and writes its output once (compiled; the stencil re-reads hit the cache): the floor of the
    pass-per-kernel design, for a bandwidth share in the benchmark."""
    total = 0.0
    for plan in fast.plans:
        if plan.torgb:
            continue
        b = torch.finfo(plan.dtype).bits // 8
        n = plan.t + plan.j - 1  # padded input side
        u, v = plan.t * plan.up, plan.n_out
        sizes = [(n, n, b), (u, n, b), (u, n, b), (u, u, b), (u, u, b)]  # (h, w, bytes): reads/writes
        sizes += [(v, v, b)] if plan.radial else [(u, v, b), (u, v, b), (v, v, b)]
        total += plan.c_out_p * sum(h * w * e for h, w, e in sizes)
    return total
