"""A batched projector of aligned faces into W, W+ or S, with Wulff & Torralba's Gaussian prior.

The baseline is NVIDIA's stylegan2-ada `projector.py` schedule (numbers in
shared/papers/README.md, "NVIDIA's projector"): start at w_avg, Adam (0.9, 0.999) with a
learning rate of 0.1 under a warm-up and cosine ramp-down, latent noise that decays to zero at
75% of the steps, noise maps optimised and re-normalised after every step under an
autocorrelation penalty, synthesis with noise_mode 'const'. W&T add lambda x the squared
Mahalanobis distance of v = leaky_relu_5(w) under the fitted Gaussian (one term per layer
vector for W+, summed).

Batching: every image has its own latent, its own noise maps and its own random stream
(`seeds`), and the objective is the *sum* of per-image objectives. Adam is element-wise, so a
batch gives the same results as projecting each image alone, up to float rounding
(tests/test_projector.py checks this). Per-image noise maps are realised by temporarily
replacing each layer's `noise_const` buffer with an [N, 1, H, W] tensor, which the layer
broadcasts over the batch; generators without noise buffers (StyleGAN3) simply skip all of it.

Speed (`precision`, `compile`): the step's objective is `latent/objective.py`'s reference
(float32, eager: NVIDIA's arithmetic, what the CPU tests run) or its fast GPU form (bf16
synthesis and VGG16, one compiled graph), which computes the same function; the random
streams, the schedule and the optimiser's updates are the same code in both.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import h5py
import numpy as np
import torch

from pipeline_lib.atomic import atomic_path
from pipeline_lib.latent.gaussian import LatentGaussian, mapping_w_batches, to_v
from pipeline_lib.latent.image_losses import make_image_loss
from pipeline_lib.latent.objective import (  # noqa: F401 (noise_regularization, swapped_noise: re-exported)
    PRECISIONS,
    latent_styles,
    make_objective,
    noise_buffers,
    noise_regularization,
    swapped_noise,
)

SPACES = ("w", "w+", "s")
# lambda: at a typical sample m^2 ~ w_dim = 512, so the prior costs ~0.05 per layer vector, the
# order of a good reconstruction's LPIPS (or of a pixel MSE of ~0.05 in [-1, 1]): negligible
# for in-distribution latents, dominant for the m^2 >> w_dim that unregularised projections
# (W+ in particular) reach. OUR choice, not the paper's (whose weight is not known); sweep it.
DEFAULT_PRIOR_WEIGHT = 1e-4


@dataclass(frozen=True)
class ProjectorConfig:
    """Everything that decides a projection; stored with every result."""

    space: str = "w"
    num_steps: int = 1000
    initial_learning_rate: float = 0.1
    lr_rampup_length: float = 0.05
    lr_rampdown_length: float = 0.25
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    optimize_noise: bool = True
    w_avg_samples: int = 10_000
    w_avg_seed: int = 123
    prior_weight: float = DEFAULT_PRIOR_WEIGHT  # used only when a LatentGaussian is given
    loss: str = "lpips"
    msssim_weight: float = 0.0
    vgg16_path: str | None = None
    precision: str = "float32"  # float32: the reference objective; bfloat16: the fast one (objective.py)
    compile: bool = False  # torch.compile the step's objective (GPU)

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.num_steps < 1:
            raise ValueError("num_steps must be >= 1")

    def learning_rate(self, t: float) -> float:
        """NVIDIA's schedule at t = step / num_steps: linear warm-up, cosine ramp-down."""
        ramp = min(1.0, (1.0 - t) / self.lr_rampdown_length)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        return self.initial_learning_rate * ramp * min(1.0, t / self.lr_rampup_length)

    def latent_noise_factor(self, t: float) -> float:
        """Multiplier of w_std for the latent noise: 0.05 (1 - t / 0.75)^2, zero after 75%."""
        return self.initial_noise_factor * max(0.0, 1.0 - t / self.noise_ramp_length) ** 2


@dataclass
class ProjectionResult:
    """Per image: the latent (w [N, w_dim] for W, ws [N, num_ws, w_dim] for W and W+), the
    styles, the reconstruction, the optimised noise maps and the final losses (measured on a
    clean forward pass without latent noise)."""

    config: ProjectorConfig
    ws: torch.Tensor | None
    S: torch.Tensor
    S_rgb: torch.Tensor
    images: torch.Tensor
    losses: dict[str, torch.Tensor]
    noise: dict[str, torch.Tensor] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)

    @property
    def w(self) -> torch.Tensor | None:
        return self.ws[:, 0] if self.ws is not None and self.config.space == "w" else None


@torch.no_grad()
def latent_statistics(G, num_samples: int = 10_000, seed: int = 123, device="cpu") -> dict[str, torch.Tensor]:
    """w_avg, NVIDIA's scalar w_std = sqrt(E ||w - w_avg||^2) (a vector norm, not a per-element
    deviation), and the same for S per channel (s_avg, s_std) for projections into S."""
    ws = torch.cat(list(mapping_w_batches(G, num_samples, seed, batch=1000, device=device)))
    w_avg = ws.mean(0)
    w_std = (ws - w_avg).square().sum(1).mean().sqrt()
    S = torch.cat([torch.cat(G.styles_from_w(chunk), dim=1) for chunk in ws.split(1000)])
    return {"w_avg": w_avg, "w_std": w_std, "s_avg": S.mean(0), "s_std": S.std(0)}


def _prior(gaussian: LatentGaussian, ws: torch.Tensor) -> torch.Tensor:
    """Sum over layer vectors of the squared Mahalanobis distance in V, per image [N]."""
    return gaussian.mahalanobis_sq(to_v(ws)).sum(1)


def project(
    G,
    target: torch.Tensor,
    config: ProjectorConfig,
    gaussian: LatentGaussian | None = None,
    seeds=None,
    image_loss=None,
    stats: dict | None = None,
    device=None,
    objective=None,
) -> ProjectionResult:
    """Project target faces (float NCHW in [-1, 1], the generator's resolution) into `config.space`.

    The W&T prior is on when `gaussian` is given and `config.prior_weight` > 0 (W and W+ only).
    `seeds` (one per image; default 0..N-1) drive each image's initial noise maps and latent
    noise, so an image gets the same result alone or in any batch. `stats` reuses
    `latent_statistics` across calls; `image_loss` overrides the one `config` names;
    `objective` (`objective.make_objective`, of `config.precision`) reuses one across calls,
    which a compiled objective needs (a new one compiles again).
    """
    device = torch.device(device) if device is not None else target.device
    target = target.to(device, torch.float32)
    n = target.shape[0]
    seeds = list(range(n)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != n:
        raise ValueError(f"{n} images but {len(seeds)} seeds")
    use_prior = gaussian is not None and config.prior_weight > 0
    if use_prior and config.space == "s":
        raise ValueError("the W&T prior lives in V, a function of w; it is not defined for S projections")
    if objective is None:
        if image_loss is None:
            image_loss = make_image_loss(config.loss, config.msssim_weight, config.vgg16_path, device)
        objective = make_objective(G, image_loss, config.precision, config.compile, device)
    elif objective.precision != config.precision:
        raise ValueError(f"the objective computes in {objective.precision}, the config asks for {config.precision}")
    if stats is None:
        stats = latent_statistics(G, config.w_avg_samples, config.w_avg_seed, device)
    gens = [torch.Generator().manual_seed(s) for s in seeds]

    def per_image_randn(shape):  # drawn on the CPU, image by image: batch-independent
        x = torch.stack([torch.randn(shape, generator=g) for g in gens])
        return x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x.to(device)

    num_ws = G.num_ws
    if config.space == "s":
        S0, S_rgb0 = G.styles_from_w(stats["w_avg"][None].to(device))
        latents = [x.detach().repeat(n, 1).requires_grad_(True) for x in (S0, S_rgb0)]
        # the same noise-to-spread ratio per element as NVIDIA's W noise, whose scale w_std is
        # a vector norm, i.e. sqrt(w_dim) x the per-element spread
        noise_scale_vec = stats["s_std"].to(device) * math.sqrt(G.w_dim)
    else:
        rows = 1 if config.space == "w" else num_ws
        latents = [stats["w_avg"].to(device).repeat(n, rows, 1).requires_grad_(True)]
    maps = {}
    if config.optimize_noise:
        for name, owner in noise_buffers(G).items():
            maps[name] = per_image_randn([1, *owner.noise_const.shape[-2:]]).requires_grad_(True)
    # fused Adam (the same update, one kernel) on the fast path only: the reference stays as it was
    fused = {"fused": True} if device.type == "cuda" and objective.precision != "float32" else {}
    optimizer = torch.optim.Adam(
        latents + list(maps.values()), betas=(0.9, 0.999), lr=config.initial_learning_rate, **fused
    )
    ctx = objective.prepare(target)

    def latent_noise(t: float) -> torch.Tensor:
        """This step's latent noise (a tensor, so a compiled objective never sees the factor)."""
        if config.space == "s":
            dim = latents[0].shape[1] + latents[1].shape[1]
            return per_image_randn([dim]) * noise_scale_vec * config.latent_noise_factor(t)
        return per_image_randn(list(latents[0].shape[1:])) * (stats["w_std"].to(device) * config.latent_noise_factor(t))

    def objective_terms(delta, compiled: bool):
        img, terms = objective(config.space, latents, delta, maps, ctx, config.regularize_noise_weight, compiled)
        total = terms.pop("total")
        if gaussian is not None and config.space != "s":
            # of the optimised, noise-free latent: one vector for W, one per layer for W+
            terms["mahalanobis_sq"] = _prior(gaussian, latents[0])
            if use_prior:
                terms["prior"] = config.prior_weight * terms["mahalanobis_sq"]
                total = total + terms["prior"]
        terms["total"] = total
        return img, terms

    for step in range(config.num_steps):
        t = step / config.num_steps
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate(t)
        _, terms = objective_terms(latent_noise(t), compiled=True)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].sum().backward()
        optimizer.step()
        with torch.no_grad():  # unit variance, zero mean per image and map
            for m in maps.values():
                m -= m.mean(dim=(1, 2, 3), keepdim=True)
                m *= m.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()

    with torch.no_grad():
        img, terms = objective_terms(None, compiled=False)
        ws, S, S_rgb = latent_styles(G, config.space, latents, None)
        if ws is not None:
            ws = ws.detach().clone()
    return ProjectionResult(
        config=config,
        ws=ws,
        S=S.detach().clone(),
        S_rgb=S_rgb.detach().clone(),
        images=img.detach(),
        losses={k: v.detach() for k, v in terms.items()},
        noise={k: v.detach().clone() for k, v in maps.items()},
        seeds=seeds,
    )


def write_projection(path, result: ProjectionResult, targets: torch.Tensor | None = None, attrs: dict | None = None):
    """Write one projection batch to HDF5 atomically: latents, styles, reconstructions (and
    targets), noise maps, per-image losses, the config as JSON and any extra `attrs`."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = "genfields.projection.v1"
        f.attrs["config"] = json.dumps(asdict(result.config), sort_keys=True)
        f.attrs["space"] = result.config.space
        f.attrs["seeds"] = np.asarray(result.seeds, dtype=np.int64)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        if result.ws is not None:
            f.create_dataset("ws", data=result.ws.cpu().numpy())
        if result.w is not None:
            f.create_dataset("w", data=result.w.cpu().numpy())
        f.create_dataset("S", data=result.S.cpu().numpy())
        f.create_dataset("S_rgb", data=result.S_rgb.cpu().numpy())
        f.create_dataset("images", data=result.images.cpu().numpy(), compression="gzip")
        if targets is not None:
            f.create_dataset("targets", data=targets.cpu().numpy(), compression="gzip")
        losses = f.create_group("losses")
        for key, value in result.losses.items():
            losses.create_dataset(key, data=value.cpu().numpy())
        noise = f.create_group("noise")
        for key, value in result.noise.items():
            noise.create_dataset(key, data=value.cpu().numpy())
