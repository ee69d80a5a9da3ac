"""The edit of the paper (Sec. 3.3), in one place for evaluation, the ablation, the sparsity
analyses and real-face editing: a face's styles S_id (from its w), the reference's features,
dS = M_ref(features), optionally kept only on a range of conv layers (the generative-field
ablation, Table 3), and I_edit = G(S_id + dS). Training runs the same arithmetic inside its
compiled step (`training/step.py`), with gradients.

How the edited faces and the measurements are computed is a setting of the evaluation
(config.yaml `evaluation.precision`, `compile`; issue 16), never of what is measured: the Editor's
synthesis is `fast_synthesis` in any of the dataset's precision modes (float32 is the reference),
and the encoders are the annotation stage's `EncoderRunner`s, so an edited face is encoded in the
arithmetic that encoded the stored annotations it is compared with. Both record what they did
(`Editor.arithmetic`, `Encoders.describe`) for metrics.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline_lib.compile_cache import compiled
from pipeline_lib.dataset.store import attribute_source, read_annotations, read_faces
from pipeline_lib.encoders.inference import EncoderRunner
from pipeline_lib.generator.fast import fast_synthesis, precision_name
from pipeline_lib.generator.layers import find_layer, layer_mask, layer_range
from pipeline_lib.images import read_images
from pipeline_lib.mref import mapper_input
from pipeline_lib.settings import check_layer_range

log = logging.getLogger(__name__)


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
    """The frozen encoders of the evaluation, each run through an `EncoderRunner` (a plain
    encoder is wrapped as the float32 reference). A reduced-precision output that is not finite
    is recomputed in float32, as annotation does; `fallbacks` counts those batches."""

    identity: object
    attribute: object
    landmarks: dict  # {"train": LandmarkEncoder, "eval": LandmarkEncoder}
    fallbacks: int = field(default=0, init=False)

    def __post_init__(self):
        wrap = lambda e: e if isinstance(e, EncoderRunner) else EncoderRunner(e)  # noqa: E731
        self.identity, self.attribute = wrap(self.identity), wrap(self.attribute)
        self.landmarks = {role: wrap(e) for role, e in self.landmarks.items()}

    def _run(self, runner: EncoderRunner, img: torch.Tensor) -> dict:
        out = runner(img)
        if runner.overflowed(out):
            log.warning("an encoder overflowed in %s on %d faces: recomputed in float32", runner.precision, len(img))
            self.fallbacks += 1
            out = runner.reference(img)
        return out

    def attribute_features(self, img: torch.Tensor) -> torch.Tensor:
        """E_attr of images in the encoders' 256 frame (`encoder_view`)."""
        return self._run(self.attribute, img)["embedding"]

    def identity_embedding(self, img: torch.Tensor) -> torch.Tensor:
        return self._run(self.identity, img)["embedding"]

    def landmarks_and_pose(self, role: str, img: torch.Tensor):
        out = self._run(self.landmarks[role], img)
        return out["landmarks"], out["pose"]

    def describe(self) -> dict:
        """How each encoder ran (precision, channels-last fast mode, compile), for metrics.json."""
        runners = {"identity": self.identity, "attribute": self.attribute}
        runners.update({f"landmarks/{role}": r for role, r in self.landmarks.items()})
        return {name: r.describe() for name, r in runners.items()}


class Editor:
    """Applies a trained M_ref: identity faces x attribute images -> edited images and dS.

    `precision`: the synthesis mode (`generator/fast.py` PRECISIONS; float32 is the reference);
    `channels_last` and `compile` change how it runs, not what it computes (compiled with one
    static shape per batch size: a shorter last batch compiles once more)."""

    def __init__(
        self,
        G,
        mapper,
        input_features: str,
        faces_path,
        annotations_path,
        device,
        precision: str | torch.dtype = "float32",
        channels_last: bool | None = None,
        compile: bool = False,
    ):
        self.G, self.mapper, self.input_features, self.device = G, mapper, input_features, torch.device(device)
        self.precision = precision_name(precision)
        if channels_last is None:  # the earlier default: channels-last for bf16 on a GPU
            channels_last = self.device.type == "cuda" and self.precision == "bfloat16"
        self.channels_last, self.compiled = channels_last, compile
        self.fast = fast_synthesis(G, dtype=self.precision, channels_last=channels_last).to(self.device)
        self.synthesis = compiled(self.fast, dynamic=False) if compile else self.fast
        faces = read_faces(faces_path)
        self.w = torch.from_numpy(faces.w).to(self.device)
        self.identity_split, self.noise_mode, self.faces_path = faces.identity_split, faces.noise_mode, faces.path
        self.identity_embedding = read_annotations(annotations_path, faces, names=("identity",), device=self.device)[
            "identity"
        ]

    @property
    def arithmetic(self) -> dict:
        """How the edited faces were computed (metrics.json), as the dataset's `synthesis_arithmetic`."""
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compiled,
            "synthesis_arithmetic": self.fast.arithmetic,
        }

    @torch.no_grad()
    def offsets(self, identity_indices, attribute_features: torch.Tensor, mask=None):
        """S_id, S_rgb and dS [N, dim S] of the pairs, without synthesis (the sparsity analyses
        read dS alone)."""
        ids = torch.as_tensor(identity_indices, device=self.device)
        S_id, S_rgb = self.G.styles_from_w(self.w[ids])
        features = mapper_input(self.identity_embedding[ids], attribute_features, self.input_features)
        dS = self.mapper(features)
        if mask is not None:
            dS = dS * mask
        return S_id, S_rgb, dS

    @torch.no_grad()
    def edit(self, identity_indices, attribute_features: torch.Tensor, mask=None):
        """Edited images [N,3,H,W] in [-1, 1] and dS [N, dim S], from the attribute faces' E_attr
        features (computed once by the caller, however many identities they are paired with)."""
        S_id, S_rgb, dS = self.offsets(identity_indices, attribute_features, mask)
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
