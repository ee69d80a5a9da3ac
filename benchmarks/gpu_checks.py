"""Correctness on a CUDA GPU: the official fixtures through the reference and fast float32
paths, and bf16 against float32 on a paper256-shaped generator.

    python benchmarks/gpu_checks.py ../shared/fixtures/stylegan2_ref
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root (pipeline_lib, benchmarks)

from pipeline_lib import load_generator  # noqa: E402
from pipeline_lib.dataset.store import open_faces  # noqa: E402
from pipeline_lib.dataset.synthesis import SynthesisSettings, merge_shards, shard_ranges, write_shard  # noqa: E402
from pipeline_lib.devices import resolve_device  # noqa: E402
from pipeline_lib.generator.fast import FastSynthesis, psnr  # noqa: E402
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator  # noqa: E402


@torch.no_grad()
def main(fixtures: Path) -> None:
    device = resolve_device("cuda")
    cases = {k: torch.from_numpy(np.array(v)).to(device) for k, v in np.load(fixtures / "cases_small.npz").items()}
    G = load_generator(fixtures / "generator_small_official_format.pkl", device=device)
    S, S_rgb = G.styles(G.mapping(cases["z"]))
    results = {
        "reference ws": (G.mapping(cases["z"]) - cases["ws"]).abs().max(),
        "reference img": (G.synthesize(S, S_rgb) - cases["img"]).abs().max(),
        "reference img psi0.7": (G(cases["z"], truncation_psi=0.7) - cases["img_psi0.7"]).abs().max(),
        "polyphase img": (G.set_up_impl("polyphase")(cases["z"]) - cases["img"]).abs().max(),
        "fast fp32 img": (FastSynthesis(G).to(device)(S, S_rgb) - cases["img"]).abs().max(),
        "fast fp32 channels_last img": (FastSynthesis(G, channels_last=True).to(device)(S, S_rgb) - cases["img"])
        .abs()
        .max(),
    }
    worst = 0.0
    for name, err in results.items():
        print(f"{name}: max abs error vs NVIDIA's official output {err.item():.2e}")
        worst = max(worst, err.item())
    fast_bf16 = FastSynthesis(G, dtype=torch.bfloat16, channels_last=True).to(device)(S, S_rgb)
    print(
        f"fast bf16 img: max abs {(fast_bf16 - cases['img']).abs().max().item():.3f}, "
        f"PSNR {psnr(fast_bf16, cases['img']):.1f} dB"
    )
    print("GPU fixture checks:", "PASS" if worst < 1e-4 else "FAIL")
    G = init_random_generator(GeneratorConfig(), seed=0, w_avg_samples=1000).to(device)
    determinism(device, G, "StyleGAN2 paper256", 2048, 256, ((512, 256), (1024, 1024), (2048, 512)))
    sg3 = fixtures.parent / "stylegan3_ref"
    if sg3.is_dir():  # the released T-256 shapes, random weights: the fused Triton kernels and cuDNN
        from benchmarks.stylegan3_benchmark import official_kwargs, random_generator
        from pipeline_lib.generator.stylegan3 import StyleGAN3Config

        G3 = random_generator(StyleGAN3Config.from_official_kwargs(official_kwargs("t256", sg3)), 0, device)
        determinism(device, G3, "StyleGAN3-T 256", 512, 64, ((128, 64), (256, 256), (512, 128)))
    else:
        print(f"StyleGAN3 determinism: skipped ({sg3} not found)")


def determinism(device, G, label: str, n: int, chunk: int, sizes) -> None:
    """Same faces whatever the shard and batch sizes ((shard, batch) pairs), on the GPU, for each
    synthesis variant (CUDA graph or compiled)."""
    import tempfile

    for compile_ in (False, True):
        settings = SynthesisSettings.defaults(global_seed=5, truncation_psi=0.7, chunk_size=chunk, compile=compile_)
        datasets = []
        for shard_size, batch_size in sizes:
            folder = Path(tempfile.mkdtemp())
            paths = []
            for i, (a, b) in enumerate(shard_ranges(n, shard_size)):
                paths.append(folder / f"{i}.h5")
                write_shard(paths[-1], G, "x", a, b, n, settings, batch_size, device=device, progress=False)
            merge_shards(paths, folder / "faces.h5", n // 2, n - n // 2)
            with open_faces(folder / "faces.h5") as f:
                datasets.append({k: f[k][()] for k in ("z", "w", "styles", "images")})
        same = all(np.array_equal(datasets[0][k], d[k]) for d in datasets[1:] for k in datasets[0])
        shards, batches = "/".join(str(a) for a, _ in sizes), "/".join(str(b) for _, b in sizes)
        print(
            f"GPU determinism, {label} ({'compiled' if compile_ else 'eager or CUDA graph'}, {settings.dtype}, "
            f"shard sizes {shards}, batch sizes {batches}): {'PASS, bit-identical' if same else 'FAIL'}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
