"""Shared loaders for the StyleGAN3 reference fixtures (../shared/fixtures/stylegan3_ref)."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import torch
from conftest import shared_path

from pipeline_lib.generator.stylegan3 import StyleGAN3Generator
from pipeline_lib.generator.stylegan3_layers import StyleGAN3Config


def fixture_file(name: str):
    return shared_path("fixtures", "stylegan3_ref", name)


@cache
def meta(tag: str) -> dict:
    return json.loads(fixture_file(f"generator_{tag}_small.json").read_text())


@cache
def state_dict(tag: str) -> dict:
    data = np.load(fixture_file(f"generator_{tag}_small.npz"))
    return {k: torch.from_numpy(np.array(data[k])) for k in data.files}


@cache
def cases(tag: str) -> dict:
    data = np.load(fixture_file(f"cases_{tag}_small.npz"))
    return {k: torch.from_numpy(np.array(data[k])) for k in data.files}


def generator(tag: str, **overrides) -> StyleGAN3Generator:
    """The official small generator built from its stored kwargs and npz state_dict."""
    kwargs = dict(meta(tag)["kwargs"], **overrides)
    G = StyleGAN3Generator(StyleGAN3Config.from_official_kwargs(kwargs))
    G.load_state_dict(state_dict(tag), strict=True)
    return G.eval().requires_grad_(False)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a.double() - b.double()).abs().max().item()
