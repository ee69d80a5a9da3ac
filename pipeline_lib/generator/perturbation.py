"""The measured generative field of either family: how far one perturbed unit at a layer's input
reaches in the output image (paper Fig. 2, measured rather than computed)."""

from __future__ import annotations

import torch


def perturbation_support(G, layers, seed: int = 0, noise_mode: str = "none") -> list[tuple[int, int]]:
    """(width, height) of the changed output region for a unit perturbed at the input of each of
    `layers` (all channels, at index size // 2), in float64 so that no change is rounded away.

    Sample i of one batch has layer i's input perturbed; the same batch runs once more without
    it. Comparing each sample with itself at the same batch position keeps pixels outside the
    field bit-equal (CPU kernels may round a sample differently at another batch position), and
    every sample uses the same w, so batch-wide statistics are the same in both runs.
    """
    z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(seed))
    original_dtype = next(G.parameters()).dtype
    G64 = G.to(torch.float64)
    handles = []
    try:
        ws = G64.mapping(z.double()).repeat(len(layers), 1, 1)
        S, S_rest = G64.styles(ws)
        reference = G64.synthesize(S, S_rest, noise_mode=noise_mode)
        for i, spec in enumerate(layers):

            def perturb(module, args, i=i):
                x = args[0].clone()
                c = x.shape[-1] // 2
                x[i, :, c, c] += 1.0
                return (x,) + tuple(args[1:])

            handles.append(G64.module_of(spec).register_forward_pre_hook(perturb))
        img = G64.synthesize(S, S_rest, noise_mode=noise_mode)
    finally:
        for h in handles:
            h.remove()
        G.to(original_dtype)
    sizes = []
    for i in range(len(layers)):
        changed = (img[i] != reference[i]).any(dim=0)
        rows, cols = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
        if len(rows) == 0:
            sizes.append((0, 0))
        else:
            sizes.append((int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)))
    return sizes
