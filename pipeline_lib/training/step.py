"""One training step of M_ref (paper Sec. 3.3-3.5): S_id from the identity face's w,
dS = M_ref(features), I_out = G(S_id + dS), the encoders' view of I_out and the losses of
Eqs. 7-12; plus the optimiser, the learning-rate schedule and the checkpointable state.

What makes it fast without changing what it computes: the frozen generator runs as
`FastSynthesis` (bf16 convolutions, float32 styles and demodulation, channels-last), the
encoders under bf16 autocast with their geometry in float32, the whole forward optionally
`torch.compile`d; the losses are float32, and loss terms stay on the GPU until a log flush.

One compiled graph per job: both step kinds (cross / reconstruction) run the same graph, the
reconstruction loss weighted by a 0/1 flag tensor (on cross steps it compares I_out with
itself, a finite zero). A compilation of the full step takes minutes on a GPU; two graphs
doubled it, and a Python bool in the signature is a guard that recompiles.

Several variants (Table 2) can train in one Trainer: one generator and encoder pass over the
concatenation of their batches, each variant with its own M_ref, optimiser, schedule and loss
weights. The frozen networks act on each face alone (encoders in eval mode), and each
variant's total loss reads only its own slice, so each M_ref gets the gradient it would get
alone (tests/test_training_together.py).
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import torch
import torch.distributed as dist

from pipeline_lib.encoders.base import encoder_view
from pipeline_lib.generator.fast import fast_synthesis
from pipeline_lib.images import from_uint8_hwc
from pipeline_lib.mref import ReferenceMapper, mapper_input
from pipeline_lib.settings import TrainingSettings
from pipeline_lib.training.data import TrainingData
from pipeline_lib.training.losses import (
    LossWeights,
    euler_loss,
    identity_loss,
    landmark_loss,
    reconstruction_loss,
    style_negative_log_likelihood,
    total_loss,
)

# MS-SSIM's four 2x reductions need a side above 160 px; smaller images are compared in the
# encoders' 256 frame instead (no generator of 256 px or more is affected).
MS_SSIM_MIN_SIDE = 161
LOSS_TERMS = ("total", "identity", "landmark", "euler", "reconstruction", "style_nll")


def loss_weights(settings: TrainingSettings) -> LossWeights:
    """The loss weights of a variant (Eqs. 7-12)."""
    return LossWeights(
        lambda_id=settings.lambda_id,
        lambda_attr=settings.lambda_attr,
        lambda_rec=settings.lambda_rec,
        lambda_reg=settings.lambda_reg,
        alpha=settings.alpha,
        euler=settings.euler_loss,
    )


def lr_factor(step: int, settings: TrainingSettings) -> float:
    """Exponential decay from `lr` at step 0 to `lr_end` at the last step."""
    if settings.num_steps == 1:
        return 1.0
    return (settings.lr_end / settings.lr) ** (step / (settings.num_steps - 1))


class EditModel(torch.nn.Module):
    """The frozen half of a step: I_out = G(S_id + dS) and the encoders' view of I_out."""

    def __init__(self, G, identity_encoder, landmark_encoder, precision: str, device):
        super().__init__()
        cuda = torch.device(device).type == "cuda"
        self.dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        channels_last = cuda and self.dtype == torch.bfloat16  # float32 convs are slower channels-last
        self.synthesis = (
            fast_synthesis(G, dtype=self.dtype, channels_last=channels_last).to(device).requires_grad_(False)
        )
        self.identity_encoder = identity_encoder
        self.landmark_encoder = landmark_encoder
        self.G = G
        self.resolution = G.img_resolution

    def styles(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.G.styles_from_w(w)

    def forward(self, S: torch.Tensor, S_rgb: torch.Tensor, noise_mode: str):
        # Clamped as the saved faces are, so the encoders see I_out as they saw the dataset.
        img = self.synthesis(S, S_rgb, noise_mode=noise_mode).clamp(-1, 1)
        autocast = self.dtype == torch.bfloat16
        with torch.autocast(img.device.type, dtype=torch.bfloat16, enabled=autocast):
            view = encoder_view(img)  # the 256 frame of the annotations (identity for 256 px generators)
            embedding = self.identity_encoder.embed(view)
            landmarks, pose = self.landmark_encoder.landmarks_and_pose(view)
        return img, embedding.float(), landmarks.float(), pose.float()


def loss_terms(img, embedding, landmarks, pose, S_out, targets: dict, data: TrainingData, alpha: float, reconstruction):
    """Every loss term of one step (float32), whether or not its weight is zero: all are logged.

    `reconstruction` is a bool, or a 0/1 tensor: then L_rec is always computed, against the
    target image where it is 1 and against I_out itself (a finite zero) where it is 0."""
    terms = {
        "identity": identity_loss(targets["identity"], embedding),
        "landmark": landmark_loss(targets["landmarks"], landmarks),
        "euler": euler_loss(targets["pose"], pose),
        "style_nll": style_negative_log_likelihood(S_out, data.style_mean, data.style_std),
    }
    flagged = isinstance(reconstruction, torch.Tensor)
    if flagged or reconstruction:
        ref, out = targets["image"], img
        if flagged:
            ref = torch.where(reconstruction, ref, img.detach())
        if img.shape[-1] < MS_SSIM_MIN_SIDE:  # small generators (tests, demos): in the 256 frame
            ref, out = encoder_view(ref), encoder_view(out)
        terms["reconstruction"] = reconstruction_loss(ref, out, alpha)
    return terms


class VariantTrainer:
    """One variant's trainable half: its M_ref, optimiser, schedule, step and pending losses."""

    def __init__(self, settings: TrainingSettings, data, style_dim: int, device, world: int):
        self.settings, self.device = settings, device
        torch.manual_seed(settings.seed)
        in_dim = data.attribute.shape[1] + (data.identity.shape[1] if settings.input_features != "attribute" else 0)
        self.model = ReferenceMapper(in_dim, style_dim, settings.hidden).to(device)
        self.ddp = None
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        fused = device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr, betas=settings.betas, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, settings))
        self.weights = loss_weights(settings)
        self.step = 0
        self._pending: list[tuple[int, float, bool, torch.Tensor]] = []

    @property
    def mapper(self):
        return self.ddp if self.ddp is not None else self.model


class Trainer:
    """The step of one variant (`settings` a TrainingSettings) or of several trained together
    (a list of them); with one variant, `model`, `settings`, `step`, `optimizer` are its own."""

    def __init__(
        self,
        G,
        identity_encoder,
        landmark_encoder,
        data,
        settings,
        device,
        rank=0,
        world=1,
        compile_mode=None,
    ):
        many = not isinstance(settings, TrainingSettings)
        all_settings = list(settings) if many else [settings]
        self.data, self.device, self.rank, self.world = data, torch.device(device), rank, world
        shared = {(s.precision, s.compile) for s in all_settings}
        if len(shared) != 1:
            raise ValueError("variants trained together must share precision and compile")
        if many and world > 1:
            raise ValueError("variants are trained together in one process on one device (gpus: 1)")
        self.variants = [VariantTrainer(s, data, G.style_dim, self.device, world) for s in all_settings]
        self.edit = EditModel(G, identity_encoder, landmark_encoder, all_settings[0].precision, self.device)
        self._flags = {b: torch.tensor(b, device=self.device) for b in (False, True)}
        self._blank: dict[tuple, torch.Tensor] = {}
        # The whole forward (styles, every M_ref, generator, encoders, losses) is one compiled
        # graph; the optimiser steps stay eager (fused Adam).
        compiled = all_settings[0].compile
        self.forward = torch.compile(self._forward, dynamic=False, mode=compile_mode) if compiled else self._forward

    # -- one variant's view (the single-variant job, tests, benchmarks) ------------------------

    def _only(self) -> VariantTrainer:
        if len(self.variants) != 1:
            raise AttributeError("this Trainer trains several variants; use trainer.variants[i]")
        return self.variants[0]

    settings = property(lambda self: self._only().settings)
    model = property(lambda self: self._only().model)
    optimizer = property(lambda self: self._only().optimizer)
    mapper = property(lambda self: self._only().mapper)
    step = property(lambda self: self._only().step)
    _pending = property(lambda self: self._only()._pending)

    def targets(self, ids: torch.Tensor, attrs: torch.Tensor, image) -> dict:
        t = {
            "identity": self.data.identity[ids],
            "landmarks": self.data.landmarks[attrs],
            "pose": self.data.pose[attrs],
        }
        if image is not None:
            t["image"] = from_uint8_hwc(image)
        return t

    def edit_styles(self, ids: torch.Tensor, attrs: torch.Tensor, mapper=None, variant: VariantTrainer | None = None):
        """S_id, S_rgb, dS for identity faces `ids` and attribute faces `attrs`."""
        v = variant or self._only()
        S_id, S_rgb = self.edit.styles(self.data.w[ids])
        features = mapper_input(self.data.identity[ids], self.data.attribute[attrs], v.settings.input_features)
        dS = (mapper or v.mapper)(features)
        return S_id, S_rgb, dS

    def _forward(self, ids: list, attrs: list, images: list, reconstruction: list):
        """Sum of the variants' total losses, and each variant's row of every term ([V, terms]).
        The generator and encoders run once on the concatenated batches."""
        S_id, S_rgb = self.edit.styles(self.data.w[torch.cat(ids)])
        dS = [
            v.mapper(mapper_input(self.data.identity[i], self.data.attribute[a], v.settings.input_features))
            for v, i, a in zip(self.variants, ids, attrs)
        ]
        S_out = S_id + torch.cat(dS)
        img, embedding, landmarks, pose = self.edit(S_out, S_rgb, self.data.noise_mode)
        totals, rows, start = [], [], 0
        nan = torch.full((), float("nan"), device=S_out.device)
        for v, i, a, image, rec in zip(self.variants, ids, attrs, images, reconstruction):
            sl = slice(start, start + len(i))
            start = sl.stop
            w = v.weights
            terms = loss_terms(
                img[sl], embedding[sl], landmarks[sl], pose[sl], S_out[sl], self.targets(i, a, image), self.data,
                w.alpha, rec,
            )  # fmt: skip
            total = total_loss(terms, w, reconstruction_step=rec)
            terms["reconstruction"] = torch.where(rec, terms["reconstruction"], nan)  # logged on its steps only
            totals.append(total)
            rows.append(torch.stack([total.detach()] + [terms[k].detach() for k in LOSS_TERMS[1:]]))
        return torch.stack(totals).sum(), torch.stack(rows)

    def _blank_image(self, like: torch.Tensor) -> torch.Tensor:
        """The image input of a cross step (not read: its reconstruction weight is 0)."""
        n, res = like.shape[0], self.edit.resolution
        key = (n, res)
        if key not in self._blank:
            self._blank[key] = torch.zeros(n, res, res, 3, dtype=torch.uint8, device=self.device)
        return self._blank[key]

    def train_step(self, ids, attrs, cross: bool, image) -> torch.Tensor:
        """One step of the single variant."""
        return self.train_steps([(ids, attrs, cross, image)])

    def train_steps(self, batches: list) -> torch.Tensor:
        """One optimiser step of every variant; `batches[i]` = (ids, attrs, cross, image) of variant i."""
        ids = [b[0].to(self.device, non_blocking=True) for b in batches]
        # One tensor passed as both ids and attrs (a caller's reconstruction step) is a dynamo
        # guard on aliasing: a second graph. A copy keeps one graph.
        attrs = [
            a.clone() if a is i else a for a, i in zip((b[1].to(self.device, non_blocking=True) for b in batches), ids)
        ]
        images = [
            self._blank_image(i) if b[3] is None else b[3].to(self.device, non_blocking=True)
            for b, i in zip(batches, ids)
        ]
        flags = [self._flags[not b[2]] for b in batches]
        total, rows = self.forward(ids, attrs, images, flags)
        for v in self.variants:
            v.optimizer.zero_grad(set_to_none=True)
        total.backward()
        rows = rows.clone()  # a CUDA graph reuses its outputs
        for v, b, row in zip(self.variants, batches, rows):
            v.optimizer.step()
            lr = v.scheduler.get_last_lr()[0]
            v.scheduler.step()
            v._pending.append((v.step, lr, b[2], row))
            v.step += 1
        return total

    def flush_losses(self, variant: VariantTrainer | None = None) -> list[dict]:
        """The pending steps' loss terms as rows (averaged over GPUs); the loop's only sync."""
        v = variant or self._only()
        if not v._pending:
            return []
        values = torch.stack([p[3] for p in v._pending])
        if self.world > 1:
            dist.all_reduce(values)
            values /= self.world
        values = values.cpu().numpy()
        rows = []
        for (step, lr, cross, _), row in zip(v._pending, values):
            rows.append({"step": step, "lr": lr, "cross": int(cross), **dict(zip(LOSS_TERMS, map(float, row)))})
        v._pending.clear()
        bad = [r["step"] for r in rows if not math.isfinite(r["total"])]
        if bad:
            raise FloatingPointError(
                f"the loss of {v.settings.variant} is not finite at step {bad[0]}; the last checkpoint is kept"
            )
        return rows

    # -- checkpoints --------------------------------------------------------------------------

    def state(self, fingerprint: str, variant: VariantTrainer | None = None) -> dict:
        v = variant or self._only()
        return {
            "step": v.step,
            "model": v.model.state_dict(),
            "optimizer": v.optimizer.state_dict(),
            "scheduler": v.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": json.dumps(_jsonable(np.random.get_state())),
                "python": json.dumps(_jsonable(random.getstate())),
            },
            "fingerprint": fingerprint,
        }

    def load_state(self, state: dict, variant: VariantTrainer | None = None) -> None:
        v = variant or self._only()
        v.model.load_state_dict(state["model"])
        v.optimizer.load_state_dict(state["optimizer"])
        v.scheduler.load_state_dict(state["scheduler"])
        v.step = int(state["step"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np_state = json.loads(rng["numpy"])
        np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
        py_state = json.loads(rng["python"])
        random.setstate((py_state[0], tuple(py_state[1]), py_state[2]))


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    return x
