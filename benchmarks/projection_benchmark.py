"""Projection throughput and fidelity: the fast batched projector against NVIDIA's use (issue 15, item 7).

Baseline: NVIDIA's projector.py projects ONE image per run, 1000 steps, float32, eager. Its
stand-in here is our projector with precision float32 and no compile (the reference objective:
NVIDIA's schedule and arithmetic) on one image, with cuDNN's TF32 as torch ships it (on for
convolutions), as the script's users run it. Its s/step is measured over --baseline-steps steps
and EXTRAPOLATED to --steps (1000): a step costs the same at every point of the schedule.

Fast mode (--precision, compile unless --no-compile): each batch of --batches is timed as the
difference of projections of --measure-steps and twice as many steps, after one warm-up
projection that compiles (its time is reported). A batch that runs out of memory, or would not
fit in --time-budget, is reported and the larger ones are skipped. `--eager-row` adds the fast
mode uncompiled at the first batch (what compilation adds).

Fidelity: the first batch's faces projected for --fidelity-steps steps (a complete short
schedule) in the fast mode, and the first --fidelity-images of them in float32 eager (TF32 off:
true float32), with the same seeds (a face's result does not depend on its batch); on those,
per image the final image loss (each mode's own, and float32 LPIPS of the fast reconstructions),
PSNR to the targets and PSNR between the two reconstructions.

    PYTHONPATH=. python benchmarks/projection_benchmark.py --random --out $OUT/projection.json

`--random`: a random generator of the paper256 shape and random VGG16 weights of the real shape
(the same cost per step as the real networks; the fidelity figures are then about arithmetic,
not faces). `--smoke`: a tiny CPU run of every code path (no compile).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from bench_summary import Target, summary_row

VGG16_CHANNELS = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def random_vgg16_file(path: Path, seed: int = 0) -> Path:
    """A torchvision-shaped vgg16 `features.*` state dict with He-initialised random weights."""
    from pipeline_lib.latent.image_losses import VGG16_FEATURE_CONVS

    gen, state = torch.Generator().manual_seed(seed), {}
    for i, idx in enumerate(VGG16_FEATURE_CONVS):
        c_in, c_out = VGG16_CHANNELS[i], VGG16_CHANNELS[i + 1]
        state[f"features.{idx}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=gen) * math.sqrt(2 / (9 * c_in))
        state[f"features.{idx}.bias"] = torch.zeros(c_out)
    torch.save(state, path)
    return path


def build_generator(args, device):
    from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator

    if args.smoke:
        cfg = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, num_mapping_layers=2, channel_base=128,
                              channel_max=16)  # fmt: skip
        return init_random_generator(cfg, seed=0, w_avg_samples=500).to(device)
    if args.random:
        cfg = GeneratorConfig(z_dim=512, w_dim=512, img_resolution=256, num_mapping_layers=8, channel_base=16384,
                              channel_max=512, conv_clamp=256)  # fmt: skip
        return init_random_generator(cfg, seed=0).to(device).eval().requires_grad_(False)
    from pipeline_lib.generator import load_generator

    return load_generator(args.generator, device=device).eval().requires_grad_(False)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    def __init__(self, G, args, device, stats, image_loss):
        self.G, self.args, self.device, self.stats, self.image_loss = G, args, device, stats, image_loss
        with torch.no_grad():
            z = torch.randn([max(args.batches), G.z_dim], generator=torch.Generator().manual_seed(1)).to(device)
            self.targets = G.ws_to_image(G.mapping(z), noise_mode="const").clamp(-1, 1)

    def config(self, steps, precision, compile):
        from pipeline_lib.latent.projector import ProjectorConfig

        return ProjectorConfig(space=self.args.space, num_steps=steps, loss=self.args.loss, precision=precision,
                               compile=compile, w_avg_samples=self.args.w_avg_samples)  # fmt: skip

    def run(self, batch, steps, objective):
        from pipeline_lib.latent.projector import project

        cfg = self.config(steps, objective.precision, objective.compile)
        sync(self.device)
        t0 = time.perf_counter()
        res = project(self.G, self.targets[:batch], cfg, stats=self.stats, device=self.device, objective=objective)
        sync(self.device)
        return time.perf_counter() - t0, res

    def seconds_per_step(self, batch, objective, measure):
        """(s/step, warm-up seconds, peak GB): the difference of runs of `measure` and 2 x `measure`
        steps cancels the per-run setup (noise maps, optimiser, the target's LPIPS features)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        warm, _ = self.run(batch, 2, objective)
        short, _ = self.run(batch, measure, objective)
        long, _ = self.run(batch, 2 * measure, objective)
        peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else float("nan")
        return ((long - short) / measure if long > short else long / (2 * measure)), warm, peak


def fidelity(bench: Bench, batch: int, fast_objective, ref_objective, steps: int, images: int) -> dict:
    """Final per-image numbers of a fast projection of `batch` faces (the compiled graph of that
    batch) and a float32-eager projection of its first `images` faces, compared on those: each
    image's result does not depend on its batch (tests/test_projector.py), so the float32 run
    need not be as large, which would cost the budget most."""
    from pipeline_lib.latent.evaluation import psnr

    tf32 = torch.backends.cudnn.allow_tf32
    t_fast, fast = bench.run(batch, steps, fast_objective)
    batch = min(images, batch)
    torch.backends.cudnn.allow_tf32 = False  # the reference in true float32
    try:
        t_ref, ref = bench.run(batch, steps, ref_objective)
        fast_in_fp32 = None
        if bench.args.loss == "lpips":
            with torch.no_grad():
                fast_in_fp32 = bench.image_loss(fast.images[:batch], bench.targets[:batch])
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    target = bench.targets[:batch]
    per_image = {
        "loss_float32": ref.losses["image"],
        "loss_fast_own": fast.losses["image"][:batch],
        "loss_fast_in_float32": fast_in_fp32 if fast_in_fp32 is not None else fast.losses["image"][:batch],
        "psnr_float32": psnr(ref.images.clamp(-1, 1), target),
        "psnr_fast": psnr(fast.images[:batch].clamp(-1, 1), target),
        "psnr_fast_vs_float32": psnr(fast.images[:batch].clamp(-1, 1), ref.images.clamp(-1, 1)),
    }
    rel = (per_image["loss_fast_in_float32"] - per_image["loss_float32"]) / per_image["loss_float32"].abs()
    out = {k: {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 else 0.0, "min": float(v.min()),
               "max": float(v.max())} for k, v in per_image.items()}  # fmt: skip
    out["relative_loss_difference"] = {"mean": float(rel.mean()), "max_abs": float(rel.abs().max())}
    out.update(images=batch, fast_batch=len(fast.images), steps=steps, seconds_float32=t_ref, seconds_fast=t_fast,
               per_image={k: v.cpu().tolist() for k, v in per_image.items()})  # fmt: skip
    return out


def summary_rows(record: dict) -> list:
    """The fastest measured batch of the fast mode beside the baseline (one image, float32 eager),
    against issue 15's target of 50x (benchmarks/all_stages.py prints it)."""
    args, rows = record["args"], record["rows"]
    base, fast = rows[0], [r for r in rows[1:] if "images_per_hour" in r]
    best = max(fast, key=lambda r: r["images_per_hour"], default=None)
    label = f"Projection, {args['space']}, {args['loss']}, {args['steps']} steps"
    if best is None:
        why = "; ".join(f"batch {r['batch']}: {r['skipped']}" for r in rows if "skipped" in r) or "no fast row"
        return [summary_row(label, None, base["images_per_hour"], "images/h", Target(">=", 50, on="ratio"), why)]
    note = f"{best['mode']}, batch {best['batch']}: {best['s_per_image']:.2f} s/image"
    note += f", {best['peak_gb']:.1f} GB" if math.isfinite(best["peak_gb"]) else ""
    if "fidelity" in record:
        rel = record["fidelity"]["relative_loss_difference"]
        note += f"; final loss vs float32 {rel['mean']:+.4f} (largest {rel['max_abs']:.4f})"
    return [summary_row(label, best["images_per_hour"], base["images_per_hour"], "images/h",
                        Target(">=", 50, on="ratio"), note)]  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--steps", type=int, default=1000, help="steps per projection (NVIDIA: 1000)")
    p.add_argument("--baseline-steps", type=int, default=20)
    p.add_argument("--measure-steps", type=int, default=10)
    p.add_argument("--fidelity-steps", type=int, default=100, help="0: no fidelity comparison")
    p.add_argument("--fidelity-images", type=int, default=16, help="faces also projected in float32")
    p.add_argument("--eager-row", action="store_true", help="also time the fast mode uncompiled (first batch)")
    p.add_argument("--precision", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--time-budget", type=float, default=285.0, help="seconds; larger batches are skipped past it")
    p.add_argument("--generator", default="resources/weights/ffhq70k-paper256-ada.pkl")
    p.add_argument("--random", action="store_true", help="random paper256 generator and random VGG16 weights")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run of every path (no compile)")
    p.add_argument("--space", choices=("w", "w+", "s"), default="w")
    p.add_argument("--loss", choices=("lpips", "pixel"), default="lpips")
    p.add_argument("--vgg16", default="resources/weights/vgg16-397923af.pth")
    p.add_argument("--w-avg-samples", type=int, default=10_000)
    p.add_argument("--out", default=None, help="JSON of every figure")
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.batches, args.no_compile, args.random = "cpu", [3, 4], True, True
        args.baseline_steps, args.measure_steps, args.fidelity_steps, args.w_avg_samples = 1, 1, 4, 500
        args.fidelity_images = 2
        torch.set_num_threads(2)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    from pipeline_lib.latent.image_losses import make_image_loss
    from pipeline_lib.latent.objective import make_objective
    from pipeline_lib.latent.projector import latent_statistics

    G = build_generator(args, device)
    vgg16 = args.vgg16
    if args.loss == "lpips" and args.random:
        vgg16 = random_vgg16_file(Path(tempfile.mkdtemp()) / "vgg16-random.pth")
    image_loss = make_image_loss(args.loss, 0.0, vgg16 if args.loss == "lpips" else None, device)
    stats = latent_statistics(G, args.w_avg_samples, 123, device)
    bench = Bench(G, args, device, stats, image_loss)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}, torch {torch.__version__}; {args.space}, loss {args.loss}, {args.steps} steps per image; "
          f"cuDNN TF32 {torch.backends.cudnn.allow_tf32} (torch's default) in the baseline", flush=True)  # fmt: skip
    record = {"device": name, "torch": torch.__version__, "args": vars(args), "rows": []}

    ref = make_objective(G, image_loss, "float32", False, device)
    sps, _, peak = bench.seconds_per_step(1, ref, args.baseline_steps)
    base_iph = 3600.0 / (sps * args.steps)
    rows = record["rows"]
    rows.append({"mode": f"baseline: float32 eager, 1 image ({args.baseline_steps} steps, extrapolated)", "batch": 1,
                 "s_per_step": sps, "peak_gb": peak})  # fmt: skip
    print(f"baseline: {sps * 1000:.1f} ms/step -> {sps * args.steps:.1f} s/image at {args.steps} steps", flush=True)

    compile = not args.no_compile
    fast = make_objective(G, image_loss, args.precision, compile, device)
    mode = f"{args.precision}{' + compile' if compile else ' eager'}"
    estimate = None  # seconds the next batch will take: compile again, steps scaled by the batch
    for i, b in enumerate(sorted(args.batches)):
        elapsed = time.perf_counter() - t_start
        if estimate is not None and elapsed + estimate(b) > args.time_budget:
            print(f"batch {b}: skipped (budget: {elapsed:.0f} s used, ~{estimate(b):.0f} s more needed)", flush=True)
            rows.append({"mode": mode, "batch": b, "skipped": "time budget"})
            continue
        t0 = time.perf_counter()
        try:
            sps, warm, peak = bench.seconds_per_step(b, fast, args.measure_steps)
        except torch.OutOfMemoryError:
            print(f"batch {b}: out of memory; larger batches skipped", flush=True)
            rows.append({"mode": mode, "batch": b, "skipped": "out of memory"})
            torch.cuda.empty_cache()
            break
        rows.append({"mode": mode, "batch": b, "s_per_step": sps, "warmup_s": warm, "peak_gb": peak})
        what = "warm-up incl. compile" if compile else "warm-up"
        print(f"{mode}, batch {b}: {sps * 1000:.1f} ms/step, {what} {warm:.1f} s, {peak:.1f} GB", flush=True)
        rest = time.perf_counter() - t0 - warm
        estimate = lambda nb, warm=warm, rest=rest, b=b: 1.1 * warm + rest * nb / b  # noqa: E731
        if i == 0 and compile and args.eager_row:  # what compilation adds
            eager = make_objective(G, image_loss, args.precision, False, device)
            e_sps, _, e_peak = bench.seconds_per_step(b, eager, args.measure_steps)
            rows.append({"mode": f"{args.precision} eager", "batch": b, "s_per_step": e_sps, "peak_gb": e_peak})
            print(f"{args.precision} eager, batch {b}: {e_sps * 1000:.1f} ms/step", flush=True)
        if i == 0 and args.fidelity_steps > 0:
            record["fidelity"] = fidelity(bench, b, fast, ref, args.fidelity_steps, args.fidelity_images)
            f = record["fidelity"]
            print(f"fidelity ({f['images']} images, {args.fidelity_steps} steps) done in {f['seconds_float32']:.1f} s float32 "
                  f"+ {f['seconds_fast']:.1f} s fast", flush=True)  # fmt: skip

    print(f"\nProjection throughput on {name}: {args.steps} steps per image, space {args.space}, loss {args.loss}")
    print("baseline = our projector in float32 eager on ONE image, as NVIDIA's projector.py is run (its s/step")
    print(f"measured over {args.baseline_steps} steps and extrapolated to {args.steps} steps)")
    hdr = f"{'mode':<58} {'batch':>5} {'s/step':>8} {'s/image':>8} {'images/h':>9} {'x base':>7} {'peak GB':>8}"
    print(hdr)
    for r in rows:
        if "skipped" in r:
            print(f"{r['mode']:<58} {r['batch']:>5} skipped: {r['skipped']}")
            continue
        r["s_per_image"] = r["s_per_step"] * args.steps / r["batch"]
        r["images_per_hour"] = 3600.0 / r["s_per_image"]
        r["x_baseline"] = r["images_per_hour"] / base_iph
        print(f"{r['mode']:<58} {r['batch']:>5} {r['s_per_step']:>8.4f} {r['s_per_image']:>8.3f} "
              f"{r['images_per_hour']:>9.0f} {r['x_baseline']:>7.1f} {r['peak_gb']:>8.1f}")  # fmt: skip
    if "fidelity" in record:
        f = record["fidelity"]
        print(
            f"\nFidelity: the first {f['images']} images of the fast batch of {f['fast_batch']}, {f['steps']}-step "
            "projections in both modes, same seeds (mean ± std [min, max])"
        )
        for k in ("loss_float32", "loss_fast_own", "loss_fast_in_float32", "psnr_float32", "psnr_fast",
                  "psnr_fast_vs_float32"):  # fmt: skip
            v = f[k]
            print(f"  {k:<22} {v['mean']:10.4f} ± {v['std']:.4f} [{v['min']:.4f}, {v['max']:.4f}]")
        rel = f["relative_loss_difference"]
        print(f"  final loss, fast (in float32) vs float32: mean relative difference {rel['mean']:+.4f}, "
              f"largest {rel['max_abs']:.4f}")  # fmt: skip
    record["total_seconds"] = time.perf_counter() - t_start
    record["summary_rows"] = summary_rows(record)
    print(f"\ntotal {record['total_seconds']:.0f} s", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
