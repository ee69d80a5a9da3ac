"""Shared test fixtures. Real data lives in ../shared beside the checkout; tests fail (not skip)
when it is missing, because a silently skipped fixture test proves nothing."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "stylegan2_ref"


@pytest.fixture(autouse=True)
def _refuse_network(monkeypatch):
    """No test may reach the network: a connection to anything but this machine fails the test.
    (Weights come from ../shared or are random stand-ins; `download()` is tested on file:// URLs.)"""
    connect = socket.socket.connect

    def local_only(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise RuntimeError(f"a test tried to reach the network ({address})")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


def shared_path(*parts) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"missing test data {path}: clone the project beside its `shared/` folder (../shared)")
    return path


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    return shared_path("fixtures", "stylegan2_ref")


@pytest.fixture(scope="session")
def small_state_dict(fixture_dir):
    data = np.load(fixture_dir / "generator_small.npz")
    return {k: torch.from_numpy(np.array(data[k])) for k in data.files}


@pytest.fixture(scope="session")
def small_kwargs(fixture_dir):
    return json.loads((fixture_dir / "generator_small.json").read_text())["kwargs"]


@pytest.fixture(scope="session")
def cases(fixture_dir):
    data = np.load(fixture_dir / "cases_small.npz")
    return {k: torch.from_numpy(np.array(data[k])) for k in data.files}


@pytest.fixture(scope="session")
def small_G(small_state_dict, small_kwargs):
    from pipeline_lib.generator.stylegan2 import Generator, GeneratorConfig

    G = Generator(GeneratorConfig.from_official_kwargs(small_kwargs))
    G.load_state_dict(small_state_dict, strict=True)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def paper256_structure(fixture_dir):
    return json.loads((fixture_dir / "paper256_structure.json").read_text())


@pytest.fixture(scope="session")
def training_inputs(tmp_path_factory):
    """The tiny training inputs (tests/training_inputs.py), built once for every module that reads
    them (training, training together, evaluation): ~24 faces synthesized and annotated by four
    encoders. Tests only read them; their outputs go to their own folders."""
    from training_inputs import build_training_inputs

    return build_training_inputs(tmp_path_factory.mktemp("training_inputs"))


@pytest.fixture(scope="session")
def real_faces_fid(tmp_path_factory):
    """The real faces of ../shared as an FFHQ stand-in, a random-weight FID Inception and the
    faces' cached Inception features, made once for the FID and evaluation tests (read only)."""
    from pipeline_lib.dataset.real_faces import prepare_real_faces
    from pipeline_lib.encoders.random_weights import random_weights_file
    from pipeline_lib.evaluation.fid import write_real_features

    folder = tmp_path_factory.mktemp("real_faces_fid")
    faces, weights, features = folder / "ffhq256.h5", folder / "fid_inception.pth", folder / "real_features.h5"
    prepare_real_faces(shared_path("assets", "faces256"), faces, progress=False)
    random_weights_file("fid_inception", weights, seed=0)
    write_real_features(faces, weights, features, batch_size=16)
    return faces, weights, features
