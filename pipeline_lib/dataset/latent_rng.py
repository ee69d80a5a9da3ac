"""Latents z of the synthetic dataset drawn on the device by a counter-based generator.

Why: the per-face numpy streams (`latents_numpy`: one `default_rng((seed, i))` per face) run on
the CPU, one face at a time, and cost about a tenth of the GPU's time at batch 256. A
counter-based generator (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3") is
a pure function of (key, counter): z[i, c] depends only on (seed, i, c), so it is computed for a
whole chunk at once, on the GPU, and a face's z cannot depend on the batch it is drawn in.

The generator is Philox-4x32-10, written in plain torch int64 operations so that the same code
runs on CPU and GPU with exact integer results: every 32x32-bit product is formed from 16-bit
halves, so no intermediate exceeds 2^35 and nothing relies on integer overflow. Its output is
checked against Random123's published known-answer vectors (tests/test_latent_rng.py).

Mapping to z: key = (seed mod 2^32, seed div 2^32); counter = (block j, i mod 2^32, i div 2^32,
0) gives four uint32 words for components 4j..4j+3 of face i. Each pair of words becomes two
uniforms u = (x + 1/2) / 2^32 in (0, 1) and two normals by Box-Muller, computed in float64 and
rounded to float32. The integers are identical on every device; the float64 log/sqrt/cos/sin of
CPU and CUDA may differ by an ulp or two of float64, which changes the float32 result only when
a value lies within ~1e-16 relative of a float32 rounding boundary (chance ~1e-8 per value), so
CPU and GPU latents are equal in practice but not guaranteed bit for bit. Within one device a
face's z is bit-identical whatever the chunk, shard or job. The largest |z| Box-Muller can give
from 32-bit uniforms is sqrt(2 ln 2^33) = 6.8.
"""

from __future__ import annotations

import math

import numpy as np
import torch

LATENT_RNGS = ("numpy", "counter")  # dataset.latent_rng: the per-face numpy streams, or Philox on the device

_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF
_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # Random123's multipliers
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments (golden ratio, sqrt(3) - 1)
_ROUNDS = 10


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of the 64-bit product a * b, for uint32 values held in int64."""
    a1, a0 = a >> 16, a & _MASK16
    b1, b0 = b >> 16, b & _MASK16
    low_low = a0 * b0
    mid = a1 * b0 + a0 * b1 + (low_low >> 16)  # < 2^34: no overflow
    lo = ((mid & _MASK16) << 16) | (low_low & _MASK16)
    hi = a1 * b1 + (mid >> 16)
    return hi, lo


def philox4x32(counter: tuple, key: tuple) -> tuple:
    """Philox-4x32-10 of counter words (c0..c3) and key words (k0, k1): four uint32 words.
    Each word is an int64 tensor (or int) in [0, 2^32); tensors broadcast."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(_ROUNDS):
        if r:
            k0, k1 = (k0 + _PHILOX_W0) & _MASK32, (k1 + _PHILOX_W1) & _MASK32
        hi0, lo0 = _mulhilo(_PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(_PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def latents_counter(global_seed: int, start: int, count: int, z_dim: int, device="cpu") -> torch.Tensor:
    """z [count, z_dim] float32 of faces start..start+count-1, on `device`."""
    if z_dim % 4:
        raise ValueError(f"the counter generator draws z in groups of four components; z_dim {z_dim} is not")
    if not 0 <= global_seed < 2**64 or start < 0:
        raise ValueError("dataset.seed must be in [0, 2^64) and face indices non-negative")
    device = torch.device(device)
    face = torch.arange(start, start + count, device=device, dtype=torch.int64)[:, None]
    block = torch.arange(z_dim // 4, device=device, dtype=torch.int64)[None, :]
    zero = torch.zeros((), device=device, dtype=torch.int64)
    key = (global_seed & _MASK32, global_seed >> 32)
    x = philox4x32((block, face & _MASK32, face >> 32, zero), key)
    u = [(w.to(torch.float64) + 0.5) * 2.0**-32 for w in x]  # (0, 1): log never sees 0
    z = torch.empty((count, z_dim // 4, 4), device=device, dtype=torch.float64)
    for pair, (u1, u2) in enumerate(((u[0], u[1]), (u[2], u[3]))):
        radius = torch.sqrt(-2.0 * torch.log(u1))
        angle = (2.0 * math.pi) * u2
        z[:, :, 2 * pair] = radius * torch.cos(angle)
        z[:, :, 2 * pair + 1] = radius * torch.sin(angle)
    return z.reshape(count, z_dim).to(torch.float32)


def latents_numpy(global_seed: int, indices, z_dim: int) -> np.ndarray:
    """z for each global index from a numpy stream of its own (seeded by (global_seed, i)):
    `dataset.latent_rng: numpy`, the generator of every dataset made before the counter one."""
    out = np.empty((len(indices), z_dim), dtype=np.float32)
    for row, i in enumerate(indices):
        out[row] = np.random.default_rng([int(global_seed), int(i)]).standard_normal(z_dim, dtype=np.float32)
    return out


def draw_latents(rng: str, global_seed: int, start: int, count: int, z_dim: int, device="cpu") -> torch.Tensor:
    """z [count, z_dim] float32 of faces start..start+count-1 on `device`, by `dataset.latent_rng`."""
    if rng == "counter":
        return latents_counter(global_seed, start, count, z_dim, device)
    if rng == "numpy":
        z = torch.from_numpy(latents_numpy(global_seed, range(start, start + count), z_dim))
        return z.to(device, non_blocking=torch.device(device).type == "cuda")
    raise ValueError(f"dataset.latent_rng must be one of {LATENT_RNGS}, got {rng!r}")
