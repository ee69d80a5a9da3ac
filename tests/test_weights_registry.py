"""The registry of pretrained files, verification, and the download path (local file:// URLs
only: tests never touch the network)."""

import dataclasses
import re

import pytest
from conftest import shared_path

from pipeline_lib.weights.registry import REGISTRY, WeightsUnavailable, config_key, download, how_to_get, verify


def test_registry_is_consistent():
    assert len({e.filename for e in REGISTRY.values()}) == len(REGISTRY)
    for name, entry in REGISTRY.items():
        assert entry.name == name and entry.source and entry.used_for
        assert entry.url is None or entry.url.startswith("https://")
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{8,64}", entry.sha256)
    needed = {"stylegan2_ffhq256", "tddfa_mb1", "tddfa_mb05", "tddfa_param_mean_std", "bfm_68_landmarks",
              "fan_3d", "fan_depth", "arcface_ir_se50", "inception_v3_imagenet", "fid_inception"}  # fmt: skip
    assert needed <= set(REGISTRY)


@pytest.mark.parametrize("name", ["tddfa_mb05", "tddfa_param_mean_std", "bfm_68_landmarks"])
def test_the_real_test_assets_match_the_registry(name):
    entry = REGISTRY[name]
    verify(entry, shared_path("assets", "3ddfa_v2", entry.filename))


def test_download_verifies_and_writes_atomically(tmp_path):
    real = shared_path("assets", "3ddfa_v2", "param_mean_std_62d_120x120.pkl")
    entry = dataclasses.replace(REGISTRY["tddfa_param_mean_std"], url=real.as_uri())
    dest = tmp_path / "w" / entry.filename
    download(entry, dest)
    assert dest.read_bytes() == real.read_bytes()

    wrong = dataclasses.replace(entry, sha256="0" * 64, size=None)
    with pytest.raises(WeightsUnavailable, match="does not match"):
        download(wrong, tmp_path / "x" / entry.filename)
    assert not any((tmp_path / "x").iterdir())


def test_unavailable_files_say_where_to_get_them(tmp_path):
    arcface = REGISTRY["arcface_ir_se50"]
    with pytest.raises(WeightsUnavailable, match=r"model_ir_se50.pth .*eladrich/pixel2style2pixel README") as err:
        download(arcface, tmp_path / "model_ir_se50.pth")
    assert "weights.files.arcface_ir_se50" in str(err.value)
    gone = dataclasses.replace(REGISTRY["fan_3d"], url=(tmp_path / "nowhere.zip").as_uri())
    with pytest.raises(WeightsUnavailable, match=r"could not download 3DFAN4-7835d9f11d.pth.tar .*put it there"):
        download(gone, tmp_path / "fan.zip")
    assert config_key(REGISTRY["stylegan2_ffhq256"]) == "generator.weights"
    assert "nvlabs-fi-cdn.nvidia.com" in how_to_get(REGISTRY["stylegan2_ffhq256"], "x.pkl")


def test_a_sha256_prefix_verifies_like_torch_hub(tmp_path):
    """torchvision's entries carry only the sha256 digits of their file names (vgg16-397923af.pth):
    a file whose digest starts with them passes, any other is refused."""
    from pipeline_lib.provenance import file_sha256

    path = tmp_path / "vgg16-test.pth"
    path.write_bytes(b"not really a checkpoint")
    digest = file_sha256(path)
    entry = dataclasses.replace(REGISTRY["vgg16_lpips"], sha256=digest[:8], size=None)
    verify(entry, path)
    other = f"{(int(digest[:8], 16) + 1) % 16**8:08x}"
    with pytest.raises(WeightsUnavailable, match="does not match"):
        verify(dataclasses.replace(entry, sha256=other), path)
    assert REGISTRY["vgg16_lpips"].filename.removesuffix(".pth").rsplit("-", 1)[1] == REGISTRY["vgg16_lpips"].sha256
