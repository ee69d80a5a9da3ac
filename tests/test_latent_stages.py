"""Issue 15's stages and command on tiny inputs (CPU, no downloads): the edit command end to end
on a tiny random generator with random stand-in encoder weights, its errors for photos that are
not aligned faces, and log-compression sampling of the dataset leaving the default untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from training_inputs import TINY_GENERATOR

from pipeline_lib.cli import main as cli_main
from pipeline_lib.dataset.synthesis import SynthesisSettings, dataset_id, write_shard
from pipeline_lib.encoders.random_weights import random_weights_file
from pipeline_lib.generator import save_generator
from pipeline_lib.generator.stylegan2 import init_random_generator
from pipeline_lib.images import to_uint8_hwc
from pipeline_lib.jobs.dataset import log_compression_sampling
from pipeline_lib.latent.gaussian import fit_latent_gaussian
from pipeline_lib.latent.sets import check_face_image
from pipeline_lib.mref import ReferenceMapper, save_mapper

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edit_cli")
    G = init_random_generator(TINY_GENERATOR, seed=3, w_avg_samples=100)
    save_generator(G, folder / "tiny.pt")
    weights = folder / "weights"
    weights.mkdir()
    random_weights_file("inception_v3_imagenet", weights / "inception_v3_google-0cc3c7bd.pth", seed=1)
    cfg = {"encoders": {"attribute": "inception_v3"}, "weights": {"dir": str(weights), "files": {}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    mapper = ReferenceMapper(2048, G.style_dim, (8,))
    torch.manual_seed(0)
    torch.nn.init.normal_(mapper.head.weight, std=2.0)
    save_mapper(folder / "mref.pt", mapper, {"settings": {"input_features": "attribute"}})
    with torch.no_grad():
        z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(5))
        faces = to_uint8_hwc(G.ws_to_image(G.mapping(z), noise_mode="const").clamp(-1, 1)).numpy()
    Image.fromarray(faces[0]).save(folder / "identity.png")
    Image.fromarray(faces[1]).resize((1024, 1024)).save(folder / "attribute.png")
    Image.fromarray(faces[1][:, :200]).save(folder / "not_square.png")
    Image.fromarray(faces[1][:128, :128]).save(folder / "small.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder, G


def _args(folder, identity, out, *extra):
    return ["edit", "--model", str(folder / "mref.pt"), "--generator", str(folder / "tiny.pt"),
            "--identity", str(identity), "--attribute", str(folder / "attribute.png"), "--out", str(out),
            "--encoders-config", str(folder / "config.yaml"), "--device", "cpu", *extra]  # fmt: skip


def test_edit_command_from_a_seed_and_from_a_photo_with_layers(tiny, tmp_path):
    folder, G = tiny
    assert cli_main(_args(folder, 7, tmp_path / "seed.png")) == 0
    assert cli_main(_args(folder, folder / "identity.png", tmp_path / "photo.png", "--steps", "3")) == 0
    masked = tmp_path / "masked.png"
    assert cli_main(_args(folder, 7, masked, "--layers", "conv3-conv6")) == 0
    seed_img, masked_img = (np.asarray(Image.open(p)) for p in (tmp_path / "seed.png", masked))
    assert seed_img.shape == (256, 256, 3) and np.asarray(Image.open(tmp_path / "photo.png")).shape == (256, 256, 3)
    assert np.abs(seed_img.astype(int) - masked_img).mean() > 0.1  # the mask changes the edit


def test_edit_command_refuses_photos_that_are_not_aligned_faces(tiny, tmp_path, capsys):
    folder, _ = tiny
    for name, expected in (("not_square.png", "not an aligned face"), ("small.png", "128x128"),
                           ("broken.png", "unreadable image"), ("missing.png", "no such image")):  # fmt: skip
        assert cli_main(_args(folder, folder / name, tmp_path / "x.png")) == 2
        assert expected in capsys.readouterr().err
        assert not (tmp_path / "x.png").exists()
    with pytest.raises(ValueError, match="not an aligned face"):
        check_face_image(folder / "not_square.png")


def test_python_m_pipeline_lib_runs_and_export_stays_available():
    out = subprocess.run([sys.executable, "-m", "pipeline_lib", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "edit" in out.stdout and "export" in out.stdout
    old = subprocess.run([sys.executable, "-m", "pipeline_lib.generator.loading", "export", "--help"],
                         capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert old.returncode == 0


def test_default_sampling_keeps_the_dataset_and_log_compression_is_recorded(tiny, tmp_path):
    folder, G = tiny
    settings = SynthesisSettings.defaults(chunk_size=4, dtype="float32", compile=False)
    assert dataset_id("ab", settings, 8) == dataset_id("ab", settings, 8, None)
    base = {"truncation_psi": 1.0, "sampling": "truncation", "compression_tau": 2.0, **_dataset_keys()}
    assert log_compression_sampling(base, None) == (None, None)
    gaussian = tmp_path / "gaussian.h5"
    fit_latent_gaussian(G, 2000, seed=0).save(gaussian)
    sampling, transform = log_compression_sampling(
        {**base, "sampling": "log_compression", "compression_tau": 0.5}, gaussian
    )
    write_shard(tmp_path / "a.h5", G, "ab", 0, 8, 8, settings, 4, progress=False)
    write_shard(
        tmp_path / "b.h5", G, "ab", 0, 8, 8, settings, 4, progress=False, sampling=sampling, w_transform=transform
    )
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert a.attrs["dataset_id"] == dataset_id("ab", settings, 8) and "sampling" not in a.attrs
        assert b.attrs["dataset_id"] != a.attrs["dataset_id"] and "log_compression" in b.attrs["sampling"]
        assert np.array_equal(a["z"][()], b["z"][()]) and not np.allclose(a["w"][()], b["w"][()])
    with pytest.raises(ValueError, match="truncation_psi"):
        log_compression_sampling({**base, "sampling": "log_compression", "truncation_psi": 0.7}, gaussian)


def _dataset_keys() -> dict:
    from pipeline_lib.settings import load_config

    return {k: v for k, v in load_config()["dataset"].items() if k not in ("truncation_psi", "sampling")}
