"""Reading encoder checkpoints: tensors only, checked against the architecture by name and
shape, so that a wrong file fails with its path and what was expected, not a key-mismatch trace."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from pipeline_lib.weights import WeightsError


def load_tensors_only(path, expected: str):
    """torch.load(path, weights_only=True), with errors that name the file and what it should be.

    A file that pickles anything but tensors and plain containers is refused for safety; the
    message says so in our words instead of passing on torch's, which advises retrying with
    `weights_only=False`, i.e. running the file's code, the one thing a pipeline that is handed
    weights from the internet must never suggest.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected {expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" not in text and "GLOBAL" not in text:  # garbage, not a hostile pickle
            raise WeightsError(
                f"{path}: cannot be read as {expected} (truncated or corrupt?): not a readable torch file"
            ) from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" (e.g. {found.group(1)})" if found else ""
        raise WeightsError(
            f"{path}: refused for safety: the file holds objects other than tensors{what}, and reading them would "
            f"run code from the file. Expected {expected}: a file of tensors only, as written by "
            "torch.save(model.state_dict())"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/EOFError/... for files that are not checkpoints
        raise WeightsError(
            f"{path}: cannot be read as {expected} (truncated or corrupt?): {type(exc).__name__}: {_first_line(str(exc))}"
        ) from None


def _first_line(text: str) -> str:
    """An error's first line, without any advice to load with weights_only=False."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return "" if "weights_only" in line else line


def read_torch_state_dict(path, expected: str) -> dict:
    """A `torch.save`d state dict read with `weights_only=True`; a training checkpoint's
    'state_dict' entry and DataParallel's 'module.' prefixes are unwrapped."""
    path = Path(path)
    state = load_tensors_only(path, expected)
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
