"""Random-weight stand-ins for the pretrained encoder files, in their upstream formats.

The demo profile cannot download weights, yet every stage must run through the real loaders;
these files have the right names, layouts and shapes and carry seeded random values. They
prove the plumbing, not the science. The 3DDFA mean/std and face model are scaled so that the
random landmarks fall inside the face crop, which keeps downstream numbers finite and readable.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path


def _state_dict(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def random_weights_file(name: str, path, seed: int = 0) -> None:
    """Write registry entry `name` as a random stand-in at `path` (atomically)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    path = Path(path)
    with atomic_path(path) as tmp:
        if name in ("tddfa_mb1", "tddfa_mb05"):
            from .tddfa import MobileNetV1Regressor

            net = MobileNetV1Regressor(width=1.0 if name == "tddfa_mb1" else 0.5)
            torch.save({"state_dict": {f"module.{k}": v for k, v in _state_dict(net).items()}}, tmp)
        elif name == "tddfa_param_mean_std":
            mean = np.zeros(62, dtype=np.float32)
            mean[:12] = [1e-3, 0, 0, 60, 0, 1e-3, 0, 60, 0, 0, 1e-3, 0]  # a camera centred on the crop
            std = np.full(62, 1e-4, dtype=np.float32)
            std[[3, 7, 11]] = 2.0
            with open(tmp, "wb") as fh:
                pickle.dump({"mean": mean, "std": std}, fh)
        elif name == "bfm_68_landmarks":
            np.savez(
                tmp,
                u_base=(rng.standard_normal(204) * 4e4).astype(np.float32),
                w_shp_base=(rng.standard_normal((204, 40)) * 10).astype(np.float32),
                w_exp_base=(rng.standard_normal((204, 10)) * 10).astype(np.float32),
            )
        elif name in ("fan_3d", "fan_depth"):
            from .fan import build_networks

            fan, depth = build_networks()
            torch.save(_state_dict(fan if name == "fan_3d" else depth), tmp)
        elif name == "arcface_ir_se50":
            from .arcface import IRSE50

            torch.save(_state_dict(IRSE50()), tmp)
        elif name == "inception_v3_imagenet":
            from .inception import build_inception

            torch.save(_state_dict(build_inception()), tmp)
        else:
            raise ValueError(f"no random stand-in for {name!r}")
