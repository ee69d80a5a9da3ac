"""Face encoders on a GPU: agreement with the CPU and annotation throughput.

    python benchmarks/annotation_benchmark.py [--faces 1024] [--batch 64]

Uses the demo's random stand-in weights (the real ones cannot be fetched here): speed and
CPU/GPU agreement do not depend on the weight values.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.devices import resolve_device  # noqa: E402
from pipeline_lib.encoders import BACKENDS, build_encoder  # noqa: E402
from pipeline_lib.encoders.random_weights import random_weights_file  # noqa: E402
from pipeline_lib.weights.registry import REGISTRY  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    device = resolve_device("cuda")
    folder = Path(tempfile.mkdtemp())
    names = sorted({n for needed in BACKENDS.values() for n in needed})
    files = {}
    for name in names:
        files[name] = str(folder / REGISTRY[name].filename)
        random_weights_file(name, files[name], seed=1)
    torch.manual_seed(0)
    img = torch.rand(8, 3, 256, 256) * 2 - 1
    rows = []
    for kind in BACKENDS:
        cpu = build_encoder(kind, files, "cpu")
        gpu = build_encoder(kind, files, device)
        with torch.no_grad():
            if hasattr(cpu, "landmarks_and_pose"):
                a = torch.cat([t.flatten(1) for t in cpu.landmarks_and_pose(img)], 1)
                b = torch.cat([t.flatten(1) for t in gpu.landmarks_and_pose(img.to(device))], 1).cpu()
                run = lambda x, m=gpu: m.landmarks_and_pose(x)  # noqa: E731
            else:
                a, b = cpu.embed(img), gpu.embed(img.to(device)).cpu()
                run = lambda x, m=gpu: m.embed(x)  # noqa: E731
            err = ((a - b).norm() / a.norm().clamp_min(1e-12)).item()
            x = torch.rand(args.batch, 3, 256, 256, device=device) * 2 - 1
            for _ in range(2):
                run(x)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                run(x)
            torch.cuda.synchronize()
            fps = 5 * args.batch / (time.perf_counter() - t0)
        rows.append((kind, err, fps))
        print(f"{kind}: relative CPU/GPU difference {err:.1e}, {fps:.0f} faces/s at batch {args.batch}", flush=True)
    total = 1 / sum(1 / fps for kind, _, fps in rows if kind in ("3ddfa_mb1", "fan", "arcface_ir_se50", "inception_v3"))
    print("\n| encoder | rel. CPU/GPU diff | faces/s (fp32, batch %d) |" % args.batch)
    print("|---|---|---|")
    for kind, err, fps in rows:
        print(f"| {kind} | {err:.1e} | {fps:.0f} |")
    print(
        f"\nannotation with the default encoders (3ddfa_mb1 + fan + arcface + inception): about {total:.0f} "
        f"faces/s, so 48,000 faces in about {48000 / total / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
