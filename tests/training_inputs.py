"""A tiny but complete set of training inputs, built with the library's own stages: a random
256x256 generator with 8 channels per layer, 24 faces, their style statistics, and annotations
by the real 3DDFA_V2 MobileNet-0.5 (from ../shared) and random-weight ArcFace/Inception."""

from __future__ import annotations

from pathlib import Path

from conftest import shared_path
from test_workflow import TINY

from pipeline_lib.dataset.annotation import annotate_faces
from pipeline_lib.dataset.statistics import compute_style_stats
from pipeline_lib.dataset.synthesis import SynthesisSettings, merge_shards, write_shard
from pipeline_lib.encoders import build_encoder
from pipeline_lib.encoders.random_weights import random_weights_file
from pipeline_lib.generator import save_generator
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.provenance import file_sha256

TINY_GENERATOR = GeneratorConfig(
    z_dim=16, w_dim=16, img_resolution=256, num_mapping_layers=2, channel_base=2048, channel_max=8, conv_clamp=256
)
NUM_IDENTITY, NUM_ATTRIBUTE = 18, 6
DETECTOR = "3ddfa_mb05"

# The workflow test's tiny training settings, with more steps and faster checkpoints.
TRAINING_CFG = {
    **TINY["training"],
    "num_steps": 6,
    "hidden": [32, 32],
    "checkpoint_every": 2,
    "log_every": 1,
    "sample_every": 3,
    "variants": {
        "default": {"label": "Default configuration", "input_features": "identity+attribute"},
        "final": {"label": "+ Euler angle loss", "input_features": "attribute", "lambda_reg": 0.1, "euler_loss": True},
    },
}
ENCODERS_CFG = {
    "landmarks": {"train": DETECTOR, "eval": DETECTOR},
    "identity": "arcface_ir_se50",
    "attribute": "inception_v3",
}


def build_training_inputs(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    G = init_random_generator(TINY_GENERATOR, seed=3, w_avg_samples=100)
    generator = folder / "tiny.pt"
    save_generator(G, generator)
    n = NUM_IDENTITY + NUM_ATTRIBUTE
    settings = SynthesisSettings.defaults(chunk_size=4, dtype="float32", compile=False)
    write_shard(folder / "shard.h5", G, file_sha256(generator), 0, n, n, settings, 8, progress=False)
    merge_shards([folder / "shard.h5"], folder / "faces.h5", NUM_IDENTITY, NUM_ATTRIBUTE)
    compute_style_stats(folder / "faces.h5", folder / "style_stats.h5")
    files = {
        "tddfa_mb05": shared_path("assets", "3ddfa_v2", "mb05_120x120.pth"),
        "tddfa_param_mean_std": shared_path("assets", "3ddfa_v2", "param_mean_std_62d_120x120.pkl"),
        "bfm_68_landmarks": shared_path("assets", "3ddfa_v2", "bfm_68_landmarks.npz"),
    }
    for name in ("arcface_ir_se50", "inception_v3_imagenet"):
        files[name] = folder / f"{name}.pth"
        random_weights_file(name, files[name], seed=1)
    files = {k: str(v) for k, v in files.items()}
    annotate_faces(
        folder / "faces.h5",
        folder / "annotations.h5",
        {DETECTOR: build_encoder(DETECTOR, files)},
        build_encoder("arcface_ir_se50", files),
        build_encoder("inception_v3", files),
        batch_size=8,
        progress=False,
    )
    return {
        "faces_path": str(folder / "faces.h5"),
        "annotations_path": str(folder / "annotations.h5"),
        "stats_path": str(folder / "style_stats.h5"),
        "generator_path": str(generator),
        "encoder_files": files,
        "encoders_cfg": ENCODERS_CFG,
    }
