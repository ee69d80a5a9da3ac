"""StyleGAN3 synthesis speed on a GPU, side by side: our float32 reference, the fast path
(fp16-mixed / bf16, eager / torch.compile) and NVIDIA's official code with its reference ops forced
(its CUDA plugins do not build with torch 2.11), all on the same random weights of the released
shapes; with PSNR against our float32 reference, peak memory and the share of the half-precision peak.

    PYTHONPATH=. python benchmarks/stylegan3_benchmark.py --configs t256,r256,t1024 --out results.json

NVIDIA's code is read from `.nvlabs_stylegan3/` (a git-ignored checkout, never committed).
Speed does not depend on the weights; the random ones are calibrated like trained ones
(magnitude_ema) so that the clamp and the half-precision ranges see realistic magnitudes.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
import types
from pathlib import Path

import torch

from pipeline_lib.generator.fast import psnr
from pipeline_lib.generator.stylegan3 import StyleGAN3Generator
from pipeline_lib.generator.stylegan3_fast import StyleGAN3FastSynthesis, flops_per_image
from pipeline_lib.generator.stylegan3_layers import StyleGAN3Config

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan3_ref"
CONFIGS = {  # name: (structure file, overrides, batch)
    "t256": ("stylegan3-t-ffhqu-256x256", {}, 64),
    "r256": ("stylegan3-t-ffhqu-256x256", {"r": True}, 64),
    "t1024": ("stylegan3-t-ffhq-1024x1024", {}, 32),
}
FAST = {  # name: (dtype, mixed, compile)
    "fast fp32 eager": (torch.float32, True, False),
    "fast fp16-mixed eager": (torch.float16, True, False),
    "fast bf16-mixed eager": (torch.bfloat16, True, False),
    "fast fp16-mixed compile": (torch.float16, True, True),
    "fast bf16-mixed compile": (torch.bfloat16, True, True),
    "fast bf16-all compile": (torch.bfloat16, False, True),
}
DEFAULT_VARIANTS = ",".join(k for k in FAST if k != "fast bf16-all compile")


def official_kwargs(name: str, fixtures: Path) -> dict:
    """The released config's constructor kwargs (from the fixture's structure JSON)."""
    structure, over, _ = CONFIGS[name]
    d = json.loads((fixtures / f"structure_{structure}.json").read_text())
    kw = {**d["kwargs"], **{k: v for k, v in d["common"].items() if k != "c_dim"}}
    if over.get("r"):  # train.py's stylegan3-r: channel base/max doubled, 1x1 convs, radial filters
        kw.update(channel_base=kw["channel_base"] * 2, channel_max=kw["channel_max"] * 2)
        kw.update(conv_kernel=1, use_radial_filters=True)
    return kw


@torch.no_grad()
def random_generator(cfg: StyleGAN3Config, seed: int, device) -> StyleGAN3Generator:
    """Official random init with trained-looking biases, magnitude_ema calibrated on the GPU
    (init_random_stylegan3 does the same on the CPU, too slow at 1024 px)."""
    torch.manual_seed(seed)
    G = StyleGAN3Generator(cfg)
    for name, p in G.named_parameters():
        if name.startswith("synthesis.input.affine"):
            p.add_(0.05 * torch.randn(p.shape))
        elif name.startswith("mapping") and name.endswith(".bias"):
            p.copy_(torch.randn(p.shape) * 10)
        elif name.endswith("affine.bias"):
            p.copy_(1 + 0.1 * torch.randn(p.shape))
        elif name.endswith(".bias"):
            p.copy_(0.1 * torch.randn(p.shape))
    G = G.to(device).eval().requires_grad_(False)
    G.mapping.w_avg.copy_(G.mapping(torch.randn([2000, cfg.z_dim], device=device))[:, 0].mean(dim=0))

    def calibrate(module, args):  # returns None: a pre-hook's return value would replace the inputs
        module.magnitude_ema.copy_(args[0].square().mean())

    hooks = [G.module_of(s).register_forward_pre_hook(calibrate) for s in G.conv_layers + G.rgb_layers]
    img = G(torch.randn([4, cfg.z_dim], device=device))
    for h in hooks:
        h.remove()
    G.module_of(G.rgb_layers[0]).magnitude_ema.mul_((img.std() / 0.5).square())
    return G


def nvidia_generator(G: StyleGAN3Generator, kwargs: dict, root: Path):
    """NVIDIA's Generator with our weights (same state_dict keys), reference ops forced."""
    sys.path.insert(0, str(root))
    for missing in ("requests",):  # imported by dnnlib/util.py, unused here
        try:
            __import__(missing)
        except ImportError:
            sys.modules[missing] = types.ModuleType(missing)
    try:
        import pkg_resources  # noqa: F401  (conv2d_gradfix: parse_version only)
    except ImportError:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    try:
        import distutils.util  # noqa: F401
    except ImportError:
        try:
            import setuptools  # noqa: F401  (provides distutils on Python >= 3.12)
        except ImportError:
            sys.modules["distutils"] = types.ModuleType("distutils")
            sys.modules["distutils.util"] = types.SimpleNamespace(strtobool=lambda v: v.lower() in ("1", "true", "yes"))
    from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d

    for mod in (bias_act, filtered_lrelu, upfirdn2d):
        mod._init = lambda: False  # the plugins raise on torch 2.11: take the reference paths
    from training.networks_stylegan3 import Generator

    nv = Generator(**{**kwargs, "c_dim": 0})
    nv.load_state_dict(G.state_dict(), strict=True)
    return nv.to(next(G.parameters()).device).eval().requires_grad_(False)


def timed(fn, warmup: int, iters: int) -> tuple[float, torch.Tensor]:
    for _ in range(warmup):
        out = fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        out = fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iters, out


def measure(name, fn, batch, ref, warmup, iters, flops, peak, fp32_ok=True):
    """One row: img/s, PSNR of the first images vs `ref`, peak GB; OOM reported, not raised."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    try:
        with torch.no_grad():
            sec, out = timed(fn, warmup, iters)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"path": name, "batch": batch, "error": "out of memory"}
    k = ref.shape[0]
    row = {
        "path": name, "batch": batch, "img_s": batch / sec, "psnr_db": psnr(out[:k], ref) if ref is not None else None,
        "max_abs_err": (out[:k].float() - ref).abs().max().item(), "finite": bool(torch.isfinite(out).all()),
        "peak_gb": torch.cuda.max_memory_allocated() / 1e9, "wall_s": time.time() - t0,
    }  # fmt: skip
    row["pct_peak"] = 100 * flops * row["img_s"] / peak
    return row


def measure_peak(device) -> float:
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    sec, _ = timed(lambda: a @ b, 3, 20)
    return 2 * 8192**3 / sec


def run_config(name, args, peak, results, t_start, device="cuda"):
    device = torch.device(device)
    kwargs = official_kwargs(name, args.fixtures)
    cfg = StyleGAN3Config.from_official_kwargs(kwargs)
    G = random_generator(cfg, 0, device)
    batch = CONFIGS[name][2]
    conv_flops, fir_flops = flops_per_image(G)
    flops = conv_flops + fir_flops
    torch.manual_seed(1)
    S, S_rest = G.styles(G.mapping(torch.randn([batch, cfg.z_dim], device=device), truncation_psi=0.7))
    k = 8 if cfg.img_resolution <= 256 else 4
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        ref = G.synthesize(S[:k], S_rest[:k]).float()
    info = {"config": name, "kwargs": kwargs, "conv_gflop": conv_flops / 1e9, "fir_gflop": fir_flops / 1e9}
    rows = []
    ref_batch = batch if cfg.img_resolution <= 256 else 4
    reference = functools.partial(G.synthesize, S[:ref_batch], S_rest[:ref_batch])
    rows.append(measure("reference fp32", reference, ref_batch, ref, 1, 2, flops, peak))
    print(json.dumps(rows[-1]), flush=True)
    for vname, (dtype, mixed, comp) in FAST.items():
        if vname not in args.variants.split(",") and args.variants != "all":
            continue
        if comp and time.time() - t_start > args.time_budget:
            rows.append({"path": vname, "error": "skipped (time budget)"})
            continue
        fast = StyleGAN3FastSynthesis(G, dtype=dtype, mixed=mixed).to(device)
        fn = torch.compile(fast) if comp else fast
        rows.append(measure(vname, functools.partial(fn, S, S_rest), batch, ref, 2, 10, flops, peak))
        print(json.dumps(rows[-1]), flush=True)
        fast = fn = None  # free its buffers before the next variant
    if args.nvidia:
        torch.backends.cudnn.allow_tf32 = True  # torch's default, as NVIDIA's code runs as shipped
        nv = nvidia_generator(G, kwargs, args.nvidia)
        with torch.no_grad():  # the same z as the styles above
            torch.manual_seed(1)
            ws = G.mapping(torch.randn([batch, cfg.z_dim], device=device), truncation_psi=0.7)
        for force_fp32 in (False, True) if name == "t256" else (False,):
            label = "NVIDIA official, ref ops, " + ("fp32" if force_fp32 else "fp16-mixed")
            for b in (batch, 4) if cfg.img_resolution > 256 else (batch,):
                call = functools.partial(nv.synthesis, ws[:b], force_fp32=force_fp32)
                row = measure(label, call, b, ref, 1, 2, flops, peak)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if "error" not in row:
                    break
        nv = None
    nv_rows = [r for r in rows if r["path"].startswith("NVIDIA") and "img_s" in r and "fp16" in r["path"]]
    for r in rows:
        if nv_rows and "img_s" in r:
            r["x_nvidia"] = r["img_s"] / nv_rows[0]["img_s"]
    results.append({**info, "rows": rows})


def table(results) -> str:
    lines = []
    for res in results:
        lines.append(f"\n{res['config']}: conv {res['conv_gflop']:.1f} + FIR {res['fir_gflop']:.1f} GFLOP/img")
        lines.append("| path | batch | img/s | x NVIDIA | PSNR dB | max abs err | peak GB | % peak |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in res["rows"]:
            if "img_s" not in r:
                lines.append(f"| {r['path']} | {r.get('batch', '-')} | {r['error']} | | | | | |")
                continue
            lines.append(
                f"| {r['path']} | {r['batch']} | {r['img_s']:,.1f} | {r.get('x_nvidia', float('nan')):.1f} | "
                f"{r['psnr_db']:.1f} | {r['max_abs_err']:.1e} | {r['peak_gb']:.1f} | {r['pct_peak']:.1f} |"
            )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="t256,r256,t1024")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated FAST names, or 'all'")
    ap.add_argument("--nvidia", type=Path, default=Path(".nvlabs_stylegan3"), help="NVIDIA checkout ('' = skip)")
    ap.add_argument("--fixtures", type=Path, default=FIXTURES)
    ap.add_argument("--time-budget", type=float, default=300, help="seconds after which compiles are skipped")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.nvidia and not args.nvidia.exists():
        args.nvidia = None
    t_start = time.time()
    peak = measure_peak(torch.device("cuda"))
    print(f"bf16 matmul peak {peak / 1e12:.0f} TFLOP/s, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    results = []
    for name in args.configs.split(","):
        run_config(name, args, peak, results, t_start)
        if args.out:
            args.out.write_text(json.dumps({"peak_flops": peak, "results": results}, indent=1))
    print(table(results))
    if not math.isfinite(peak):
        sys.exit(1)


if __name__ == "__main__":
    main()
