"""Projection throughput: our batched projector against one image at a time (issue 15, item 7).

NVIDIA's projector.py projects one image per run, 1000 steps, into W. The baseline here is a
STAND-IN for it: the same projector (`pipeline_lib.latent.projector.project`, NVIDIA's schedule
and losses) run on one image at a time, as users run projector.py. It is not NVIDIA's script
(which is not in this repository); its per-step cost is the same network work, so the ratio
measures what batching buys. Run NVIDIA's script on the same GPU to replace the baseline row.

    python benchmarks/projection_benchmark.py --device cuda --batches 1 32 128 --steps 1000

The generator is `--generator` (a .pkl/.pt; the paper's FFHQ 256 snapshot by default), or
`--random` for a random-weight generator of the paper256 shape (the same cost per step). Images
per hour = batch x 3600 / seconds for `--steps` steps, measured as the difference of runs of
`--measure-steps` and twice as many steps (after `--warmup` steps) and scaled: the schedule
does not change a step's cost.
"""

from __future__ import annotations

import argparse
import time

import torch


def build_generator(args, device):
    if args.random:
        from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator

        cfg = GeneratorConfig(z_dim=512, w_dim=512, img_resolution=256, num_mapping_layers=8, channel_base=16384,
                              channel_max=512, conv_clamp=256)  # fmt: skip
        return init_random_generator(cfg, seed=0).to(device).eval().requires_grad_(False)
    from pipeline_lib.generator import load_generator

    return load_generator(args.generator, device=device).eval().requires_grad_(False)


def seconds_per_step(G, batch: int, args, stats, image_loss, device) -> float:
    """Wall seconds of one projector step for `batch` images (mean over `measure_steps`)."""
    from pipeline_lib.latent.projector import ProjectorConfig, project

    with torch.no_grad():
        z = torch.randn([batch, G.z_dim], generator=torch.Generator().manual_seed(1)).to(device)
        target = G.ws_to_image(G.mapping(z), noise_mode="const").clamp(-1, 1)

    def run(steps):
        cfg = ProjectorConfig(space=args.space, num_steps=steps, loss=args.loss, vgg16_path=args.vgg16)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        project(G, target, cfg, stats=stats, image_loss=image_loss, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    run(args.warmup)
    m = args.measure_steps
    short, long = run(m), run(2 * m)  # the difference cancels the per-run setup (noise maps, optimiser)
    return (long - short) / m if long > short else long / (2 * m)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    p.add_argument("--steps", type=int, default=1000, help="steps per projection (NVIDIA: 1000)")
    p.add_argument("--measure-steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--generator", default="resources/weights/ffhq70k-paper256-ada.pkl")
    p.add_argument("--random", action="store_true", help="a random paper256 generator instead of --generator")
    p.add_argument("--space", choices=("w", "w+", "s"), default="w")
    p.add_argument("--loss", choices=("lpips", "pixel"), default="lpips")
    p.add_argument("--vgg16", default="resources/weights/vgg16-397923af.pth")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    from pipeline_lib.latent.image_losses import make_image_loss
    from pipeline_lib.latent.projector import latent_statistics

    G = build_generator(args, device)
    stats = latent_statistics(G, 10_000, 123, device)
    image_loss = make_image_loss(args.loss, 0.0, args.vgg16 if args.loss == "lpips" else None, device)
    batches = sorted(set([1, *args.batches]))
    rows = []
    for b in batches:
        sps = seconds_per_step(G, b, args, stats, image_loss, device)
        rows.append((b, sps, b * 3600.0 / (sps * args.steps)))
        print(f"batch {b}: {sps * 1000:.1f} ms/step", flush=True)
    base = rows[0][2]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\nProjection throughput on {name}, {args.steps} steps, space {args.space}, loss {args.loss}")
    print("baseline: one image at a time with the same projector (a stand-in for NVIDIA's projector.py)")
    print(f"{'batch':>6} {'s/step':>9} {'s/image':>9} {'images/hour':>12} {'x baseline':>11}")
    for b, sps, iph in rows:
        print(f"{b:>6} {sps:>9.4f} {sps * args.steps / b:>9.2f} {iph:>12.1f} {iph / base:>11.1f}")


if __name__ == "__main__":
    main()
