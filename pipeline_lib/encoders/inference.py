"""Fast batched inference of the frozen encoders, for annotating the dataset (issue 16).

The float32 eager encoder is the reference, and what CPUs run. The fast mode changes how the
networks compute, never what the encoder returns:

- Channels-last weights: cuDNN's tensor-core convolutions read NHWC, and a channels-last weight
  makes every convolution take and return NHWC, so no layer converts back and forth.
- The encoder's networks (`encoder.networks`) under autocast in a dtype chosen per encoder by
  fidelity against float32 (config.yaml `annotation.precision`). The encoders keep their crops,
  FAN's soft-argmax and depth heatmaps, the 3DMM geometry and the pose fits in float32 under
  autocast (fan.py, tddfa.py), so reduced precision only reaches the networks' own arithmetic.
- Optionally `torch.compile` with one static batch shape (the annotation loop pads its last
  batch), which fuses the elementwise layers around the convolutions (BatchNorm + ReLU, FAN's
  concatenations and residual sums) into one pass each.

BatchNorm is deliberately not folded into the convolutions: folded weights rounded to bf16 or
float16 moved 3DDFA_V2's landmarks 1.7-2.5x further from float32 on the real faces (float16:
0.086 px instead of 0.05), too close to the 0.1 px contract.

float16 has 8x bf16's mantissa but a range of 65,504; `reference` recomputes a batch in float32
when a reduced-precision output is not finite, so an overflow can cost time, never a wrong row.
"""

from __future__ import annotations

import copy

import torch

from pipeline_lib.encoders import PRECISIONS
from pipeline_lib.encoders.base import LandmarkEncoder, freeze

DTYPES = dict(zip(PRECISIONS, (torch.float32, torch.bfloat16, torch.float16)))


def output_names(encoder) -> tuple[str, ...]:
    """What an encoder's batched forward returns: landmarks and pose, or one embedding."""
    return ("landmarks", "pose") if isinstance(encoder, LandmarkEncoder) else ("embedding",)


class EncoderRunner:
    """One encoder's batched forward for annotation: images -> {output name: float32 tensor}.

    `fast=False` with float32 runs the encoder exactly as given (the reference path).
    """

    def __init__(self, encoder, precision: str = "float32", fast: bool = False, compile: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.precision, self.fast, self.compiled = precision, fast, compile
        self.dtype = DTYPES[precision]
        self.outputs = output_names(encoder)
        if fast:  # a copy: the caller's encoder keeps its layout
            encoder = freeze(copy.deepcopy(encoder).to(memory_format=torch.channels_last))
        if fast and precision == "float16" and torch.cuda.is_available():
            exact_fp16_reductions()
        self.encoder = encoder
        self._run = torch.compile(self._forward, dynamic=False) if compile else self._forward

    @torch.no_grad()
    def _forward(self, img: torch.Tensor, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        dtype = self.dtype if dtype is None else dtype
        with torch.autocast(img.device.type, dtype=dtype, enabled=dtype != torch.float32):
            if self.outputs == ("embedding",):
                values = (self.encoder.embed(img),)
            else:
                values = self.encoder.landmarks_and_pose(img)
        return {name: value.float() for name, value in zip(self.outputs, values)}

    def __call__(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._run(img)

    def overflowed(self, values: dict) -> bool:
        """Whether a reduced-precision result (device tensors or host arrays) holds a value that
        is not finite: the batch is then recomputed with `reference` (annotation, evaluation)."""
        return self.dtype != torch.float32 and not all(
            bool(torch.as_tensor(v).isfinite().all()) for v in values.values()
        )

    def reference(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        """The same encoder in float32, eager (the fallback for a batch that overflowed)."""
        return self._forward(img, torch.float32)

    def describe(self) -> dict:
        """What the annotations' provenance records about how this encoder ran."""
        return {"precision": self.precision, "fast": self.fast, "compile": self.compiled}


def exact_fp16_reductions() -> None:
    """Keep cuBLAS from reducing float16 products in float16 (split-K); PyTorch allows it by
    default. Its error would land on the fully connected heads (3DDFA's 62 parameters, the depth
    network's 68 z values), whose float16 budget the fidelity contract already spends."""
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
