"""Guards against silently wrong datasets: zero-variance style channels in Eq. 12, non-finite
synthesised chunks, and shards whose bytes changed after they were written (issue 13)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import h5py
import pytest
import torch

from pipeline_lib.dataset.statistics import compute_style_stats
from pipeline_lib.dataset.store import read_faces, read_style_stats
from pipeline_lib.dataset.synthesis import SynthesisSettings, merge_shards, shard_ranges, write_shard
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.training.losses import style_negative_log_likelihood

TINY_CFG = GeneratorConfig(
    z_dim=16, w_dim=16, img_resolution=32, num_mapping_layers=2, channel_base=128, channel_max=16
)
N = 16
SETTINGS = SynthesisSettings.defaults(global_seed=7, truncation_psi=0.8, chunk_size=4, dtype="float32", compile=False)


@pytest.fixture(scope="module")
def tiny_G():
    return init_random_generator(TINY_CFG, seed=3, w_avg_samples=200)


def build(G, folder: Path, shard_size: int = 8, batch_size: int = 8) -> Path:
    paths = [folder / f"{i}.h5" for i in range(len(shard_ranges(N, shard_size)))]
    for p, (a, b) in zip(paths, shard_ranges(N, shard_size)):
        write_shard(p, G, "sha", a, b, N, SETTINGS, batch_size, progress=False)
    merge_shards(paths, folder / "faces.h5", num_identity=12, num_attribute=4)
    return folder / "faces.h5"


def test_a_constant_style_channel_is_flagged_and_left_out_of_eq12(tiny_G, tmp_path, caplog):
    G = copy.deepcopy(tiny_G)
    first = G.conv_layers[0]
    with torch.no_grad():  # channels 0 and 3 of conv0's styles no longer depend on w
        G.module_of(first).affine.weight[[0, 3]] = 0.0
    faces = build(G, tmp_path)
    stats = tmp_path / "style_stats.h5"
    with caplog.at_level(logging.WARNING):
        compute_style_stats(faces, stats)
    assert "2 of" in caplog.text and "constant" in caplog.text and "conv0: 2" in caplog.text
    with h5py.File(stats, "r") as f:
        assert f["S/constant_channels"][()].tolist() == [0, 3] and f.attrs["num_constant_channels"] == 2

    mean, std = read_style_stats(stats, read_faces(faces))
    assert torch.isinf(std[[0, 3]]).all() and torch.isfinite(std[4:]).all()
    S_id = torch.from_numpy(h5py.File(faces, "r")["styles"][:4])
    dS = torch.zeros_like(S_id, requires_grad=True)
    offset = torch.zeros_like(S_id)
    offset[:, [0, 3]] = 0.01  # an edit on the constant channels only: it costs nothing
    value = style_negative_log_likelihood(S_id + offset + dS, mean, std)
    value.backward()
    at_identity = style_negative_log_likelihood(S_id, mean, std)
    assert torch.isfinite(value) and value.item() == pytest.approx(at_identity.item(), rel=1e-6)
    assert value.item() < 10 * S_id.shape[1]  # about |S| / 2, not 5e11
    assert torch.isfinite(dS.grad).all() and (dS.grad[:, [0, 3]] == 0).all()


def test_old_statistics_without_the_flag_treat_zero_std_as_constant(tiny_G, tmp_path):
    faces = build(tiny_G, tmp_path)
    stats = tmp_path / "style_stats.h5"
    compute_style_stats(faces, stats)
    with h5py.File(stats, "r+") as f:
        if "S/constant_channels" in f:  # as written before the flag existed
            del f["S/constant_channels"]
        f["S/std"][5] = 0.0
    _, std = read_style_stats(stats, read_faces(faces))
    assert torch.isinf(std[5]) and torch.isfinite(std[:5]).all()
