"""One training step of M_ref (paper Sec. 3.3-3.5): S_id from the identity face's w,
dS = M_ref(features), I_out = G(S_id + dS), the encoders' view of I_out and the losses of
Eqs. 7-12; plus the optimiser, the learning-rate schedule and the checkpointable state.

What makes it fast without changing what it computes: the frozen generator runs as
`FastSynthesis` (bf16 convolutions, float32 styles and demodulation, channels-last), the
encoders under bf16 autocast with their geometry in float32, the whole forward optionally
`torch.compile`d; the losses are float32, and loss terms stay on the GPU until a log flush.
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


def loss_terms(
    img, embedding, landmarks, pose, S_out, targets: dict, data: TrainingData, alpha: float, reconstruction: bool
):
    """Every loss term of one step (float32), whether or not its weight is zero: all are logged."""
    terms = {
        "identity": identity_loss(targets["identity"], embedding),
        "landmark": landmark_loss(targets["landmarks"], landmarks),
        "euler": euler_loss(targets["pose"], pose),
        "style_nll": style_negative_log_likelihood(S_out, data.style_mean, data.style_std),
    }
    if reconstruction:
        ref, out = targets["image"], img
        if img.shape[-1] < MS_SSIM_MIN_SIDE:  # small generators (tests, demos): in the 256 frame
            ref, out = encoder_view(ref), encoder_view(out)
        terms["reconstruction"] = reconstruction_loss(ref, out, alpha)
    return terms


class Trainer:
    def __init__(
        self,
        G,
        identity_encoder,
        landmark_encoder,
        data,
        settings: TrainingSettings,
        device,
        rank=0,
        world=1,
        compile_mode=None,
    ):
        self.settings, self.data, self.device, self.rank, self.world = settings, data, torch.device(device), rank, world
        torch.manual_seed(settings.seed)
        in_dim = data.attribute.shape[1] + (data.identity.shape[1] if settings.input_features != "attribute" else 0)
        self.model = ReferenceMapper(in_dim, G.style_dim, settings.hidden).to(self.device)
        self.ddp = None
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr, betas=settings.betas, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, settings))
        self.edit = EditModel(G, identity_encoder, landmark_encoder, settings.precision, self.device)
        # The whole forward (styles, M_ref, generator, encoders, losses) is compiled as one graph
        # per step kind (cross / reconstruction); the optimiser step stays eager (fused Adam).
        self.forward = (
            torch.compile(self._forward, dynamic=False, mode=compile_mode) if settings.compile else self._forward
        )
        self.step = 0
        self._pending: list[tuple[int, float, bool, torch.Tensor]] = []

    @property
    def mapper(self):
        return self.ddp if self.ddp is not None else self.model

    def targets(self, ids: torch.Tensor, attrs: torch.Tensor, image) -> dict:
        t = {
            "identity": self.data.identity[ids],
            "landmarks": self.data.landmarks[attrs],
            "pose": self.data.pose[attrs],
        }
        if image is not None:
            t["image"] = from_uint8_hwc(image)
        return t

    def edit_styles(self, ids: torch.Tensor, attrs: torch.Tensor, mapper=None):
        """S_id, S_rgb, dS for identity faces `ids` and attribute faces `attrs`."""
        S_id, S_rgb = self.edit.styles(self.data.w[ids])
        features = mapper_input(self.data.identity[ids], self.data.attribute[attrs], self.settings.input_features)
        dS = (mapper or self.mapper)(features)
        return S_id, S_rgb, dS

    def _forward(self, ids, attrs, image, reconstruction: bool):
        """Total loss and the row of every term, for one batch."""
        S_id, S_rgb, dS = self.edit_styles(ids, attrs)
        S_out = S_id + dS
        img, embedding, landmarks, pose = self.edit(S_out, S_rgb, self.data.noise_mode)
        w = loss_weights(self.settings)
        terms = loss_terms(
            img, embedding, landmarks, pose, S_out, self.targets(ids, attrs, image), self.data, w.alpha, reconstruction
        )
        total = total_loss(terms, w, reconstruction_step=reconstruction)
        nan = torch.full((), float("nan"), device=total.device)
        return total, torch.stack([total.detach()] + [terms.get(k, nan).detach() for k in LOSS_TERMS[1:]])

    def train_step(self, ids, attrs, cross: bool, image) -> torch.Tensor:
        ids = ids.to(self.device, non_blocking=True)
        attrs = attrs.to(self.device, non_blocking=True)
        if image is not None:
            image = image.to(self.device, non_blocking=True)
        total, row = self.forward(ids, attrs, image, not cross)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self._pending.append((self.step, lr, cross, row.clone()))  # clone: a CUDA graph reuses its outputs
        self.step += 1
        return total

    def flush_losses(self) -> list[dict]:
        """The pending steps' loss terms as rows (averaged over GPUs); the loop's only sync."""
        if not self._pending:
            return []
        values = torch.stack([p[3] for p in self._pending])
        if self.world > 1:
            dist.all_reduce(values)
            values /= self.world
        values = values.cpu().numpy()
        rows = []
        for (step, lr, cross, _), v in zip(self._pending, values):
            rows.append({"step": step, "lr": lr, "cross": int(cross), **dict(zip(LOSS_TERMS, map(float, v)))})
        self._pending.clear()
        bad = [r["step"] for r in rows if not math.isfinite(r["total"])]
        if bad:
            raise FloatingPointError(f"the loss is not finite at step {bad[0]}; the last checkpoint is kept")
        return rows

    # -- checkpoints --------------------------------------------------------------------------

    def state(self, fingerprint: str) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": json.dumps(_jsonable(np.random.get_state())),
                "python": json.dumps(_jsonable(random.getstate())),
            },
            "fingerprint": fingerprint,
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
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
