"""The synthetic dataset: determinism, atomic shards, merging, and the statistics of Eq. 12."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline_lib.dataset.latent_rng import draw_latents
from pipeline_lib.dataset.statistics import RunningMoments, compute_style_stats, invert_last_lrelu
from pipeline_lib.dataset.synthesis import SynthesisSettings, latents, merge_shards, shard_ranges, write_shard
from pipeline_lib.generator import save_generator
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.images import to_uint8_hwc

TINY_CFG = GeneratorConfig(
    z_dim=16, w_dim=16, img_resolution=32, num_mapping_layers=2, channel_base=128, channel_max=16
)
N = 24
SETTINGS = SynthesisSettings.defaults(global_seed=7, truncation_psi=0.8, chunk_size=4, dtype="float32", compile=False)


@pytest.fixture(scope="module")
def tiny_G():
    return init_random_generator(TINY_CFG, seed=3, w_avg_samples=500)


def build(G, folder: Path, shard_size: int, batch_size: int, settings=SETTINGS, parallel=False, writer=None) -> Path:
    ranges = shard_ranges(N, shard_size)
    paths = [folder / f"{i}.h5" for i in range(len(ranges))]
    if parallel:
        ctx = mp.get_context("spawn")
        gen_path = folder / "gen.pt"
        save_generator(G, gen_path)
        jobs = [
            ctx.Process(target=_shard_in_process, args=(str(gen_path), str(p), a, b, batch_size, settings))
            for p, (a, b) in zip(paths, ranges)
        ]
        for j in jobs:
            j.start()
        for j in jobs:
            j.join()
            assert j.exitcode == 0
    else:
        for p, (a, b) in zip(paths, ranges):
            write_shard(p, G, "sha", a, b, N, settings, batch_size, progress=False, writer=writer)
    merge_shards(paths, folder / "faces.h5", num_identity=18, num_attribute=6)
    return folder / "faces.h5"


def _shard_in_process(gen_path, out, start, stop, batch_size, settings):
    from pipeline_lib.generator import load_generator

    write_shard(out, load_generator(gen_path), "sha", start, stop, N, settings, batch_size, progress=False)


def read_all(path):
    from pipeline_lib.dataset.store import open_faces

    with open_faces(path) as f:
        return {k: f[k][()] for k in ("z", "w", "styles", "images", "seed")}


def test_latents_depend_only_on_seed_and_index():
    a = latents(7, [5, 6, 7], 16)
    b = latents(7, [7, 5], 16)
    assert np.array_equal(a[2], b[0]) and np.array_equal(a[0], b[1])
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(latents(8, [5], 16)[0], a[0])


def test_faces_are_identical_whatever_the_shard_size_batch_size_and_jobs(tiny_G, tmp_path):
    runs = {
        "one shard, batch 8": (24, 8, False),
        "shards of 8, batch 4": (8, 4, False),
        "shards of 12, batch 12, parallel jobs": (12, 12, True),
        "shards of 16, batch 4, writer process": (16, 4, "process"),
    }
    results = {}
    for name, (shard, batch, how) in runs.items():
        folder = tmp_path / name.replace(" ", "_").replace(",", "")
        folder.mkdir()
        writer = how if isinstance(how, str) else None
        results[name] = read_all(build(tiny_G, folder, shard, batch, parallel=how is True, writer=writer))
    first, *others = results.values()
    for other in others:
        for key in first:
            assert np.array_equal(first[key], other[key]), key
    assert np.array_equal(first["seed"], np.arange(N))


def test_faces_equal_the_reference_generator(tiny_G, tmp_path):
    data = read_all(build(tiny_G, tmp_path, 24, 8))
    z = draw_latents(SETTINGS.latent_rng, 7, 0, N, 16)
    ws = tiny_G.mapping(z, truncation_psi=0.8)
    assert np.array_equal(data["z"], z.numpy())
    np.testing.assert_allclose(data["w"], ws[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(data["styles"], tiny_G.styles(ws)[0].numpy(), atol=1e-5)
    reference = to_uint8_hwc(tiny_G.ws_to_image(ws)).numpy().astype(int)
    diff = np.abs(data["images"].astype(int) - reference)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # only float rounding at uint8 boundaries


def test_file_schema_and_attributes(tiny_G, tmp_path):
    path = build(tiny_G, tmp_path, 16, 8)
    with h5py.File(tmp_path / "0.h5", "r") as shard:
        assert shard["images"].chunks == (1, 32, 32, 3)  # one image per chunk: cheap random reads
    with h5py.File(path, "r") as f:
        assert f["z"].shape == (N, 16) and f["z"].dtype == np.float32
        assert f["styles"].shape == (N, tiny_G.style_dim) and f["styles"].dtype == np.float32
        assert f["images"].shape == (N, 32, 32, 3) and f["images"].dtype == np.uint8
        assert f["seed"].dtype == np.int64
        assert list(f["split/identity"][()]) == list(range(18))
        assert list(f["split/attribute"][()]) == list(range(18, 24))
        assert f.attrs["truncation_psi"] == 0.8 and f.attrs["global_seed"] == 7 and f.attrs["chunk_size"] == 4
        assert f.attrs["generator_sha256"] == "sha" and len(f.attrs["dataset_id"]) == 64
        assert f.attrs["dtype"] == "float32" and f.attrs["synthesis_arithmetic"].startswith("FastSynthesis float32")
        table = json.loads(f.attrs["layer_table"])
        assert [row["paper_name"] for row in table if row["kind"] == "conv"] == [f"conv{i}" for i in range(7)]
        assert {"stylespace_name", "offset", "style_dim", "resolution", "generative_field"} <= set(table[0])


def test_float16_faces_are_within_one_level_of_the_reference_and_named_so(tiny_G, tmp_path):
    settings = dataclasses.replace(SETTINGS, dtype="float16")
    path = build(tiny_G, tmp_path, 16, 8, settings=settings)
    stored = read_all(path)
    reference = to_uint8_hwc(tiny_G.ws_to_image(tiny_G.mapping(torch.from_numpy(stored["z"]), 0.8)))
    diff = np.abs(stored["images"].astype(int) - reference.numpy().astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.08  # measured 0.039: fp16 rounding crossing a level
    with h5py.File(path, "r") as f, h5py.File(tmp_path / "1.h5", "r") as shard:
        assert f.attrs["dtype"] == "float16" and "float16 convs in every layer" in f.attrs["synthesis_arithmetic"]
        assert shard.attrs["synthesis_arithmetic"] == f.attrs["synthesis_arithmetic"]
    write_shard(tmp_path / "1.h5", tiny_G, "sha", 16, 24, N, SETTINGS, 8, progress=False)  # a float32 shard
    with pytest.raises(ValueError, match="dtype='float32' differs"):
        merge_shards([tmp_path / "0.h5", tmp_path / "1.h5"], tmp_path / "m.h5", 18, 6)


def test_unaligned_sizes_are_refused(tiny_G, tmp_path):
    with pytest.raises(ValueError, match="multiples of chunk_size 4"):
        write_shard(tmp_path / "x.h5", tiny_G, "sha", 2, 10, N, SETTINGS, 4, progress=False)
    with pytest.raises(ValueError, match="multiples of chunk_size 4"):
        write_shard(tmp_path / "x.h5", tiny_G, "sha", 0, 8, N, SETTINGS, 6, progress=False)
    assert not list(tmp_path.iterdir())


def test_merge_refuses_gaps_mixed_settings_and_bad_splits(tiny_G, tmp_path):
    a, b, c = tmp_path / "0.h5", tmp_path / "1.h5", tmp_path / "2.h5"
    write_shard(a, tiny_G, "sha", 0, 8, N, SETTINGS, 8, progress=False)
    write_shard(c, tiny_G, "sha", 16, 24, N, SETTINGS, 8, progress=False)
    with pytest.raises(ValueError, match="starts at face 16, expected 8"):
        merge_shards([a, c], tmp_path / "m.h5", 18, 6)
    other = SynthesisSettings.defaults(global_seed=8, truncation_psi=0.8, chunk_size=4, dtype="float32", compile=False)
    write_shard(b, tiny_G, "sha", 8, 16, N, other, 8, progress=False)
    with pytest.raises(ValueError, match="global_seed=8 differs"):
        merge_shards([a, b, c], tmp_path / "m.h5", 18, 6)
    write_shard(b, tiny_G, "sha", 8, 16, N, SETTINGS, 8, progress=False)
    with pytest.raises(ValueError, match="does not add up to 24"):
        merge_shards([a, b, c], tmp_path / "m.h5", 18, 7)
    assert not (tmp_path / "m.h5").exists()


KILL_SCRIPT = """
import sys, torch
from pipeline_lib.generator import load_generator
from pipeline_lib.dataset.synthesis import SynthesisSettings, write_shard
torch.set_num_threads(1)
G = load_generator(sys.argv[1])
write_shard(sys.argv[2], G, "sha", 0, 4000, 4000, SynthesisSettings.defaults(chunk_size=4, dtype="float32", compile=False), 4, progress=False)
"""


def test_a_killed_shard_job_leaves_nothing_that_looks_complete(tiny_G, tmp_path):
    gen = tmp_path / "gen.pt"
    save_generator(tiny_G, gen)
    target = tmp_path / "shards" / "0.h5"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(gen), str(target)], env=env)
    deadline = time.time() + 60
    while not list(target.parent.glob(".0.*.partial.h5")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # well inside the write, which takes much longer than this
    assert proc.poll() is None, "the job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    leftovers = list(target.parent.iterdir())
    assert leftovers and all(".partial" in p.name for p in leftovers)
    # a rerun makes the target and clears the debris
    write_shard(
        target,
        tiny_G,
        "sha",
        0,
        8,
        8,
        SynthesisSettings.defaults(chunk_size=4, dtype="float32", compile=False),
        4,
        progress=False,
    )
    assert [p.name for p in target.parent.iterdir()] == ["0.h5"]


def test_running_moments_equal_numpy_on_uneven_blocks():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(1000, 5))
    m = RunningMoments(5, covariance=True)
    for a, b in [(0, 1), (1, 333), (333, 334), (334, 1000)]:
        m.update(x[a:b])
    np.testing.assert_allclose(m.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.variance(), np.cov(x, rowvar=False), rtol=1e-10)


def test_style_statistics_match_a_two_pass_numpy_reference(tiny_G, tmp_path):
    faces = build(tiny_G, tmp_path, 24, 8)
    stats = tmp_path / "style_stats.h5"
    compute_style_stats(faces, stats, block=5)
    data = read_all(faces)
    S = data["styles"].astype(np.float64)
    v = invert_last_lrelu(data["w"]).astype(np.float64)
    with h5py.File(stats, "r") as f:
        np.testing.assert_allclose(f["S/mean"][()], S.mean(axis=0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(f["S/std"][()], S.std(axis=0, ddof=1), rtol=1e-9)
        np.testing.assert_allclose(f["V/mean"][()], v.mean(axis=0), rtol=1e-10, atol=1e-12)
        cov = np.cov(v, rowvar=False)
        np.testing.assert_allclose(f["V/covariance"][()], cov, rtol=1e-9, atol=1e-12)
        values, vectors = f["V/eigenvalues"][()], f["V/eigenvectors"][()]
        assert np.all(np.diff(values) <= 0)
        np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T, cov, atol=1e-9)
        assert f.attrs["num_faces"] == N and f.attrs["source_dataset_id"] == h5py.File(faces)["/"].attrs["dataset_id"]


def test_v_undoes_the_last_leaky_relu():
    w = np.array([-1.0, 0.0, 2.0], dtype=np.float32)
    assert invert_last_lrelu(w).tolist() == [-5.0, 0.0, 2.0]
    h = torch.tensor([-3.0, 0.5])
    assert torch.allclose(torch.from_numpy(invert_last_lrelu(torch.nn.functional.leaky_relu(h, 0.2).numpy())), h)


def test_merged_file_reads_from_the_shards_and_refuses_a_missing_one(tiny_G, tmp_path, monkeypatch):
    from pipeline_lib.dataset.store import open_faces

    faces = build(tiny_G, tmp_path, 8, 8)
    with open_faces(faces) as f:
        assert f["images"].is_virtual and f["images"][20].shape == (32, 32, 3)
    elsewhere = tmp_path / "moved"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative shard paths resolve from the merged file, not the cwd
    with open_faces(faces) as f:
        assert np.array_equal(f["seed"][()], np.arange(N))
    (tmp_path / "1.h5").rename(tmp_path / "1.bak")
    with pytest.raises(FileNotFoundError, match=r"reads faces 8-16 from .*1.h5, which is missing"):
        open_faces(faces)
    write_shard(
        tmp_path / "1.h5",
        tiny_G,
        "sha",
        8,
        16,
        N,
        SynthesisSettings.defaults(global_seed=1, chunk_size=4, compile=False),
        8,
        progress=False,
    )
    with pytest.raises(ValueError, match="is not the shard"):
        open_faces(faces)


def test_the_legacy_latent_generator_keeps_old_dataset_ids_and_attributes(tiny_G, tmp_path):
    import dataclasses
    import hashlib

    from pipeline_lib.dataset.synthesis import FORMAT, dataset_id

    legacy = dataclasses.replace(SETTINGS, latent_rng="numpy")
    old_spec = {"generator_sha256": "sha", "num_faces": N, "format": FORMAT}  # as computed before latent_rng
    old_spec.update({k: v for k, v in dataclasses.asdict(legacy).items() if k not in ("compile", "latent_rng")})
    assert dataset_id("sha", legacy, N) == hashlib.sha256(json.dumps(old_spec, sort_keys=True).encode()).hexdigest()
    assert dataset_id("sha", dataclasses.replace(SETTINGS, latent_rng="counter"), N) != dataset_id("sha", legacy, N)
    write_shard(tmp_path / "0.h5", tiny_G, "sha", 0, 8, N, legacy, 8, progress=False)
    write_shard(tmp_path / "1.h5", tiny_G, "sha", 8, 24, N, dataclasses.replace(legacy, latent_rng="counter"), 8,
                progress=False)  # fmt: skip
    with h5py.File(tmp_path / "0.h5", "r") as f:
        assert "latent_rng" not in f.attrs and np.array_equal(f["z"][()], latents(7, range(8), 16))
    with h5py.File(tmp_path / "1.h5", "r") as f:
        assert f.attrs["latent_rng"] == "counter"
    with pytest.raises(ValueError, match="latent_rng='counter' differs"):
        merge_shards([tmp_path / "0.h5", tmp_path / "1.h5"], tmp_path / "m.h5", 18, 6)


def test_num_shards_splits_into_whole_chunks():
    from pipeline_lib.settings import DatasetSettings, load_config

    raw = load_config()["dataset"] | {"num_identity": 900, "num_attribute": 100, "chunk_size": 256}
    assert DatasetSettings.parse(raw | {"num_shards": 1}).faces_per_shard == 1024
    assert shard_ranges(1000, DatasetSettings.parse(raw | {"num_shards": 2}).faces_per_shard) == [(0, 512), (512, 1000)]
    assert DatasetSettings.parse(raw | {"num_shards": None, "shard_size": 512}).faces_per_shard == 512
    with pytest.raises(ValueError, match="num_shards must be at least 1"):
        DatasetSettings.parse(raw | {"num_shards": 0}).validate()


def test_writer_process_errors_reach_the_caller(tmp_path):
    from pipeline_lib.dataset.shard_writer import ProcessWriter

    specs = {"seed": {"shape": [8], "dtype": "i8", "chunks": None}}
    writer = ProcessWriter(tmp_path / "a.h5", specs, slot_rows=4, slots=1)
    writer.write(4, {"seed": np.arange(4, dtype=np.int64)})  # out of order: the process refuses it
    with pytest.raises(RuntimeError, match="shard writer process failed: RuntimeError: rows at 4 arrived out of order"):
        writer.write(0, {"seed": np.arange(4, dtype=np.int64)})
    writer.abort()
    writer = ProcessWriter(tmp_path / "b.h5", specs, slot_rows=4, slots=1)
    writer.proc.kill()
    with pytest.raises(RuntimeError, match="ended without an answer"):
        writer.finish({})
    writer.abort()
