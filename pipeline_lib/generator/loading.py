"""Loading and saving generator weights without NVIDIA's code and without running the file.

Three formats:
- NVIDIA StyleGAN2-ADA and StyleGAN3 snapshots (`.pkl`): read by `weights.unpickler.SnapshotUnpickler`, whose
  `find_class` allows only the handful of globals such a snapshot names and never executes the
  `module_src` stored inside it (see ../shared/fixtures/stylegan2_ref/README.md for the layout);
- plain state_dicts (`.pt`/`.pth`) with the official key names, read with `weights_only=True`,
  with an optional JSON sidecar (`<stem>.json`) holding the constructor arguments;
- our own export: that state_dict plus the sidecar, so that users can leave pickles behind.

The architecture is always inferred from the tensors and checked against any stored kwargs.

Command line: `python -m pipeline_lib.generator.loading export SNAPSHOT.pkl OUT.pt`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from pipeline_lib.atomic import atomic_path, save_torch
from pipeline_lib.files import read_json_sidecar
from pipeline_lib.generator.stylegan2 import Generator, GeneratorConfig
from pipeline_lib.provenance import file_sha256
from pipeline_lib.weights import WeightsError
from pipeline_lib.weights.checkpoints import load_tensors_only
from pipeline_lib.weights.unpickler import PersistentObject, SnapshotUnpickler

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "genfields-stylegan2-generator/1"
TRAIN_PY_CONV_CLAMP = 256.0  # train.py sets this for every official configuration


def _flatten_module_state(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """state_dict() of a persistent module: parameters, persistent buffers, then children."""
    state = obj.state
    out = {}
    for name, tensor in (state.get("_parameters") or {}).items():
        if tensor is not None:
            out[prefix + name] = tensor.detach()
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for name, tensor in (state.get("_buffers") or {}).items():
        if tensor is not None and name not in skip:
            out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, PersistentObject):
            out.update(_flatten_module_state(child, prefix + name + "."))
        elif child is not None:
            raise WeightsError(f"unexpected child module {prefix + name} of type {type(child).__name__}")
    return out


def read_snapshot(path, network: str = "G_ema") -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, constructor kwargs) of one network of an official StyleGAN2-ADA or StyleGAN3 `.pkl`
    snapshot, read with the allow-list unpickler (the source code stored in the file is never run)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = SnapshotUnpickler(fh).load()
    except FileNotFoundError:
        raise WeightsError(f"{path}: file not found") from None
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    except (EOFError, ValueError, RuntimeError, OSError) as exc:
        raise WeightsError(f"{path}: not a readable StyleGAN snapshot (truncated or corrupt?): {exc}") from None
    if not isinstance(data, dict) or network not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise WeightsError(f"{path}: expected a StyleGAN snapshot dict with a '{network}' entry, found {found}")
    net = data[network]
    if not isinstance(net, PersistentObject) or net.class_name != "Generator":
        kind = net.class_name if isinstance(net, PersistentObject) else type(net).__name__
        raise WeightsError(f"{path}: '{network}' is a {kind}, expected a Generator")
    kwargs = dict(net.state.get("_init_kwargs") or {})
    return _flatten_module_state(net), _plain(kwargs)


def _plain(obj):
    """EasyDicts, numpy scalars and tuples to JSON-able Python values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ----------------------------------------------------------------------------------------------
# Architecture inference


def infer_config(state_dict: dict, path, kwargs: dict | None = None) -> GeneratorConfig:
    """The generator's architecture from its tensors; stored kwargs only add `conv_clamp`."""
    where = str(path)
    if "mapping.fc0.weight" not in state_dict or "synthesis.b4.const" not in state_dict:
        some = ", ".join(list(state_dict)[:5])
        raise WeightsError(
            f"{where}: not a StyleGAN2 generator state_dict (expected keys such as 'mapping.fc0.weight' and "
            f"'synthesis.b4.const'; found {some}{', ...' if len(state_dict) > 5 else ''})"
        )
    if "mapping.embed.weight" in state_dict:
        raise WeightsError(f"{where}: a conditional generator (mapping.embed); only unconditional ones are supported")
    fc = sorted(int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    resolutions = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    if fc != list(range(len(fc))) or not resolutions:
        raise WeightsError(f"{where}: mapping layers {fc} / synthesis blocks {resolutions} are not a StyleGAN2 layout")
    img_res = resolutions[-1]
    channels = {r: int(state_dict[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in resolutions}
    channel_max = max(channels.values())
    below = [r for r in resolutions if channels[r] < channel_max]
    channel_base = channels[below[0]] * below[0] if below else channel_max * img_res
    kwargs = dict(kwargs or {})
    synth = dict(kwargs.get("synthesis_kwargs") or {})
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    if "channel_base" in synth and all(
        min(synth["channel_base"] // r, channel_max) == channels[r] for r in resolutions
    ):
        channel_base = int(synth["channel_base"])  # keep the stored value when it explains the tensors
    cfg = GeneratorConfig(
        z_dim=int(state_dict["mapping.fc0.weight"].shape[1]),
        w_dim=int(state_dict[f"mapping.fc{fc[-1]}.weight"].shape[0]),
        img_resolution=img_res,
        img_channels=int(state_dict[f"synthesis.b{img_res}.torgb.weight"].shape[0]),
        num_mapping_layers=len(fc),
        channel_base=channel_base,
        channel_max=channel_max,
        conv_clamp=float(synth["conv_clamp"]) if synth.get("conv_clamp") is not None else None,
        mapping_lr_multiplier=float(mapping.get("lr_multiplier", 0.01)),
        extra={k: v for k, v in synth.items() if k not in ("channel_base", "channel_max", "conv_clamp")},
    )
    if resolutions != cfg.block_resolutions:
        raise WeightsError(f"{where}: synthesis blocks {resolutions}, expected {cfg.block_resolutions}")
    if "conv_clamp" not in synth:
        log.warning(
            "%s: no stored conv_clamp; assuming %s, the value train.py uses for every official configuration",
            where,
            TRAIN_PY_CONV_CLAMP,
        )
        cfg = dataclasses.replace(cfg, conv_clamp=TRAIN_PY_CONV_CLAMP)
    _check_stored_kwargs(cfg, kwargs, where)
    return cfg


def _check_stored_kwargs(cfg: GeneratorConfig, kwargs: dict, where: str) -> None:
    stored = {k: kwargs[k] for k in ("z_dim", "w_dim", "img_resolution", "img_channels") if k in kwargs}
    mapping_layers = (kwargs.get("mapping_kwargs") or {}).get("num_layers")
    if mapping_layers is not None:
        stored["num_mapping_layers"] = mapping_layers
    for key, value in stored.items():
        if int(value) != getattr(cfg, key):
            raise WeightsError(f"{where}: stored {key}={value} but the weights have {key}={getattr(cfg, key)}")


def build_stylegan2(state_dict: dict, cfg: GeneratorConfig, where: str) -> Generator:
    G = Generator(cfg)
    expected = G.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k}: {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:6]}")
        raise WeightsError(
            f"{where}: weights do not fit the inferred generator {cfg.to_official_kwargs()}: " + "; ".join(parts)
        )
    G.load_state_dict({k: v.to(torch.float32) for k, v in state_dict.items()}, strict=True)
    return G.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# Public entry points


def sidecar_path(path) -> Path:
    return Path(path).with_suffix(".json")


def read_state_dict_file(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, kwargs from the sidecar JSON or {}) of a `.pt`/`.pth` file."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: file not found")
    obj = load_tensors_only(path, "a generator state dict (official key names)")
    if isinstance(obj, dict) and "G_ema" in obj and isinstance(obj["G_ema"], dict):
        obj = obj["G_ema"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state_dict (a dict of tensors with the official key names)")
    kwargs = {}
    side = sidecar_path(path)
    if side.exists():
        meta = read_json_sidecar(side, "the generator's architecture sidecar", "download_weights")
        kwargs = meta.get("official_kwargs", meta)
    return obj, kwargs


def save_generator(G: Generator, path, provenance: dict | None = None) -> None:
    """Write `path` (a weights_only-loadable state_dict) and its JSON sidecar, atomically."""
    path = Path(path)
    save_torch({k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}, path)
    meta = {
        "format": SIDECAR_FORMAT,
        "official_kwargs": G.cfg.to_official_kwargs(),
        "weights_sha256": file_sha256(path),
        **(provenance or {}),
    }
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")


def export_snapshot(pkl_path, out_path) -> Generator:
    """Convert an official `.pkl` into a plain state_dict plus JSON; verify it loads back equal."""
    from pipeline_lib.generator import load_generator, save_generator  # the family dispatch imports this module

    G = load_generator(pkl_path)
    save_generator(G, out_path, {"source": str(pkl_path), "source_sha256": file_sha256(pkl_path)})
    again = load_generator(out_path)
    for (k, a), b in zip(G.state_dict().items(), again.state_dict().values()):
        if not torch.equal(a, b):
            raise WeightsError(f"{out_path}: export verification failed at {k}")
    return G


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_lib.generator.loading", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="convert an official .pkl snapshot to .pt + .json")
    exp.add_argument("snapshot")
    exp.add_argument("output")
    args = parser.parse_args(argv)
    G = export_snapshot(args.snapshot, args.output)
    print(f"wrote {args.output} and {sidecar_path(args.output)}: {G.cfg}")


if __name__ == "__main__":
    main()
