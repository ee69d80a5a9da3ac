"""Reading encoder checkpoints: tensors only, checked against the architecture by name and
shape, so that a wrong file fails with its path and what was expected, not a key-mismatch trace."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline_lib.weights import WeightsError


def read_torch_state_dict(path, expected: str) -> dict:
    """A `torch.save`d state dict read with `weights_only=True`; a training checkpoint's
    'state_dict' entry and DataParallel's 'module.' prefixes are unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected {expected}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for files that are not checkpoints
        raise WeightsError(f"{path}: cannot be read as {expected}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, expected {expected}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_state_dict(state: dict, module: nn.Module, path, expected: str) -> None:
    """Raise unless `state` has exactly `module`'s tensors (BatchNorm counters optional)."""
    own = module.state_dict()
    # Checkpoints from before PyTorch 0.4.1 lack BatchNorm's counter; PyTorch fills it in.
    required = {k for k in own if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(required - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsError(
            f"{path}: not {expected}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != own[key].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise WeightsError(f"{path}: '{key}' has shape {shape}, expected {tuple(own[key].shape)} in {expected}")
