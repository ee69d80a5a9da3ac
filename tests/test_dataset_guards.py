"""Guards against silently wrong datasets: zero-variance style channels in Eq. 12, non-finite
synthesised chunks, and shards whose bytes changed after they were written (issue 13)."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline_lib.dataset import integrity
from pipeline_lib.dataset.integrity import VerificationCache, combine, shard_array_sha256
from pipeline_lib.dataset.statistics import compute_style_stats
from pipeline_lib.dataset.store import open_faces, read_faces, read_style_stats
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


@pytest.mark.parametrize(
    "where, cause",
    [
        ("mapping", "the generator's weights hold non-finite values"),  # NaN w and styles
        ("affine", "the generator's weights hold non-finite values"),  # NaN styles only
        ("synthesis", "the generator's weights hold non-finite values"),  # finite styles, NaN images
        ("psi", "dataset.truncation_psi is nan"),
    ],
)
def test_a_non_finite_chunk_aborts_the_shard_naming_the_faces_and_the_cause(tiny_G, tmp_path, where, cause):
    G, settings = copy.deepcopy(tiny_G), SETTINGS
    with torch.no_grad():  # one NaN weight, set in memory: the loader's own check is bypassed
        if where == "mapping":
            next(p for n, p in G.named_parameters() if n.startswith("mapping") and n.endswith("weight"))[0, 0] = float(
                "nan"
            )
        elif where == "affine":
            G.module_of(G.conv_layers[2]).affine.weight[1, 0] = float("nan")
        elif where == "synthesis":
            G.module_of(G.conv_layers[-1]).weight.view(-1)[0] = float("nan")
        else:
            settings = dataclasses.replace(SETTINGS, truncation_psi=float("nan"))
    target = tmp_path / "shards" / "0.h5"
    with pytest.raises(FloatingPointError) as info:
        write_shard(target, G, "sha", 0, 8, 8, settings, 4, progress=False)
    message = str(info.value)
    assert message.startswith("faces 0-3 have non-finite ") and cause in message
    assert f"no shard written to {target}" in message
    assert list(target.parent.iterdir()) == []


def test_the_content_checksum_does_not_depend_on_the_batch_size(tiny_G, tmp_path):
    sums = set()
    for batch in (4, 8):
        target = tmp_path / f"b{batch}.h5"
        write_shard(target, tiny_G, "sha", 0, 8, 8, SETTINGS, batch, progress=False)
        with h5py.File(target, "r") as f:
            sums.add(f.attrs["content_sha256"])
            assert combine(shard_array_sha256(f)) == f.attrs["content_sha256"]
    assert len(sums) == 1


def test_a_changed_value_in_a_shard_is_detected_when_the_dataset_is_opened(tiny_G, tmp_path, caplog):
    faces = build(tiny_G, tmp_path)
    with h5py.File(faces, "r") as f:
        recorded = [src["content_sha256"] for src in json.loads(f.attrs["shards"])]
    assert all(len(c) == 64 for c in recorded)
    with caplog.at_level(logging.INFO):
        open_faces(faces).close()  # verifies both shards and records them
        assert "verified the content of 2 shard(s)" in caplog.text
        caplog.clear()
        open_faces(faces).close()  # the second open only stats the files
        assert "verified" not in caplog.text
    shard = tmp_path / "1.h5"
    before = os.stat(shard).st_mtime_ns
    with h5py.File(shard, "r+") as s:
        s["styles"][3, 5] = np.nextafter(s["styles"][3, 5], np.float32(np.inf))  # one bit of one value
    if os.stat(shard).st_mtime_ns == before:  # a coarse file-system clock; a later real write is later
        os.utime(shard, ns=(before, before + 1))
    for cache in (True, False):
        if not cache:
            VerificationCache(faces).path.unlink()
        with pytest.raises(ValueError) as info:
            open_faces(faces)
        message = str(info.value)
        assert message.startswith(f"{shard} is corrupt: its styles data no longer match")
        assert f"snakemake --forcerun {shard}" in message and "delete it and rerun" in message


def test_concurrent_jobs_that_cannot_record_the_verification_still_open_the_dataset(tiny_G, tmp_path, monkeypatch):
    faces = build(tiny_G, tmp_path)

    def lost_race(path, obj):  # another job's atomic write removed our temporary file
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(integrity, "write_json_atomic", lost_race)
    open_faces(faces).close()
    open_faces(faces).close()
    assert not VerificationCache(faces).path.exists()


def test_shards_written_before_checksums_are_opened_with_a_log_line(tiny_G, tmp_path, caplog):
    faces = build(tiny_G, tmp_path)
    with h5py.File(faces, "r+") as f:  # as merged before this change
        f.attrs["shards"] = json.dumps(
            [{k: v for k, v in s.items() if k != "content_sha256"} for s in json.loads(f.attrs["shards"])]
        )
    with caplog.at_level(logging.INFO):
        open_faces(faces).close()
    assert "2 shard(s) were written before shards carried a content checksum" in caplog.text
