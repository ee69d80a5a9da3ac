"""The edit of the paper (Sec. 3.3) applied to a face given by its styles, not by a dataset index:
a real photograph's S_id comes from a projection (`latent.projector`), so the Editor of the
evaluation, which reads S_id from the dataset's stored w, cannot be used. The arithmetic is the
same: dS = M_ref(features), optionally masked to a range of conv layers, I_edit = G(S_id + dS)."""

from __future__ import annotations

import torch

from pipeline_lib.latent.projector import swapped_noise
from pipeline_lib.mref import mapper_input


@torch.no_grad()
def edit_styles(G, mapper, input_features: str, S_id, S_rgb, attribute_features, identity_embedding=None,
                mask=None, noise: dict | None = None):  # fmt: skip
    """Edited images [N,3,H,W] in [-1, 1] and dS. `noise` ({buffer: [N,1,H,W]}) puts back the
    projection's optimised noise maps, so the edit keeps the photo's fine detail; without it the
    generator's const noise is used (a face from a seed)."""
    if input_features == "identity+attribute" and identity_embedding is None:
        raise ValueError("this M_ref reads identity+attribute features: give the identity face's embedding")
    dS = mapper(mapper_input(identity_embedding, attribute_features, input_features))
    if mask is not None:
        dS = dS * mask
    with swapped_noise(G, noise or {}):
        img = G.synthesize(S_id + dS, S_rgb, noise_mode="const")
    return img.float().clamp(-1, 1), dS
