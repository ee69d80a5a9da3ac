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
