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

from pipeline_lib.atomic import atomic_path


def _state_dict(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _fid_inception_state_dict(scratch: Path, seed: int) -> dict:
    """torch-fidelity's own InceptionV3 module tree with seeded He-normal convs.

    Its constructor insists on loading a checkpoint, so a subclass skips that one load (fed an
    empty file at `scratch`); the keys and shapes are then exactly the ones its strict loader
    expects. He-normal convs keep activations near unit scale down paths up to ~45 convs deep (the
    default init shrinks them towards zero), and non-trivial BatchNorm statistics make the
    2048-d pool features spread, so random-weight FIDs are clearly non-zero between sets.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):  # only the constructor's own load
            return None

    torch.save({}, scratch)
    net = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(scratch))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1 + 0.1 * torch.randn(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            elif isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / module.in_features**0.5)
                module.bias.zero_()
    return _state_dict(net)


def random_weights_file(name: str, path, seed: int = 0) -> None:
    """Write registry entry `name` as a random stand-in at `path` (atomically)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    path = Path(path)
    with atomic_path(path) as tmp:
        if name in ("tddfa_mb1", "tddfa_mb05"):
            from pipeline_lib.encoders.tddfa import MobileNetV1Regressor

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
            from pipeline_lib.encoders.fan import build_networks

            fan, depth = build_networks()
            torch.save(_state_dict(fan if name == "fan_3d" else depth), tmp)
        elif name == "arcface_ir_se50":
            from pipeline_lib.encoders.arcface import IRSE50

            torch.save(_state_dict(IRSE50()), tmp)
        elif name == "inception_v3_imagenet":
            from pipeline_lib.encoders.inception import build_inception

            torch.save(_state_dict(build_inception()), tmp)
        elif name == "fid_inception":
            torch.save(_fid_inception_state_dict(tmp, seed), tmp)
        else:
            raise ValueError(f"no random stand-in for {name!r}")
