"""StyleGAN3 synthesis speed on a GPU, side by side: our float32 reference (the baseline of the
ratio column), the fast path (stencil filtered leaky ReLU; fp16-mixed, compiled and eager) and,
when a checkout exists, NVIDIA's official code with its reference ops forced (its CUDA plugins do
not build with torch 2.11), all on the same random weights of the released shapes; with PSNR
against our float32 reference, peak memory, the share of the bf16 matmul peak, the FIR passes'
share of the measured memory bandwidth, and a torch.profiler table of one compiled call.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python benchmarks/stylegan3_benchmark.py \
        --fixtures .device/fixtures/stylegan3_ref --time-budget 240 --out $OUT/stylegan3.json

Rows are printed as they are measured (T-256 first: the baseline, then the compiled fp16 path),
so a run cut short still leaves the important ones. Compiled rows are skipped once
`--time-budget` seconds have passed. `--device cpu --smoke` runs the same code on a tiny
generator (eager rows only unless `--variants` names compiled ones) to check the script.
NVIDIA's code is read from `--nvidia` (default `.nvlabs_stylegan3/`, a git-ignored checkout,
never committed; its rows are skipped when it is absent).
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
from bench_summary import Target, summary_row

from pipeline_lib.generator.fast import psnr
from pipeline_lib.generator.stylegan3 import StyleGAN3Generator
from pipeline_lib.generator.stylegan3_fast import StyleGAN3FastSynthesis, fir_bytes_per_image, flops_per_image
from pipeline_lib.generator.stylegan3_layers import StyleGAN3Config

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan3_ref"
CONFIGS = {  # name: (structure file, overrides, batch, reference batch, fast variants)
    "t256": ("stylegan3-t-ffhqu-256x256", {}, 64, 64, "fast fp16-mixed compile,fast fp16-mixed compile passes"),
    "r256": ("stylegan3-t-ffhqu-256x256", {"r": True}, 64, 64, "fast fp16-mixed compile"),
    "t1024": ("stylegan3-t-ffhq-1024x1024", {}, 32, 4, "fast fp16-mixed compile"),
}
FAST = {  # name: (dtype, mixed, compile); the filtered lrelu is fir="auto" (Triton without gradients on CUDA)
    "fast fp16-mixed compile": (torch.float16, True, True),
    "fast fp16-mixed eager": (torch.float16, True, False),
    "fast bf16-mixed compile": (torch.bfloat16, True, True),
    "fast bf16-mixed eager": (torch.bfloat16, True, False),
    "fast fp32 eager": (torch.float32, True, False),
    "fast fp32 compile": (torch.float32, True, True),
    "fast fp16-mixed compile tf32": (torch.float16, True, True),  # float32 layers' convs in TF32 (NVIDIA as shipped)
    "fast fp16 compile": (torch.float16, False, True),  # every layer in fp16
    "fast fp16-mixed compile stencil": (torch.float16, True, True),  # the stencil passes (fir="stencil")
    "fast fp16-mixed compile passes": (torch.float16, True, True),  # four Triton passes (fir="triton-passes")
}
TARGETS = {"t256": Target(">=", 1500, "img/s"), "r256": Target(">=", 600, "img/s")}  # issue 16
SMOKE = {"img_resolution": 64, "channel_base": 384, "channel_max": 24, "z_dim": 64, "w_dim": 64}  # --smoke


def official_kwargs(name: str, fixtures: Path, smoke: bool = False) -> dict:
    """The released config's constructor kwargs (from the fixture's structure JSON); `smoke`
    shrinks them to the fixtures' small generator."""
    structure, over = CONFIGS[name][:2]
    d = json.loads((fixtures / f"structure_{structure}.json").read_text())
    kw = {**d["kwargs"], **{k: v for k, v in d["common"].items() if k != "c_dim"}}
    if over.get("r"):  # train.py's stylegan3-r: channel base/max doubled, 1x1 convs, radial filters
        kw.update(channel_base=kw["channel_base"] * 2, channel_max=kw["channel_max"] * 2)
        kw.update(conv_kernel=1, use_radial_filters=True)
    if smoke:
        kw.update(SMOKE, mapping_kwargs={"num_layers": 2})
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, seconds: float = 2.0) -> tuple[float, float, torch.Tensor]:
    """(seconds of the first call (compilation included), seconds per call after it, output):
    one warm-up call more, then as many calls as fit in about `seconds` (at least 2)."""
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    iters = max(2, min(50, int(seconds / max(time.perf_counter() - t0, 1e-6))))
    t0 = time.perf_counter()
    for _ in range(iters):
        out = fn()
    sync(device)
    return first, (time.perf_counter() - t0) / iters, out


def measure(name, fn, batch, ref, ctx) -> dict:
    """One row: img/s, ratio to the baseline, PSNR of the first images vs `ref`, peak GB, shares
    of the bf16 peak and of the memory bandwidth; OOM reported, not raised."""
    device = ctx["device"]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with torch.no_grad():
            first, sec, out = timed(fn, device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"path": name, "batch": batch, "error": "out of memory"}
    k = ref.shape[0]
    row = {
        "path": name, "batch": batch, "img_s": batch / sec, "first_call_s": first,
        "psnr_db": psnr(out[:k], ref), "max_abs_err": (out[:k].float() - ref).abs().max().item(),
        "finite": bool(torch.isfinite(out).all()),
        "peak_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan"),
    }  # fmt: skip
    row["pct_peak"] = 100 * ctx["flops"] * row["img_s"] / ctx["peak"]
    if name in ctx.get("fir_bytes", {}):
        row["fir_pct_bw"] = 100 * ctx["fir_bytes"][name] * row["img_s"] / ctx["bandwidth"]
    if ctx.get("baseline"):
        row["x_baseline"] = row["img_s"] / ctx["baseline"]
    return row


def emit(rows: list, row: dict) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)


def measure_peak(device) -> tuple[float, float]:
    """(bf16 matmul FLOP/s, copy bandwidth in bytes/s) of the device."""
    n = 8192 if device.type == "cuda" else 512
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    _, sec, _ = timed(lambda: a @ b, device, 0.5)
    big = torch.empty(2**28 if device.type == "cuda" else 2**22, device=device, dtype=torch.float16)
    _, sec_copy, _ = timed(lambda: big.clone(), device, 0.5)
    return 2 * n**3 / sec, 2 * big.numel() * big.element_size() / sec_copy


def profile_table(fn, device, rows: int = 15) -> str:
    """torch.profiler's top kernels (self device time) of one call of `fn` (already warm)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.no_grad(), profile(activities=acts) as prof:
        fn()
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    try:
        return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=90)
    except (AttributeError, KeyError):
        return prof.key_averages().table(sort_by="self_device_time_total", row_limit=rows, max_name_column_width=90)


def run_config(name, args, ctx, results, t_start):
    device = ctx["device"]
    kwargs = official_kwargs(name, args.fixtures, args.smoke)
    cfg = StyleGAN3Config.from_official_kwargs(kwargs)
    G = random_generator(cfg, 0, device)
    _, _, batch, ref_batch, variants = CONFIGS[name]
    if args.smoke:
        batch, ref_batch = 4, 4
    variants = [v for v in (args.variants or variants).split(",") if v]
    conv_flops, fir_flops = flops_per_image(G)
    ctx.update(flops=conv_flops + fir_flops, baseline=None, fir_bytes={})
    torch.manual_seed(1)
    S, S_rest = G.styles(G.mapping(torch.randn([batch, cfg.z_dim], device=device), truncation_psi=0.7))
    k = min(8 if cfg.img_resolution <= 256 else 4, batch)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        ref = G.synthesize(S[:k], S_rest[:k]).float()
    info = {"config": name, "kwargs": kwargs, "conv_gflop": conv_flops / 1e9, "fir_gflop": fir_flops / 1e9}
    print(f"== {name}: conv {conv_flops / 1e9:.1f} + FIR {fir_flops / 1e9:.1f} GFLOP/img", flush=True)
    rows = []
    reference = functools.partial(G.synthesize, S[:ref_batch], S_rest[:ref_batch])
    label = "reference fp32 (baseline)" + (f", batch {ref_batch}" if ref_batch != batch else "")
    emit(rows, measure(label, reference, ref_batch, ref, ctx))
    ctx["baseline"] = rows[-1].get("img_s")
    if ctx["baseline"]:
        rows[-1]["x_baseline"] = 1.0
    for vname in variants:
        dtype, mixed, comp = FAST[vname]
        if comp and time.time() - t_start > args.time_budget:
            emit(rows, {"path": vname, "error": "skipped (time budget)"})
            continue
        fir = {" stencil": "stencil", " passes": "triton-passes"}.get(vname[vname.rfind(" ") :], "auto")
        fast = StyleGAN3FastSynthesis(G, dtype, mixed, channels_last=device.type == "cuda", fir=fir).to(device)
        ctx["fir_bytes"][vname] = fir_bytes_per_image(fast)
        fn = torch.compile(fast, dynamic=False) if comp else fast
        call = functools.partial(fn, S, S_rest)
        torch.backends.cudnn.allow_tf32 = vname.endswith(" tf32")
        emit(rows, measure(vname, call, batch, ref, ctx))
        torch.backends.cudnn.allow_tf32 = False
        if name == "t256" and comp == (device.type == "cuda") and "profile" not in info and "img_s" in rows[-1]:
            info["profile_path"] = vname
            info["profile"] = profile_table(call, device)
            print(f"-- profile of one call of '{vname}' ({name}, batch {batch}):\n{info['profile']}", flush=True)
        fast = fn = call = None  # free its buffers before the next variant
        torch._dynamo.reset()
    if args.nvidia and time.time() - t_start <= args.time_budget:
        torch.backends.cudnn.allow_tf32 = True  # torch's default, as NVIDIA's code runs as shipped
        nv = nvidia_generator(G, kwargs, args.nvidia)
        with torch.no_grad():  # the same z as the styles above
            torch.manual_seed(1)
            ws = G.mapping(torch.randn([batch, cfg.z_dim], device=device), truncation_psi=0.7)
        for force_fp32 in (False, True) if name == "t256" else (False,):
            label = "NVIDIA official, ref ops, " + ("fp32" if force_fp32 else "fp16-mixed")
            for b in (batch, 4) if cfg.img_resolution > 256 else (batch,):
                row = measure(label, functools.partial(nv.synthesis, ws[:b], force_fp32=force_fp32), b, ref, ctx)
                emit(rows, row)
                if "error" not in row:
                    break
        nv = None
    results.append({**info, "rows": rows})


def table(results) -> str:
    lines = []
    for res in results:
        lines.append(f"\n{res['config']}: conv {res['conv_gflop']:.1f} + FIR {res['fir_gflop']:.1f} GFLOP/img")
        lines.append(
            "| path | batch | img/s | x baseline | 1st call s | PSNR dB | max abs err | peak GB | % bf16 peak | FIR % BW |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in res["rows"]:
            if "img_s" not in r:
                lines.append(f"| {r['path']} | {r.get('batch', '-')} | {r['error']} | | | | | | | |")
                continue
            lines.append(
                f"| {r['path']} | {r['batch']} | {r['img_s']:,.1f} | {r.get('x_baseline', float('nan')):.2f} | "
                f"{r['first_call_s']:.1f} | {r['psnr_db']:.1f} | {r['max_abs_err']:.1e} | {r['peak_gb']:.1f} | "
                f"{r['pct_peak']:.1f} | {r.get('fir_pct_bw', float('nan')):.0f} |"
            )
    return "\n".join(lines)


def summary_rows(results: list, configs: list) -> list:
    """One row per requested config for benchmarks/all_stages.py: the fastest fast path beside our
    float32 reference; a config missing from `results` was not reached (budget, or killed)."""
    done, rows = {r["config"]: r for r in results}, []
    for name in configs:
        label, target = f"StyleGAN3-{name[0].upper()} {name[1:]} synthesis", TARGETS.get(name)
        if name not in done:
            rows.append(summary_row(label, None, None, "img/s", target, "not reached (time budget, or killed)"))
            continue
        ref = next((r for r in done[name]["rows"] if r["path"].startswith("reference")), {})
        fast = [r for r in done[name]["rows"] if r["path"].startswith("fast") and "img_s" in r]
        best = max(fast, key=lambda r: r["img_s"], default=None)
        nvidia = [
            f"{r['path']} {r['img_s']:.1f} img/s" for r in done[name]["rows"] if "NVIDIA" in r["path"] and "img_s" in r
        ]
        if best is None:
            why = "; ".join(f"{r['path']}: {r['error']}" for r in done[name]["rows"] if "error" in r)
            rows.append(summary_row(label, None, ref.get("img_s"), "img/s", target, f"no fast path measured ({why})"))
            continue
        note = (
            f"{best['path']}, batch {best['batch']}: {best['psnr_db']:.1f} dB vs fp32, "
            + (f"{best['peak_gb']:.1f} GB, " if math.isfinite(best["peak_gb"]) else "")
            + f"first call {best['first_call_s']:.0f} s"
            + ("" if best["finite"] else ", NOT FINITE")
        )
        rows.append(
            summary_row(
                label, best["img_s"], ref.get("img_s"), "img/s", target, "; ".join([note] + nvidia), best["pct_peak"]
            )
        )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="t256,r256,t1024")
    ap.add_argument("--variants", default="", help="comma-separated FAST names for every config (default: per config)")
    ap.add_argument("--nvidia", type=Path, default=Path(".nvlabs_stylegan3"), help="NVIDIA checkout ('' = skip)")
    ap.add_argument("--fixtures", type=Path, default=FIXTURES)
    ap.add_argument("--time-budget", type=float, default=240, help="seconds after which compiled rows are skipped")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny generator, batch 4, eager rows (a CPU check)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.smoke and not args.variants:
        args.variants = "fast fp16-mixed eager,fast fp32 eager"
    if args.nvidia and (str(args.nvidia) in ("", ".") or not args.nvidia.exists()):
        args.nvidia = None
    t_start = time.time()
    device = torch.device(args.device)
    peak, bandwidth = measure_peak(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"bf16 matmul peak {peak / 1e12:.0f} TFLOP/s, copy {bandwidth / 1e12:.2f} TB/s, {name}, torch {torch.__version__}"
    )
    ctx = {"device": device, "peak": peak, "bandwidth": bandwidth}
    results = []
    for config in args.configs.split(","):
        run_config(config, args, ctx, results, t_start)
        if args.out:
            rows = summary_rows(results, args.configs.split(","))
            report = {"peak_flops": peak, "bandwidth": bandwidth, "results": results, "summary_rows": rows}
            args.out.write_text(json.dumps(report, indent=1))
        print(f"-- {config} done at {time.time() - t_start:.0f} s", flush=True)
    print(table(results))
    if not math.isfinite(peak):
        sys.exit(1)


if __name__ == "__main__":
    main()
