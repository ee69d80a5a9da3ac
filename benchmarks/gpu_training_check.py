"""The real training job on a GPU: dataset -> statistics -> annotations -> `run_training_job`,
once eager in float32 and once as configured for GPUs (bf16, compiled with CUDA graphs), with a
restart from a checkpoint in the middle of the second. Prints steps/s and how far apart the two
final models are, relative to how far training moved them.

    python benchmarks/gpu_training_check.py [--faces 512] [--steps 60]

Random weights of the real shapes (paper256 generator, IR-SE50, 3DDFA MobileNet-1.0, Inception).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.dataset.annotation import annotate_faces  # noqa: E402
from pipeline_lib.dataset.statistics import compute_style_stats  # noqa: E402
from pipeline_lib.dataset.synthesis import SynthesisSettings, merge_shards, write_shard  # noqa: E402
from pipeline_lib.encoders import build_encoder  # noqa: E402
from pipeline_lib.encoders.random_weights import random_weights_file  # noqa: E402
from pipeline_lib.generator import save_generator  # noqa: E402
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator  # noqa: E402
from pipeline_lib.mref import load_mapper  # noqa: E402
from pipeline_lib.provenance import file_sha256  # noqa: E402
from pipeline_lib.training.launch import start_training as run_training_job  # noqa: E402
from pipeline_lib.weights.registry import REGISTRY  # noqa: E402

PAPER256 = GeneratorConfig()  # the defaults are the paper256 shape
ENCODERS = {
    "landmarks": {"train": "3ddfa_mb1", "eval": "3ddfa_mb1"},
    "identity": "arcface_ir_se50",
    "attribute": "inception_v3",
}


def training_cfg(steps: int, precision: str, compile_: bool) -> dict:
    return {
        "gpus": 1,
        "batch_size": 6,
        "num_steps": steps,
        "lr": 5e-6,
        "lr_end": 1e-7,
        "betas": [0.9, 0.999],
        "cross_frequency": 3,
        "seed": 0,
        "lambda_id": 1.0,
        "lambda_attr": 0.01,
        "lambda_rec": 0.02,
        "alpha": 0.84,
        "hidden": [2048, 2048, 2048],
        "precision": precision,
        "compile": compile_,
        "checkpoint_every": steps // 2,
        "log_every": 10,
        "sample_every": steps,
        "variants": {"euler": {"input_features": "attribute", "lambda_reg": 0.1, "euler_loss": True}},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=512)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    G = init_random_generator(PAPER256, seed=0, w_avg_samples=1000)
    save_generator(G, tmp / "G.pt")
    n = args.faces
    settings = SynthesisSettings.defaults(chunk_size=64, dtype="bfloat16", compile=False)
    write_shard(
        tmp / "s.h5", G.cuda(), file_sha256(tmp / "G.pt"), 0, n, n, settings, 128, device="cuda", progress=False
    )
    merge_shards([tmp / "s.h5"], tmp / "faces.h5", n * 3 // 4, n - n * 3 // 4)
    compute_style_stats(tmp / "faces.h5", tmp / "stats.h5")
    files = {}
    for name in ("arcface_ir_se50", "tddfa_mb1", "tddfa_param_mean_std", "bfm_68_landmarks", "inception_v3_imagenet"):
        files[name] = str(tmp / REGISTRY[name].filename)
        random_weights_file(name, files[name], seed=0)
    annotate_faces(
        tmp / "faces.h5",
        tmp / "ann.h5",
        {"3ddfa_mb1": build_encoder("3ddfa_mb1", files, "cuda")},
        build_encoder("arcface_ir_se50", files, "cuda"),
        build_encoder("inception_v3", files, "cuda"),
        64,
        "cuda",
        progress=False,
    )
    inputs = dict(
        faces_path=tmp / "faces.h5",
        annotations_path=tmp / "ann.h5",
        stats_path=tmp / "stats.h5",
        generator_path=tmp / "G.pt",
        encoder_files=files,
        encoders_cfg=ENCODERS,
        variant="euler",
        device_name="cuda",
    )

    import csv

    t0 = time.perf_counter()
    run_training_job(
        tmp / "fp32" / "mref.pt", training_cfg=training_cfg(args.steps, "float32", False), **copy.deepcopy(inputs)
    )
    print(f"float32 eager: {args.steps} steps in {time.perf_counter() - t0:.1f} s (with start-up)")
    run_training_job(
        tmp / "bf16" / "mref.pt", training_cfg=training_cfg(args.steps, "bfloat16", False), **copy.deepcopy(inputs)
    )
    fast_cfg = training_cfg(args.steps, "bfloat16", True)
    t0 = time.perf_counter()
    run_training_job(
        tmp / "fast" / "mref.pt", training_cfg=fast_cfg, stop_after=args.steps // 2 + 3, **copy.deepcopy(inputs)
    )
    ckpts = sorted((tmp / "fast" / "checkpoints").glob("*.pt"))
    print(f"compiled run stopped after step {args.steps // 2 + 3}; checkpoints: {[p.name for p in ckpts]}")
    run_training_job(tmp / "fast" / "mref.pt", training_cfg=fast_cfg, **copy.deepcopy(inputs))
    print(f"bf16 compiled + CUDA graphs, stopped and resumed: {time.perf_counter() - t0:.1f} s (with compilation)")

    heads = {k: load_mapper(tmp / k / "mref.pt")[0].state_dict()["head.weight"] for k in ("fp32", "bf16", "fast")}
    losses = {k: list(csv.DictReader(open(tmp / k / "logs" / "losses.csv"))) for k in heads}
    print(f"head weights moved from zero by at most {heads['fp32'].abs().max().item():.3e} (fp32)")
    for a, b in [("fp32", "bf16"), ("bf16", "fast"), ("fp32", "fast")]:
        apart = (heads[a] - heads[b]).abs().max().item()
        rel = torch.linalg.norm(heads[a] - heads[b]) / torch.linalg.norm(heads[a])
        first = [
            abs(float(x["total"]) - float(y["total"])) / abs(float(x["total"]))
            for x, y in zip(losses[a][:5], losses[b][:5])
        ]
        print(
            f"{a} vs {b}: max |diff| {apart:.3e}, relative L2 {rel:.3f}; first 5 steps' total loss rel. diff "
            + " ".join(f"{d:.1e}" for d in first)
        )
    rows = losses["fast"]
    print(f"compiled run losses.csv: {len(rows)} rows (steps {rows[0]['step']}..{rows[-1]['step']})")


if __name__ == "__main__":
    main()
