"""The projector's per-step objective (image loss + noise-map penalty), in two implementations
with one call signature, chosen by `make_objective(G, image_loss, precision, compile)`.

`ReferenceObjective` (precision float32, no compile) is the arithmetic of NVIDIA's projector:
the reference generator (`G.synthesize`) with each image's optimised noise maps swapped into
the layers' `noise_const` buffers, and the image loss of the full (image, target) pair.

`FastObjective` computes the same function faster on GPUs, without changing its mathematics:
- the synthesis runs as `fast_synthesis(G)` (for StyleGAN2 `FastSynthesis`: polyphase
  up-sampling, bf16 convolutions with float32 styles, demodulation, noise and activations,
  channels-last), with the per-image noise maps as an explicit input;
- LPIPS's VGG16 runs under bf16 autocast (its channel normalisation and calibrated averages
  stay float32), and the target's half of LPIPS is computed once per projection, not per step;
- with `compile`, styles -> image -> losses -> noise penalty is one `torch.compile` graph with
  static shapes (its backward compiled through AOTAutograd). Nothing that varies by step enters
  the graph as a Python number: the latent noise (whose factor decays) comes in as a tensor and
  the learning rate stays in the optimiser, so a projection compiles once per batch shape.
  Reuse one objective for every batch of a set: a new one would compile again.
StyleGAN3 has no noise buffers; its synthesis is whatever `fast_synthesis` gives for it.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from pipeline_lib.generator.fast import fast_synthesis

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def noise_buffers(G) -> dict[str, torch.nn.Module]:
    """{buffer name: owning module} of every `noise_const` (empty for StyleGAN3)."""
    return {f"{name}.noise_const" if name else "noise_const": mod for name, mod in G.named_modules()
            if "noise_const" in getattr(mod, "_buffers", {})}  # fmt: skip


@contextlib.contextmanager
def swapped_noise(G, maps: dict[str, torch.Tensor]):
    """Temporarily make each layer use `maps[name]` ([N, 1, H, W]) as its const noise."""
    owners = noise_buffers(G)
    saved = {name: owners[name].noise_const for name in maps}
    try:
        for name, tensor in maps.items():
            owners[name].noise_const = tensor
        yield
    finally:
        for name, tensor in saved.items():
            owners[name].noise_const = tensor


def noise_regularization(maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per image: squared mean autocorrelations at a one-pixel shift in x and y, at every
    scale from the map's own down to 8x8 (halving by 2x2 averages). Zero for white noise; keeps
    the optimised noise from hiding image content."""
    total = 0.0
    for v in maps.values():
        while True:
            total = total + (v * torch.roll(v, 1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (v * torch.roll(v, 1, dims=2)).mean(dim=(1, 2, 3)).square()
            if v.shape[-1] <= 8:
                break
            v = F.avg_pool2d(v, kernel_size=2)
    return total if isinstance(total, torch.Tensor) else torch.zeros(())


def latent_styles(G, space: str, latents: list[torch.Tensor], delta: torch.Tensor | None):
    """(ws or None, S, S_rgb) of the optimised latents plus the latent noise `delta` (None: none):
    W is one vector repeated over the layers, W+ one per layer, S the styles themselves."""
    if space == "s":
        S, S_rgb = latents
        if delta is not None:
            S, S_rgb = S + delta[:, : S.shape[1]], S_rgb + delta[:, S.shape[1] :]
        return None, S, S_rgb
    w = latents[0] if delta is None else latents[0] + delta
    ws = w.expand(-1, G.num_ws, -1) if space == "w" else w
    return ws, *G.styles(ws)


def penalised(image_term: torch.Tensor, maps: dict, noise_weight: float) -> dict[str, torch.Tensor]:
    """{"image", "noise_reg", "total" = image + noise_weight x noise_reg}, each per image [N]."""
    n = image_term.shape[0]
    reg = noise_regularization(maps).expand(n) if maps else torch.zeros(n, device=image_term.device)
    return {"image": image_term, "noise_reg": reg, "total": image_term + noise_weight * reg}


class ReferenceObjective:
    """NVIDIA's arithmetic in float32, eager (the CPU tests' and the baseline's path)."""

    precision, compile = "float32", False

    def __init__(self, G, image_loss):
        self.G, self.image_loss = G, image_loss

    def prepare(self, target: torch.Tensor):
        return target

    def __call__(self, space, latents, delta, maps, target, noise_weight: float, compiled: bool = True):
        _, S, S_rgb = latent_styles(self.G, space, latents, delta)
        with swapped_noise(self.G, maps):
            img = self.G.synthesize(S, S_rgb, noise_mode="const")
        return img, penalised(self.image_loss(img, target), maps, noise_weight)


class FastObjective:
    """The same objective on the fast synthesis path (module docstring). `precision` float32
    gives the fast path in float32 (equal to the reference to rounding; what the tests check)."""

    def __init__(self, G, image_loss, precision: str = "bfloat16", compile: bool = True, device="cpu"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        device = torch.device(device)
        dtype = PRECISIONS[precision]
        self.precision, self.compile = precision, bool(compile)
        self.G, self.image_loss = G, image_loss
        self.autocast = dtype != torch.float32
        # channels-last only where the convolutions are bf16 (float32 convs are slower in it)
        cl = device.type == "cuda" and self.autocast
        self.memory_format = torch.channels_last if cl else torch.contiguous_format
        self.synthesis = fast_synthesis(G, dtype=dtype, channels_last=cl).to(device).requires_grad_(False)
        names = noise_buffers(G)
        # the noise maps in the synthesis' layer order (StyleGAN2's layer table; StyleGAN3: none)
        self.noise_names = [f"{s.ada_name}.noise_const" for s in G.conv_layers] if names else []
        self.features = hasattr(image_loss, "target_features")  # LPIPS: the target's half once
        self._step = torch.compile(self.terms, dynamic=False) if self.compile else self.terms

    def _autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def prepare(self, target: torch.Tensor):
        if not self.features:
            return target
        with self._autocast(target.device):
            return self.image_loss.target_features(target.contiguous(memory_format=self.memory_format))

    def terms(self, space, latents, delta, maps, ctx, noise_weight: float):
        _, S, S_rgb = latent_styles(self.G, space, latents, delta)
        extra = {"noise": [maps[name] for name in self.noise_names]} if maps else {}
        img = self.synthesis(S, S_rgb, noise_mode="const", **extra)
        if self.features:
            with self._autocast(img.device):
                loss = self.image_loss.distance(img.contiguous(memory_format=self.memory_format), ctx)
        else:
            loss = self.image_loss(img, ctx)
        return img, penalised(loss, maps, noise_weight)

    def __call__(self, space, latents, delta, maps, ctx, noise_weight: float, compiled: bool = True):
        """`compiled=False` for one-off evaluations (the final clean pass, under no_grad), which
        would otherwise compile a second graph."""
        return (self._step if compiled else self.terms)(space, latents, delta, maps, ctx, noise_weight)


def make_objective(G, image_loss, precision: str = "float32", compile: bool = False, device="cpu"):
    """The reference objective exactly when precision is float32 and compile is off, else the
    fast one (float32 + compile: the fast path compiled in float32)."""
    if precision == "float32" and not compile:
        return ReferenceObjective(G, image_loss)
    return FastObjective(G, image_loss, precision, compile, device)
