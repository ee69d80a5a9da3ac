"""StyleGAN2 synthesis precision modes side by side (issue 16): images/s with S captured, share
of the bf16 peak, PSNR against the float32 reference, and where the time of the fastest goes.

Run through `synthesis_benchmark.py --compare` (see its docstring). Every row is measured in
the same process on the same random paper256 generator and the same 256 latents; rows print as
they are measured. Compiled variants share Inductor's kernel cache, so the first compile is the
slow one; max-autotune runs last in a child process killed when the time budget runs out.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from bench_summary import Target, summary_row

from pipeline_lib.dataset.latent_rng import draw_latents
from pipeline_lib.dataset.synthesis import ChunkSynthesizer, SynthesisSettings
from pipeline_lib.generator.fast import FastSynthesis, flops_per_image, psnr
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.images import to_uint8_hwc

BASELINE = "bf16 + compile (earlier default)"
DEFAULT = "float16 + compile (new default)"


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str  # a FastSynthesis mode
    compile: dict | None = None  # torch.compile kwargs; None = eager
    up_impl: str | None = None
    rgb_impl: str | None = None
    cuda_graph: bool = False  # capture the whole chunk (mapping, styles, synthesis) as a CUDA graph
    cudnn_benchmark: bool = False  # let cuDNN time its algorithms (not deterministic across runs)
    child: bool = False  # run in a child process under the remaining time budget
    overrides: dict = field(default_factory=dict)


VARIANTS = [
    Variant(BASELINE, "bfloat16", {}),
    Variant("float16 eager", "float16"),
    Variant(DEFAULT, "float16", {}),
    Variant("float16-mixed eager", "float16-mixed"),
    Variant("float16-mixed + compile", "float16-mixed", {}),
    Variant("float16 + compile [up-sampling polyphase]", "float16", {}, up_impl="polyphase"),
    Variant("float16 + compile [up-sampling cuDNN transposed conv]", "float16", {}, up_impl="transpose"),
    Variant("float16 + compile [up-sampling as 4 exact phase convs]", "float16", {}, up_impl="phases4"),
    Variant("float16 + compile [ToRGB as conv]", "float16", {}, rgb_impl="conv"),
    Variant("float16 + compile [cudnn.benchmark]", "float16", {}, cudnn_benchmark=True),
    Variant("float16 + compile + CUDA graph", "float16", {}, cuda_graph=True),
    Variant(
        "float16 + compile [coordinate descent tuning]", "float16", {"options": {"coordinate_descent_tuning": True}}
    ),
    Variant(
        "float16 + compile [max-autotune-no-cudagraphs]", "float16", {"mode": "max-autotune-no-cudagraphs"}, child=True
    ),
]


class VariantSynthesizer(ChunkSynthesizer):
    """The dataset's chunk pipeline (latents, mapping, styles, synthesis, uint8) around one variant's module."""

    def __init__(self, G, settings: SynthesisSettings, device, variant: Variant):
        super().__init__(G, dataclasses.replace(settings, compile=False), device, cuda_graph=False)
        cuda = self.device.type == "cuda"
        self.fast = FastSynthesis(
            G, variant.precision, channels_last=cuda, up_impl=variant.up_impl, rgb_impl=variant.rgb_impl
        ).to(self.device)
        compiled = variant.compile is not None
        self.synthesize = torch.compile(self.fast, dynamic=False, **variant.compile) if compiled else self.fast
        self.cuda_graph = cuda and variant.cuda_graph


def smoke_config() -> GeneratorConfig:
    return GeneratorConfig(
        z_dim=32, w_dim=32, img_resolution=32, num_mapping_layers=2, channel_base=256, channel_max=32
    )


def timed(fn, iters: int, device) -> float:
    """Seconds per call, after the caller's warm-up (CUDA events on a GPU)."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) / iters
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Context:
    """What every row is measured against: the generator, the float32 reference, the peak."""

    def __init__(self, args, device):
        self.args, self.device = args, device
        cfg = smoke_config() if args.smoke else GeneratorConfig()
        self.G = init_random_generator(cfg, seed=0, w_avg_samples=2000).to(device)
        self.flops = flops_per_image(self.G)
        self.settings = SynthesisSettings.defaults(
            global_seed=0, truncation_psi=1.0, chunk_size=args.chunk, dtype="float32", compile=False
        )
        z = draw_latents(self.settings.latent_rng, 0, 0, args.chunk, self.G.z_dim, device)  # as the chunk's run(0)
        with torch.no_grad():
            self.S, self.S_rgb = self.G.styles(self.G.mapping(z))
            self.img_ref = self.G.synthesize(self.S, self.S_rgb, noise_mode="const")  # official steps, float32
            self.ref_seconds = timed(lambda: self.G.synthesize(self.S, self.S_rgb), max(2, args.iters // 3), device)
        self.ref_u8 = to_uint8_hwc(self.img_ref)


def measure(ctx: Context, variant: Variant) -> tuple[dict, VariantSynthesizer]:
    args, device = ctx.args, ctx.device
    torch.backends.cudnn.benchmark = variant.cudnn_benchmark
    t0 = time.perf_counter()
    synth = VariantSynthesizer(ctx.G, ctx.settings, device, variant)
    with torch.no_grad():
        for _ in range(3):
            out = synth.run(0)
        sync(device)
        warm = time.perf_counter() - t0
        seconds = timed(lambda: synth.run(0), args.iters, device)
        out = synth.run(0)
        img = synth.synthesize(ctx.S, ctx.S_rgb, noise_mode="const").float()
    torch.backends.cudnn.benchmark = False
    err = (out["images"].float() - ctx.ref_u8.float()).abs()
    if not torch.equal(out["styles"], ctx.S):
        raise AssertionError("styles must not depend on the synthesis variant")
    ips = args.chunk / seconds
    up = synth.fast.up_impl
    executed = flops_per_image(ctx.G, up)
    row = {
        "images_per_s": ips,
        "warmup_s": warm,
        "psnr_db": psnr(img, ctx.img_ref),
        "psnr_uint8_db": psnr((out["images"].float() - 128) / 127.5, (ctx.ref_u8.float() - 128) / 127.5),
        "uint8_max_abs_err": err.max().item(),
        "uint8_share_differing": (err > 0).float().mean().item(),
        "share_of_peak": ips * ctx.flops / ctx.peak,
        "executed_gflop_per_image": executed / 1e9,
        "share_of_peak_executed": ips * executed / ctx.peak,
        "finite": bool(torch.isfinite(img).all()),
        "arithmetic": synth.fast.arithmetic,
    }
    return row, synth


def run_child(ctx: Context, variant: Variant, budget_s: float) -> dict | None:
    """Measure `variant` in a child process; None when it does not finish within `budget_s`."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        path = fh.name
    argv = [sys.executable, os.path.abspath(sys.argv[0]), "--compare", "--child", variant.name, "--out", path]
    device = "cuda:0" if ctx.device.type == "cuda" else "cpu"  # cuda:0 = the GPU this process claimed
    argv += [
        "--chunk",
        str(ctx.args.chunk),
        "--iters",
        str(ctx.args.iters),
        "--device",
        device,
        "--peak",
        str(ctx.peak),
    ]
    argv += ["--smoke"] if ctx.args.smoke else []
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        proc.wait(timeout=max(1.0, budget_s))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its compile workers (its own session)
        proc.wait()
        return None
    if proc.returncode != 0:
        return {"error": f"child exited with {proc.returncode}"}
    with open(path) as fh:
        return json.load(fh)["row"]


def kernel_profile(synth, device, top: int = 15) -> dict:
    """GPU kernel time of one chunk (mapping to uint8) by kernel and by kind."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        synth.run(0)
        sync(device)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            synth.run(0)
            sync(device)
        wall = time.perf_counter() - t0
    kernels = []
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", None)
        us = e.self_cuda_time_total if us is None else us
        if us > 0 and e.device_type == torch.autograd.DeviceType.CUDA:
            kernels.append((e.key, us, e.count))
    total = sum(us for _, us, _ in kernels) or 1.0

    def kind(name: str) -> str:
        low = name.lower()
        if low.startswith("triton"):
            return "Triton (fused epilogues, casts, FIR)"
        if any(k in low for k in ("fprop", "dgrad", "wgrad", "conv", "cudnn", "implicit")):
            return "cuDNN conv"
        if any(k in low for k in ("gemm", "cutlass", "cublas", "matmul", "xmma")):
            return "GEMM (cuBLAS: ToRGB bmm, demodulation, mapping)"
        if any(k in low for k in ("nchwtonhwc", "nhwctonchw", "transpose", "copy", "memcpy", "memset")):
            return "layout conversions and copies"
        return "other"

    by_kind: dict[str, float] = defaultdict(float)
    for name, us, _ in kernels:
        by_kind[kind(name)] += us
    print(f"\nprofile of one chunk: GPU kernels {total / 1e3:.2f} ms, wall {wall * 1e3:.2f} ms", flush=True)
    for k, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {k}: {us / 1e3:.2f} ms ({100 * us / total:.1f}%)")
    print(f"\n| kernel (top {top}) | calls | ms | % of GPU time |\n|---|---|---|---|")
    for name, us, count in sorted(kernels, key=lambda k: -k[1])[:top]:
        print(f"| {name[:110]} | {count} | {us / 1e3:.3f} | {100 * us / total:.1f} |")
    return {
        "gpu_ms": total / 1e3,
        "wall_ms": wall * 1e3,
        "by_kind_ms": {k: v / 1e3 for k, v in by_kind.items()},
        "top": [{"kernel": n, "calls": c, "ms": us / 1e3} for n, us, c in sorted(kernels, key=lambda k: -k[1])[:top]],
    }


def print_row(name: str, r: dict, base_ips: float | None) -> None:
    if "images_per_s" not in r:
        print(f"{name}: {r}", flush=True)
        return
    ratio = f"{r['images_per_s'] / base_ips:.2f}x bf16 compiled" if base_ips else ""
    print(
        f"{name}: {r['images_per_s']:.0f} images/s, {100 * r['share_of_peak']:.1f}% of peak "
        f"({100 * r['share_of_peak_executed']:.1f}% at its {r['executed_gflop_per_image']:.3g} GFLOP/image), "
        f"PSNR {r['psnr_db']:.1f} dB (uint8 {r['psnr_uint8_db']:.1f}), max |uint8 diff| {r['uint8_max_abs_err']:.0f}, "
        f"warm-up {r['warmup_s']:.0f} s {ratio}",
        flush=True,
    )


def compare(args, device, peak: float) -> dict:
    t_start = time.perf_counter()
    names = [v.name for v in VARIANTS] if args.variants == "all" else args.variants.split(",")  # names hold no comma
    unknown = set(names) - {v.name for v in VARIANTS}
    if unknown:
        raise SystemExit(f"unknown --variants {sorted(unknown)}; known: {[v.name for v in VARIANTS]}")
    ctx = Context(args, device)
    ctx.peak = args.peak or peak
    if args.child:
        variant = next(v for v in VARIANTS if v.name == args.child)
        row, _ = measure(ctx, variant)
        with open(args.out, "w") as fh:
            json.dump({"row": row}, fh)
        return {}
    ref_ips = args.chunk / ctx.ref_seconds
    print(
        f"float32 reference (official steps, TF32 off): {ref_ips:.0f} images/s, "
        f"{100 * ref_ips * ctx.flops / peak:.1f}% of peak (the PSNR baseline)",
        flush=True,
    )
    report = {"gflop_per_image": ctx.flops / 1e9, "rows": {"float32 reference": {"images_per_s": ref_ips}}}
    fixture_rows = fixture_psnr(args.fixtures, device) if args.fixtures else {}
    if fixture_rows:
        report["official_fixture_psnr_db"] = fixture_rows
    synths, compile_s = {}, 60.0  # the next compile's estimate: the last one seen (the first is the cold one)
    for variant in [v for v in VARIANTS if v.name in names]:
        left = args.time_budget - (time.perf_counter() - t_start)
        if variant.child:
            reserve = 15.0  # the profile and the table
            if left - reserve < 30 or device.type != "cuda" and not args.smoke:
                print(f"{variant.name}: skipped ({left:.0f} s of the budget left)", flush=True)
                continue
            row = run_child(ctx, variant, left - reserve)
            row = row or {"skipped": f"did not finish in the {left - reserve:.0f} s left"}
        else:
            need = (compile_s if variant.compile is not None else 5.0) + 10.0
            if left < need:
                print(
                    f"{variant.name}: skipped ({left:.0f} s of the budget left, about {need:.0f} s needed)", flush=True
                )
                continue
            row, synth = measure(ctx, variant)
            synths[variant.name] = synth
            if variant.compile is not None:
                compile_s = row["warmup_s"]
        base = report["rows"].get(BASELINE, {}).get("images_per_s")
        print_row(variant.name, row, base)
        report["rows"][variant.name] = row
    base = report["rows"].get(BASELINE, {}).get("images_per_s")
    measured = {n: r for n, r in report["rows"].items() if "psnr_db" in r}
    print(
        "\n| path | images/s | % of bf16 peak (56.3 GFLOP) | executed GFLOP/img | % of peak executed "
        "| PSNR vs fp32 (dB) | PSNR uint8 (dB) | max abs uint8 diff | x bf16 compiled |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| float32 reference | {ref_ips:.0f} | {100 * ref_ips * ctx.flops / peak:.1f} | - | - | - | - | 0 | - |")
    for name, r in report["rows"].items():
        if name in measured:
            x = f"{r['images_per_s'] / base:.2f}" if base else "-"
            print(
                f"| {name} | {r['images_per_s']:.0f} | {100 * r['share_of_peak']:.1f} | "
                f"{r['executed_gflop_per_image']:.1f} | {100 * r['share_of_peak_executed']:.1f} | {r['psnr_db']:.1f} | "
                f"{r['psnr_uint8_db']:.1f} | {r['uint8_max_abs_err']:.0f} | {x} |"
            )
    by_name = {v.name: v for v in VARIANTS}
    profiled = [n for n in synths if n in measured and not by_name[n].cuda_graph]  # a graph replay hides its kernels
    fastest = max(profiled, key=lambda n: measured[n]["images_per_s"], default=None)
    if fastest is not None and device.type == "cuda":
        print(f"\nfastest in-process variant without a CUDA graph: {fastest}", flush=True)
        torch.backends.cudnn.benchmark = by_name[fastest].cudnn_benchmark
        report["profile"] = {"variant": fastest, **kernel_profile(synths[fastest], device)}
        torch.backends.cudnn.benchmark = False
    report["wall_s"] = time.perf_counter() - t_start
    report["summary_rows"] = summary_rows(report, args.chunk)
    print(f"\nwall time of the comparison: {report['wall_s']:.0f} s", flush=True)
    return report


def summary_rows(report: dict, batch: int) -> list:
    """The default mode's speed and fidelity beside the earlier default (bf16 compiled), measured in
    the same run, against issue 16's targets (benchmarks/all_stages.py prints them)."""
    rows = report["rows"]
    ours, base = rows.get(DEFAULT, {}), rows.get(BASELINE, {})
    ref = rows["float32 reference"]["images_per_s"]
    missing = "" if "images_per_s" in ours else f"{DEFAULT}: {ours.get('skipped', 'not measured (time budget)')}"
    speed_note = missing or f"{DEFAULT} vs {BASELINE}; float32 reference {ref:.0f} img/s"
    if "images_per_s" in ours:
        speed_note += f" ({ours['images_per_s'] / ref:.1f}x)"
    fixture = report.get("official_fixture_psnr_db", {}).get("float16")
    fidelity_note = missing or f"uint8 {ours['psnr_uint8_db']:.1f} dB; baseline = {BASELINE}" + (
        f"; official fixture generator float16 {fixture:.1f} dB" if fixture is not None else ""
    )
    pct = 100 * ours["share_of_peak"] if "share_of_peak" in ours else None
    return [
        summary_row(
            f"StyleGAN2 synthesis, batch {batch}, float16 compiled", ours.get("images_per_s"),
            base.get("images_per_s"), "img/s", Target(">=", 10_000, "img/s"), speed_note, pct,
        ),
        summary_row(
            "StyleGAN2 float16 fidelity vs float32", ours.get("psnr_db"), base.get("psnr_db"), "dB",
            Target(">=", 50, "dB"), fidelity_note, ratio=False,
        ),
    ]  # fmt: skip


def fixture_psnr(folder: str, device) -> dict:
    """PSNR of each mode against NVIDIA's own float32 images of the official fixture generator."""
    import numpy as np

    from pipeline_lib.generator.stylegan2 import Generator

    kwargs = json.load(open(os.path.join(folder, "generator_small.json")))["kwargs"]
    state = np.load(os.path.join(folder, "generator_small.npz"))
    cases = np.load(os.path.join(folder, "cases_small.npz"))
    G = Generator(GeneratorConfig.from_official_kwargs(kwargs))
    G.load_state_dict({k: torch.from_numpy(np.array(state[k])) for k in state.files})
    G = G.eval().requires_grad_(False).to(device)
    img = torch.from_numpy(cases["img"]).to(device)
    rows = {}
    with torch.no_grad():
        S, S_rgb = G.styles(torch.from_numpy(cases["ws"]).to(device))
        for name in ("float32", "bfloat16", "float16", "float16-mixed (blocks 16-32)"):
            mode = name.split(" ")[0]
            extra = {"num_fp16_res": 2} if "mixed" in name else {}
            fast = FastSynthesis(G, mode, channels_last=device.type == "cuda", **extra).to(device)
            rows[name] = psnr(fast(S, S_rgb), img)
    print(
        "official fixture generator vs NVIDIA's float32 images (eager): "
        + ", ".join(f"{k} {v:.1f} dB" if math.isfinite(v) else f"{k} exact" for k, v in rows.items()),
        flush=True,
    )
    return rows
