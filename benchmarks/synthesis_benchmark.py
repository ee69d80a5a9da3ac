"""Dataset-generation speed on a GPU: images/s with styles captured, share of the bf16 peak,
ratio to our straightforward float32 path, image error against it, and the wall time of
writing a whole dataset to HDF5.

    python benchmarks/synthesis_benchmark.py --variants all --dataset 48000 --out bench.json

Uses a random-weight generator of the paper256 shape (speed does not depend on the weights).

`--compare` instead puts the precision modes side by side (benchmarks/synthesis_precision.py):
float32 reference, bf16 compiled, float16 and float16-mixed eager and compiled, up-sampling,
ToRGB and compile-option variants, within `--time-budget` seconds, then a kernel profile of
the fastest. `--fixtures DIR` adds each mode's PSNR on the official fixture generator.

    PYTHONPATH=. python benchmarks/synthesis_benchmark.py --compare --time-budget 230 \
        --fixtures .device/fixtures/stylegan2_ref --out $OUT/precision.json
    PYTHONPATH=. python benchmarks/synthesis_benchmark.py --compare --smoke --device cpu --chunk 4 --iters 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.dataset.latent_rng import draw_latents  # noqa: E402
from pipeline_lib.dataset.synthesis import (  # noqa: E402
    ChunkSynthesizer,
    SynthesisSettings,
    merge_shards,
    shard_ranges,
    write_shard,
)
from pipeline_lib.devices import resolve_device  # noqa: E402
from pipeline_lib.generator.fast import flops_per_image, psnr  # noqa: E402
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator  # noqa: E402
from pipeline_lib.images import to_uint8_hwc  # noqa: E402

VARIANTS = {
    # name: (dtype, compile, cuda_graph)
    "fast fp32 eager": ("float32", False, False),
    "fast bf16 eager": ("bfloat16", False, False),
    "fast bf16 + CUDA graph": ("bfloat16", False, True),
    "fast bf16 + compile": ("bfloat16", True, False),
}


def measure_peak_bf16(device) -> float:
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (start.elapsed_time(end) / 1e3)


def timed(fn, iters: int) -> float:
    """Seconds per call on the GPU (CUDA events around `iters` calls after the caller's warm-up)."""
    from synthesis_precision import timed as timed_on

    return timed_on(fn, iters, torch.device("cuda"))


@torch.no_grad()
def reference_chunk(G, z, psi):
    """Our straightforward float32 path: the reference generator, official up-sampling steps."""
    ws = G.mapping(z, truncation_psi=psi)
    S, S_rgb = G.styles(ws)
    return S, G.synthesize(S, S_rgb, noise_mode="const")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--variants", default="all", help="comma-separated names or 'all'")
    ap.add_argument("--dataset", type=int, default=0, help="also write this many faces to HDF5")
    ap.add_argument("--writer-only", type=int, default=0, help="time the HDF5 writer alone on this many faces")
    ap.add_argument("--dataset-variant", default="fast bf16 + compile")
    ap.add_argument("--shard-size", type=int, default=12288)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--compare", action="store_true", help="the precision modes side by side (issue 16)")
    ap.add_argument("--time-budget", type=float, default=230.0, help="--compare: seconds for all rows")
    ap.add_argument("--fixtures", default=None, help="--compare: the official stylegan2_ref fixture folder")
    ap.add_argument("--smoke", action="store_true", help="--compare: a tiny generator (CPU check of the script)")
    ap.add_argument("--device", default="cuda", help="--compare: cuda or cpu (with --smoke)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one --compare row in a child process
    ap.add_argument("--peak", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.compare:
        from synthesis_precision import compare

        device = resolve_device(args.device)
        peak = measure_peak_bf16(device) if device.type == "cuda" and args.peak is None else (args.peak or 1e12)
        if device.type == "cuda" and not args.child:
            print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}; bf16 matmul peak measured "
                  f"{peak / 1e12:.0f} TFLOP/s", flush=True)  # fmt: skip
        report = compare(args, device, peak)
        if args.out and not args.child:
            Path(args.out).write_text(json.dumps({"peak_tflops": peak / 1e12, **report}, indent=2))
        return

    device = resolve_device("cuda")
    torch.manual_seed(0)
    G = init_random_generator(GeneratorConfig(), seed=0, w_avg_samples=2000).to(device)
    flops = flops_per_image(G)
    peak = measure_peak_bf16(device)
    print(
        f"device {torch.cuda.get_device_name()}, torch {torch.__version__}; {flops / 1e9:.1f} GFLOP/image; "
        f"bf16 matmul peak measured {peak / 1e12:.0f} TFLOP/s",
        flush=True,
    )
    rows, report = [], {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "gflop_per_image": flops / 1e9,
        "peak_bf16_tflops": peak / 1e12,
        "variants": {},
    }

    z = draw_latents(SynthesisSettings.defaults().latent_rng, 0, 0, args.chunk, G.z_dim, device)  # as run(0)
    psi = 1.0
    # baseline: our straightforward float32 path
    for _ in range(2):
        reference_chunk(G, z, psi)
    seconds = timed(lambda: reference_chunk(G, z, psi), max(3, args.iters // 2))
    base = args.chunk / seconds
    S_ref, img_ref = reference_chunk(G, z, psi)
    rows.append(("float32 reference (baseline)", base, 0.0, float("inf"), 1.0))
    report["variants"]["float32 reference"] = {"images_per_s": base}
    print(f"float32 reference: {base:.0f} images/s", flush=True)

    names = list(VARIANTS) if args.variants == "all" else [n for n in args.variants.split(",") if n]
    for name in names:
        dtype, comp, graph = VARIANTS[name]
        settings = SynthesisSettings.defaults(
            global_seed=0, truncation_psi=psi, chunk_size=args.chunk, dtype=dtype, compile=comp
        )
        t0 = time.perf_counter()
        synth = ChunkSynthesizer(G, settings, device, cuda_graph=graph)
        out = synth.run(0)
        for _ in range(2):
            synth.run(0)
        torch.cuda.synchronize()
        warm = time.perf_counter() - t0
        seconds = timed(lambda: synth.run(0), args.iters)
        ips = args.chunk / seconds
        out = synth.run(0)
        ref_u8 = to_uint8_hwc(img_ref)
        err = (out["images"].float() - ref_u8.float()).abs()
        img_fast = (out["images"].float() - 128) / 127.5  # back to [-1, 1] for PSNR on the same scale
        p = psnr(img_fast, (ref_u8.float() - 128) / 127.5)
        assert torch.equal(out["styles"], S_ref), "styles must not depend on the synthesis variant"
        rows.append((name, ips, err.max().item(), p, ips / base))
        report["variants"][name] = {
            "images_per_s": ips,
            "warmup_s": warm,
            "uint8_max_abs_err": err.max().item(),
            "uint8_mean_abs_err": err.mean().item(),
            "psnr_db": p,
            "share_of_peak": ips * flops / peak,
            "ratio_to_fp32": ips / base,
        }
        print(
            f"{name}: {ips:.0f} images/s (warm-up {warm:.0f} s), max |uint8 diff| {err.max().item():.0f}, "
            f"PSNR {p:.1f} dB",
            flush=True,
        )
        del synth
        torch.cuda.empty_cache()

    if args.writer_only:
        # The writer alone: the same write_shard loop fed one precomputed chunk, no GPU compute.
        settings = SynthesisSettings.defaults(
            global_seed=0, truncation_psi=psi, chunk_size=args.chunk, dtype="bfloat16", compile=False
        )
        synth = ChunkSynthesizer(G, settings, device, cuda_graph=False)
        cached = {k: v.clone() for k, v in synth.run(0).items()}

        class Replay:
            device = synth.device
            fast = synth.fast  # its `arithmetic` is recorded

            def run(self, chunk_start):
                out = dict(cached)
                out["seed"] = torch.arange(chunk_start, chunk_start + args.chunk)
                return out

        work = Path(args.workdir or tempfile.mkdtemp(prefix="genfields-bench-"))
        t0 = time.perf_counter()
        stats = write_shard(
            work / "writer_only.h5",
            G,
            "benchmark",
            0,
            args.writer_only,
            args.writer_only,
            settings,
            batch_size=args.chunk * 4,
            device=device,
            synthesizer=Replay(),
            progress=False,
        )
        print(
            f"writer only: {args.writer_only} faces in {time.perf_counter() - t0:.1f} s, "
            f"writer busy {stats['writer_busy_s']:.1f} s",
            flush=True,
        )
        report["writer_only"] = stats
        shutil.rmtree(work, ignore_errors=True)

    if args.dataset:
        dtype, comp, graph = VARIANTS[args.dataset_variant]
        settings = SynthesisSettings.defaults(
            global_seed=0, truncation_psi=psi, chunk_size=args.chunk, dtype=dtype, compile=comp
        )
        work = Path(args.workdir or tempfile.mkdtemp(prefix="genfields-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        t_warm = time.perf_counter()
        synth = ChunkSynthesizer(G, settings, device, cuda_graph=graph)
        synth.run(0)
        torch.cuda.synchronize()
        warm_s = time.perf_counter() - t_warm
        t0 = time.perf_counter()
        paths, busy = [], 0.0
        for i, (a, b) in enumerate(shard_ranges(args.dataset, args.shard_size)):
            paths.append(work / f"{i}.h5")
            busy += write_shard(
                paths[-1],
                G,
                "benchmark",
                a,
                b,
                args.dataset,
                settings,
                batch_size=args.chunk * 4,
                device=device,
                synthesizer=synth,
                progress=False,
            )["writer_busy_s"]
        shards_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        merge_shards(paths, work / "faces.h5", args.dataset * 3 // 4, args.dataset - args.dataset * 3 // 4)
        merge_s = time.perf_counter() - t1
        size_gb = sum(p.stat().st_size for p in paths) / 1e9
        report["dataset"] = {
            "faces": args.dataset,
            "variant": args.dataset_variant,
            "shards_wall_s": shards_s,
            "merge_wall_s": merge_s,
            "shards_gb": size_gb,
            "warmup_s": warm_s,
            "writer_busy_s": busy,
        }
        print(
            f"dataset: {args.dataset} faces in {shards_s:.1f} s ({args.dataset / shards_s:.0f} images/s, "
            f"{size_gb:.1f} GB of shards; writer busy {busy:.1f} s), merge {merge_s:.1f} s, "
            f"warm-up {warm_s:.1f} s",
            flush=True,
        )
        shutil.rmtree(work, ignore_errors=True)

    print("\n| path | images/s | % of bf16 peak | max abs uint8 diff vs fp32 | PSNR vs fp32 (dB) | x fp32 |")
    print("|---|---|---|---|---|---|")
    for name, ips, err, p, ratio in rows:
        print(f"| {name} | {ips:.0f} | {100 * ips * flops / peak:.1f} | {err:.0f} | {p:.1f} | {ratio:.2f} |")
    if "dataset" in report:
        d = report["dataset"]
        total = d["warmup_s"] + d["shards_wall_s"] + d["merge_wall_s"]
        print(
            f"\nwhole dataset: {d['faces']} faces in {total:.1f} s of wall time = warm-up {d['warmup_s']:.1f} s "
            f"+ generation and HDF5 writing {d['shards_wall_s']:.1f} s + merge {d['merge_wall_s']:.1f} s "
            f"('{d['variant']}')"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
