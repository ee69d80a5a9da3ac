"""The edit of the paper (Sec. 3.3), in one place for evaluation, the ablation, the sparsity
analyses and real-face editing: a face's styles S_id (from its w), the reference's features,
dS = M_ref(features), optionally kept only on a range of conv layers (the generative-field
ablation, Table 3), and I_edit = G(S_id + dS). Training runs the same arithmetic inside its
compiled step (`training/step.py`), with gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline_lib.dataset.store import attribute_source, read_annotations, read_faces
from pipeline_lib.generator.fast import fast_synthesis
from pipeline_lib.generator.layers import find_layer, layer_mask, layer_range
from pipeline_lib.images import read_images
from pipeline_lib.mref import mapper_input
from pipeline_lib.settings import check_layer_range


class AttributeFaces:
    """The attribute faces of the evaluation: every face of `ffhq256.h5`, or the attribute split
    of a generated `faces.h5` (demo)."""

    def __init__(self, path):
        self.path = Path(path)
        self.indices, self.source = attribute_source(self.path)
        if len(self.indices) == 0:
            raise ValueError(f"{self.path} holds no faces")

    def read(self, positions: np.ndarray) -> np.ndarray:
        with h5py.File(self.path, "r") as f:
            return read_images(f["images"], self.indices[positions])

    def all_images(self, f: h5py.File):
        """An array-like of every attribute face, for FID (read lazily in blocks)."""
        images = f["images"]
        if len(self.indices) == len(images):
            return images
        return read_images(images, self.indices)


@dataclass
class Encoders:
    identity: object
    attribute: object
    landmarks: dict  # {"train": LandmarkEncoder, "eval": LandmarkEncoder}


class Editor:
    """Applies a trained M_ref: identity faces x attribute images -> edited images and dS."""

    def __init__(self, G, mapper, input_features: str, faces_path, annotations_path, device, dtype=torch.float32):
        self.G, self.mapper, self.input_features, self.device = G, mapper, input_features, torch.device(device)
        cuda = self.device.type == "cuda"
        self.synthesis = fast_synthesis(G, dtype=dtype, channels_last=cuda and dtype == torch.bfloat16).to(self.device)
        faces = read_faces(faces_path)
        self.w = torch.from_numpy(faces.w).to(self.device)
        self.identity_split, self.noise_mode, self.faces_path = faces.identity_split, faces.noise_mode, faces.path
        self.identity_embedding = read_annotations(annotations_path, faces, names=("identity",), device=self.device)[
            "identity"
        ]

    @torch.no_grad()
    def edit(self, identity_indices, attribute_features: torch.Tensor, mask=None):
        """Edited images [N,3,H,W] in [-1, 1] and dS [N, dim S], from the attribute faces' E_attr
        features (computed once by the caller, however many identities they are paired with)."""
        ids = torch.as_tensor(identity_indices, device=self.device)
        S_id, S_rgb = self.G.styles_from_w(self.w[ids])
        features = mapper_input(self.identity_embedding[ids], attribute_features, self.input_features)
        dS = self.mapper(features)
        if mask is not None:
            dS = dS * mask
        img = self.synthesis(S_id + dS, S_rgb, noise_mode=self.noise_mode).float().clamp(-1, 1)
        return img, dS

    def identity_images(self, indices) -> np.ndarray:
        with h5py.File(self.faces_path, "r") as f:
            return read_images(f["images"], np.asarray(indices))


def layers_mask(G, layers: list[str] | None, device, where: str = "ablation.configs"):
    """The 0/1 mask over S of conv layers `layers` ([first, last] range), or None for all.

    The range is checked against this generator's conv layers (13 for StyleGAN2 at 256 px, 14
    for StyleGAN3), naming the config key `where`: a backwards range or an unknown layer would
    otherwise give an empty mask, and the unedited face would be reported as an ablation result.
    """
    if not layers:
        return None
    convs = [spec for spec in G.layers if spec.kind == "conv"]
    family = "StyleGAN3" if getattr(G, "family", "stylegan2") == "stylegan3" else "StyleGAN2"
    generator = f"the {family} generator ({getattr(G, 'img_resolution', '?')} px)"
    first, last = check_layer_range(layers, where, len(convs), generator)
    mask = layer_mask(G.layers, layer_range(first, last), device=device)
    if not bool(mask.any()):
        raise ValueError(f"config {where} [{first}, {last}] keeps no channel of S")
    return mask


def field_range(G, layers: list[str]) -> list[int]:
    """Generative fields (Eq. 1) of the first and last layer of a range."""
    return [find_layer(G.layers, layers[0]).generative_field, find_layer(G.layers, layers[1]).generative_field]
