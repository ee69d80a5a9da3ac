"""Loading and saving StyleGAN3 generators without NVIDIA's code and without running the file.

- Official snapshots (`.pkl`): the allow-list unpickler of `pipeline_lib.generator.loading`, plus the
  few numpy globals a StyleGAN3 snapshot also names (its layers keep `size`/`in_size`/`out_size`
  as small numpy arrays and rates as numpy float64 scalars). Nothing stored in the file is run;
  any other global is refused with `WeightsError` ("refused global 'module.name'").
- Plain state_dicts (`.pt`/`.pth`) with the official key names plus a JSON sidecar, written by
  `save_stylegan3` and read back by `pipeline_lib.generator.load_generator`.

The family is told by the tensors (`synthesis.input.*`, `synthesis.L0_36_512.*`), and the
architecture is inferred from them; stored kwargs fill in what tensors cannot show
(first cutoff, margins, conv_clamp, ...) and are checked against the tensors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from pipeline_lib.atomic import atomic_path, save_torch
from pipeline_lib.generator.loading import sidecar_path
from pipeline_lib.generator.stylegan3 import StyleGAN3Generator
from pipeline_lib.generator.stylegan3_layers import StyleGAN3Config, layer_design, layer_name, synthesis_geometry
from pipeline_lib.provenance import file_sha256
from pipeline_lib.weights import WeightsError

SIDECAR_FORMAT = "genfields-stylegan3-generator/1"
_LAYER_KEY = re.compile(r"synthesis\.L(\d+)_(\d+)_(\d+)\.")


def is_stylegan3_state(state_dict: dict) -> bool:
    """True for an official StyleGAN3 generator state_dict (Fourier input and L-named layers)."""
    return any(k.startswith("synthesis.input.") for k in state_dict) and any(_LAYER_KEY.match(k) for k in state_dict)


def _layer_shapes(state_dict: dict) -> dict[int, tuple[int, int]]:
    """{layer index: (out size, out channels)} from the key names."""
    found = {}
    for k in state_dict:
        if m := _LAYER_KEY.match(k):
            found[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return found


def _channel_base(cfg: StyleGAN3Config, channels: list[int], stored: int | None) -> int:
    """A channel_base that reproduces every layer's channel count (the stored one if it does)."""
    cutoffs = synthesis_geometry(cfg)["cutoffs"][:-1]
    candidates = [stored] if stored else []
    raw = [c * 2 * f for c, f in zip(channels, cutoffs) if c < cfg.channel_max]
    # prefer the roundest value (768 = 3 * 2**8 rather than 766): multiples of 2**k, k decreasing
    candidates += [round(b / 2**k) * 2**k for k in range(16, -1, -1) for b in raw]
    candidates += [cfg.channel_max * 2 * round(cutoffs[0])]
    for base in candidates:
        if base and list(np.rint(np.minimum(base / 2 / cutoffs, cfg.channel_max)).astype(int)) == channels:
            return int(base)
    raise WeightsError(f"no channel_base explains the channel counts {channels}")


def infer_stylegan3_config(state_dict: dict, path, kwargs: dict | None = None) -> StyleGAN3Config:
    """The architecture from the tensors, with the stored kwargs for what tensors cannot show."""
    where = str(path)
    if not is_stylegan3_state(state_dict) or "mapping.fc0.weight" not in state_dict:
        raise WeightsError(f"{where}: not a StyleGAN3 generator state_dict (expected 'synthesis.input.*' and L-layers)")
    if "mapping.embed.weight" in state_dict:
        raise WeightsError(f"{where}: a conditional generator (mapping.embed); only unconditional ones are supported")
    kwargs = dict(kwargs or {})
    try:
        stored = StyleGAN3Config.from_official_kwargs(kwargs) if kwargs else StyleGAN3Config()
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{where}: stored kwargs: {exc}") from None
    layers = _layer_shapes(state_dict)
    n = max(layers)
    if sorted(layers) != list(range(n + 1)):
        raise WeightsError(f"{where}: synthesis layers {sorted(layers)} are not L0..L{n}")
    fc = sorted(int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    channels = [layers[i][1] for i in range(n)]  # L0..L(n-1); the input has L0's count
    radial = any(v.ndim == 2 for k, v in state_dict.items() if k.endswith("down_filter"))
    base = dict(
        stored.to_json_dict(),
        z_dim=int(state_dict["mapping.fc0.weight"].shape[1]),
        w_dim=int(state_dict[f"mapping.fc{fc[-1]}.weight"].shape[0]),
        img_resolution=layers[n][0],
        img_channels=layers[n][1],
        num_mapping_layers=len(fc),
        num_layers=n,
        conv_kernel=int(state_dict[f"synthesis.L0_{layers[0][0]}_{layers[0][1]}.weight"].shape[-1]),
        use_radial_filters=radial or (stored.use_radial_filters and "use_radial_filters" in kwargs),
        channel_max=max(channels) if "channel_max" not in kwargs else int(kwargs["channel_max"]),
    )
    cfg = StyleGAN3Config(**base)
    cfg = StyleGAN3Config(**dict(base, channel_base=_channel_base(cfg, channels, kwargs.get("channel_base"))))
    geo = synthesis_geometry(cfg)
    expected = [layer_name(layer_design(cfg, geo, i), i) for i in range(n + 1)]
    actual = [f"L{i}_{layers[i][0]}_{layers[i][1]}" for i in range(n + 1)]
    if expected != actual:
        raise WeightsError(f"{where}: layers {actual} do not match the inferred configuration ({expected})")
    for key in ("z_dim", "w_dim", "img_resolution", "img_channels"):
        if key in kwargs and int(kwargs[key]) != getattr(cfg, key):
            raise WeightsError(f"{where}: stored {key}={kwargs[key]} but the weights have {key}={getattr(cfg, key)}")
    return cfg


def build_stylegan3(state_dict: dict, cfg: StyleGAN3Config, where: str = "") -> StyleGAN3Generator:
    """A frozen eval-mode generator holding `state_dict` (checked key by key and shape by shape)."""
    G = StyleGAN3Generator(cfg)
    expected = G.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [k for k, v in expected.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{where}: weights do not fit the inferred StyleGAN3 generator {cfg.to_official_kwargs()}: "
            f"missing {missing[:6]}, unexpected {unexpected[:6]}, wrong shapes {wrong[:6]}"
        )
    G.load_state_dict({k: v.to(torch.float32) for k, v in state_dict.items()}, strict=True)
    return G.eval().requires_grad_(False)


def save_stylegan3(G: StyleGAN3Generator, path, provenance: dict | None = None) -> None:
    """Write `path` (a weights_only-loadable state_dict) and its JSON sidecar, atomically."""
    path = Path(path)
    save_torch({k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}, path)
    meta = {
        "format": SIDECAR_FORMAT,
        "family": "stylegan3",
        "config_name": G.config_name,
        "official_kwargs": G.cfg.to_official_kwargs(),
        "weights_sha256": file_sha256(path),
        **(provenance or {}),
    }
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
