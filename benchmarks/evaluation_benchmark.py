"""How long the evaluation stages take on a GPU: `evaluate_variant` (1,000 edits by default, both
landmark detectors, FID) and `sparsity`, run through their job functions.

    python benchmarks/evaluation_benchmark.py [--pairs 1000] [--real 4096]

Random weights of the real shapes (paper256 generator, 3DDFA MobileNet-1.0, FAN, IR-SE50,
InceptionV3, torch-fidelity's Inception). The "real" faces are generated ones in an
`ffhq256.h5`-shaped file; FID's cost grows with their number, so the script also times FID alone
and extrapolates to FFHQ's 70,000 faces.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.dataset.annotation import annotate_faces  # noqa: E402
from pipeline_lib.dataset.synthesis import SynthesisSettings, merge_shards, write_shard  # noqa: E402
from pipeline_lib.encoders import BACKENDS, build_encoder  # noqa: E402
from pipeline_lib.encoders.random_weights import random_weights_file  # noqa: E402
from pipeline_lib.evaluation.fid import write_real_features  # noqa: E402
from pipeline_lib.evaluation.metrics import compute_fid  # noqa: E402
from pipeline_lib.generator import save_generator  # noqa: E402
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator  # noqa: E402
from pipeline_lib.jobs.evaluation import evaluate_edits, sparsity_analyses  # noqa: E402
from pipeline_lib.mref import ReferenceMapper, save_mapper  # noqa: E402
from pipeline_lib.provenance import file_sha256  # noqa: E402
from pipeline_lib.weights.registry import REGISTRY  # noqa: E402

ENCODERS = {
    "landmarks": {"train": "3ddfa_mb1", "eval": "fan"},
    "identity": "arcface_ir_se50",
    "attribute": "inception_v3",
}
FFHQ = 70_000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--real", type=int, default=4096)
    ap.add_argument("--faces", type=int, default=1024)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    G = init_random_generator(GeneratorConfig(), seed=0, w_avg_samples=1000)
    save_generator(G, tmp / "G.pt")
    G = G.cuda()
    settings = SynthesisSettings.defaults(chunk_size=64, dtype="bfloat16", compile=False)
    n = args.faces
    write_shard(tmp / "s.h5", G, file_sha256(tmp / "G.pt"), 0, n, n, settings, 256, device="cuda", progress=False)
    merge_shards([tmp / "s.h5"], tmp / "faces.h5", n * 3 // 4, n - n * 3 // 4)
    real_settings = SynthesisSettings.defaults(global_seed=1, chunk_size=64, dtype="bfloat16", compile=False)
    write_shard(tmp / "r.h5", G, "x", 0, args.real, args.real, real_settings, 256, device="cuda", progress=False)
    with h5py.File(tmp / "r.h5", "r") as src, h5py.File(tmp / "ffhq256.h5", "w") as out:
        out.create_dataset("images", data=src["images"][:], chunks=(1, 256, 256, 3))
    names = sorted(
        {name for kind in ENCODERS["landmarks"].values() for name in BACKENDS[kind]}
        | {"arcface_ir_se50", "inception_v3_imagenet", "fid_inception"}
    )
    files = {}
    for name in names:
        files[name] = str(tmp / REGISTRY[name].filename)
        random_weights_file(name, files[name], seed=0)
    encs = {k: build_encoder(k, files, "cuda") for k in ("3ddfa_mb1", "fan")}
    t0 = time.perf_counter()
    annotate_faces(
        tmp / "faces.h5",
        tmp / "ann.h5",
        encs,
        build_encoder("arcface_ir_se50", files, "cuda"),
        build_encoder("inception_v3", files, "cuda"),
        64,
        "cuda",
        progress=False,
    )
    print(f"annotation of {n} faces: {time.perf_counter() - t0:.1f} s")
    mapper = ReferenceMapper(2048, 4928)
    torch.nn.init.normal_(mapper.head.weight, std=1e-3)
    save_mapper(tmp / "m.pt", mapper, {"settings": {"input_features": "attribute"}})
    common = dict(
        model=tmp / "m.pt",
        faces=tmp / "faces.h5",
        annotations=tmp / "ann.h5",
        attribute_faces=tmp / "ffhq256.h5",
        generator=tmp / "G.pt",
        files=files,
        encoders=ENCODERS,
        device="cuda",
    )
    eval_cfg = {"num_pairs": args.pairs, "seed": 0, "batch_size": 32, "grid": [4, 6]}
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    write_real_features(tmp / "ffhq256.h5", files["fid_inception"], tmp / "real.h5", "cuda", 64)
    record = evaluate_edits(
        **common,
        real_features=tmp / "real.h5",
        evaluation=eval_cfg,
        out_metrics=tmp / "metrics.json",
        out_grid=tmp / "grid.png",
    )
    t_eval = time.perf_counter() - t0
    print(
        f"evaluate_variant, {args.pairs} pairs, FID against {args.real} faces: {t_eval:.1f} s "
        f"(identity {record['identity']['mean']:.3f}, FID {record['fid']['fid']:.1f})"
    )
    with h5py.File(tmp / "ffhq256.h5", "r") as f:
        t0 = time.perf_counter()
        compute_fid(f["images"][: args.pairs], f["images"], files["fid_inception"], device="cuda", batch_size=64)
        t_fid = time.perf_counter() - t0
    rate = (args.pairs + args.real) / t_fid
    t_ffhq = t_eval + FFHQ / rate
    print(f"FID alone: {t_fid:.1f} s for {args.pairs + args.real} images ({rate:.0f} images/s)")
    print(
        f"estimated evaluate_variant with all {FFHQ:,} FFHQ faces: {t_ffhq / 60:.1f} min; "
        f"ablation (100 pairs): about {(t_eval - t_fid) * 0.1 / 60 + (100 + FFHQ) / rate / 60:.1f} min"
    )
    outputs = {k: tmp / f"{k}.out" for k in ("histogram_csv", "histogram_summary", "reuse_csv")}
    outputs.update({k: tmp / f"{k}.png" for k in ("histogram_png", "reuse_png")})
    t0 = time.perf_counter()
    sparsity_analyses(
        **common,
        sparsity_cfg={
            "variant": "euler",
            "histogram_tests": 100,
            "bins": 20,
            "threshold": 0.6,
            "reuse_tests": 10,
            "top_k": 50,
        },
        evaluation=eval_cfg,
        outputs=outputs,
    )
    print(f"sparsity (100 tests): {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
