"""The generators the pipeline studies, with one API for every family: `load_generator(path)`
gives `G.mapping`, `G.styles(ws) -> (S, S_rest)`, `G.synthesize(S, S_rest)` and the layer table
`G.layers`, whether the file holds a StyleGAN2 (`stylegan2.py`) or a StyleGAN3 (`stylegan3.py`)
generator. The family and the architecture are read off the tensors; nothing in the file is
executed (`weights/unpickler.py`)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline_lib.generator.loading import build_stylegan2, infer_config, read_snapshot, read_state_dict_file
from pipeline_lib.generator.loading import save_generator as save_stylegan2
from pipeline_lib.generator.stylegan3_io import (
    build_stylegan3,
    infer_stylegan3_config,
    is_stylegan3_state,
    save_stylegan3,
)
from pipeline_lib.weights import WeightsError


def _check_finite(state_dict: dict, path) -> None:
    """A NaN or infinite weight makes every image black or NaN without any error: refuse it."""
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in state_dict.items() if v.is_floating_point()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        first = ", ".join(f"{k} ({n})" for k, n in list(bad.items())[:3])
        raise WeightsError(
            f"{path}: {sum(bad.values())} non-finite weight values, e.g. in {first}; the file is damaged"
        )


def load_generator(path, device="cpu"):
    """A frozen, eval-mode generator of either family from an official `.pkl` snapshot (its
    G_ema) or a `.pt`/`.pth` state_dict with its JSON sidecar."""
    path = Path(path)
    if path.suffix == ".pkl":
        state_dict, kwargs = read_snapshot(path)
    elif path.suffix in (".pt", ".pth"):
        state_dict, kwargs = read_state_dict_file(path)
    else:
        raise WeightsError(f"{path}: unknown weights format (expected .pkl, .pt or .pth)")
    _check_finite(state_dict, path)
    if is_stylegan3_state(state_dict):
        G = build_stylegan3(state_dict, infer_stylegan3_config(state_dict, path, kwargs), str(path))
    else:
        G = build_stylegan2(state_dict, infer_config(state_dict, path, kwargs), str(path))
    return G.to(device)


def save_generator(G, path, provenance: dict | None = None) -> None:
    """Write `path` (a weights_only-loadable state_dict) and its JSON sidecar, atomically."""
    save = save_stylegan3 if getattr(G, "family", "stylegan2") == "stylegan3" else save_stylegan2
    save(G, path, provenance)
