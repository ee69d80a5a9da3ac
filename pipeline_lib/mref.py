"""The reference mapping network M_ref: features of an attribute face -> a style offset dS.

An MLP after Nitzan et al.'s mapping (2560 -> 2048 -> 1024 -> 512 -> 512, leaky ReLU 0.2), but
widening instead of narrowing: S has 4928 channels, and a 512-wide bottleneck before a 4928-wide
output would cap the rank of every edit at 512. Hidden widths default to 2048, 2048, 2048
(about 24M parameters). The last layer starts at zero, so the first output is dS = 0 and
G(S_id + dS) is exactly the identity image: training starts from "no edit".
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from pipeline_lib.atomic import save_torch
from pipeline_lib.weights.checkpoints import load_tensors_only

# What M_ref reads, per variant (config `input_features`): the attribute image's E_attr
# features, or (the paper's "default configuration") those concatenated after the identity
# image's E_id embedding.
INPUT_FEATURES = ("attribute", "identity+attribute")


class ReferenceMapper(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden=(2048, 2048, 2048), slope: float = 0.2):
        super().__init__()
        self.in_dim, self.out_dim, self.hidden, self.slope = in_dim, out_dim, tuple(hidden), slope
        layers: list[nn.Module] = []
        width = in_dim
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(slope)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(features))

    def architecture(self) -> dict:
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "hidden": list(self.hidden), "slope": self.slope}


def mapper_input(
    identity_embedding: torch.Tensor, attribute_features: torch.Tensor, input_features: str
) -> torch.Tensor:
    if input_features == "attribute":
        return attribute_features
    if input_features == "identity+attribute":
        return torch.cat([identity_embedding, attribute_features], dim=1)
    raise ValueError(f"input_features must be one of {INPUT_FEATURES}, got {input_features!r}")


def _count_non_finite(state: dict) -> tuple[int, list[str]]:
    """(number of NaN/infinite values, names of the tensors holding them)."""
    bad, names = 0, []
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            n = int((~torch.isfinite(value)).sum())
            if n:
                bad, names = bad + n, [*names, name]
    return bad, names


def save_mapper(path, model: ReferenceMapper, metadata: dict) -> None:
    """`mref.pt`: the weights and, as JSON, the architecture and what it was trained with;
    loadable with `weights_only=True` (nothing in it executes).

    A model with any NaN or infinite parameter is refused and nothing is written: a diverged
    run would otherwise leave a complete-looking M_ref whose every edit is NaN.
    """
    bad, names = _count_non_finite(model.state_dict())
    if bad:
        raise ValueError(
            f"{path}: not written: M_ref has {bad} non-finite (NaN or infinite) parameter values "
            f"(in {', '.join(names[:3])}); training diverged: lower `training.lr` or resume from an earlier checkpoint"
        )
    record = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "architecture": json.dumps(model.architecture()),
        "metadata": json.dumps(metadata, default=str),
    }
    save_torch(record, path)


def load_mapper(path, device="cpu") -> tuple[ReferenceMapper, dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained M_ref here; run `snakemake {path}` to train it")
    record = load_tensors_only(path, "an M_ref file written by genfields (mref.pt)")
    try:
        arch = json.loads(record["architecture"])
        model = ReferenceMapper(arch["in_dim"], arch["out_dim"], arch["hidden"], arch["slope"])
        model.load_state_dict(record["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ValueError(f"{path} is not an M_ref file written by genfields ({exc})") from None
    bad, names = _count_non_finite(record["state_dict"])
    if bad:
        raise ValueError(
            f"{path}: M_ref has {bad} non-finite (NaN or infinite) parameter values (in {', '.join(names[:3])}); "
            f"delete it and retrain (`snakemake {path}`)"
        )
    return model.to(device).eval().requires_grad_(False), json.loads(record["metadata"])
