"""The Triton filtered leaky ReLU (`stylegan3_triton.py`) computes what the stencils compute.

Run by Triton's interpreter on the CPU (TRITON_INTERPRET=1 must be set before Triton is
imported, hence a child process): every layer of the T and R fixture generators (their real
filters, paddings, up/down factors, radial filters and conv_clamp) on a random two-channel
input, against the stencil passes of `stylegan3_fast.py` (which equal NVIDIA's official output,
tests/test_stylegan3_fast.py), in float32. The channel count is free in the kernels, so two
channels keep the interpreter (one Python call per program) within seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, torch
from stylegan3_fixtures import generator
from pipeline_lib.generator.stylegan3_fast import StyleGAN3FastSynthesis, stencil, upsample
from pipeline_lib.generator.stylegan3_triton import filtered_lrelu

def stencils(plan, x, dcoef, bias):
    x = x.float() * dcoef[:, :, None, None] + bias[None, :, None, None]
    x = torch.nn.functional.pad(x.permute(0, 2, 3, 1), [0, 0] + [plan.pad_l, plan.pad_r] * 2)
    x = upsample(x, plan.g, 1, plan.t, plan.dtype)
    x = plan.act(upsample(x, plan.g, 2, plan.t, plan.dtype).float())
    if plan.radial:
        return stencil(x, plan.kd, (1, 2), plan.n_out, plan.down).permute(0, 3, 1, 2)
    x = stencil(x, plan.kd, (2,), plan.n_out, plan.down)
    return stencil(x, plan.kd, (1,), plan.n_out, plan.down).permute(0, 3, 1, 2)

gen = torch.Generator().manual_seed(0)
out = {}
for tag in ("t", "r"):
    G = generator(tag, conv_clamp=2.0)
    fast = StyleGAN3FastSynthesis(G, dtype=torch.float32)
    for i, plan in enumerate(fast.plans):
        if plan.torgb:
            continue
        n = plan.t + plan.j - 1 - plan.pad_l - plan.pad_r  # the conv output's side
        x = torch.randn(1, 2, n, n, generator=gen).contiguous(memory_format=torch.channels_last)
        dcoef, bias = torch.rand(1, 2, generator=gen) + 0.5, torch.randn(2, generator=gen)
        up, down = getattr(fast, f"up_taps{i}"), getattr(fast, f"down_taps{i}")
        got = filtered_lrelu(x, dcoef, bias, up, down, plan.pad_l, plan.t, plan.down, plan.n_out, plan.clamp)
        want = stencils(plan, x, dcoef, bias)
        key = f"{tag} {i} up {plan.up} radial {plan.radial}"
        out[key] = {"err": (got - want).abs().max().item(), "scale": want.abs().max().item(),
                    "shape_ok": tuple(got.shape) == tuple(want.shape), "clamped": bool((want.abs() >= 2.0 - 1e-6).any()),
                    "channels_last": got.is_contiguous(memory_format=torch.channels_last)}
print("RESULT " + json.dumps(out))
"""


def test_triton_filtered_lrelu_equals_the_stencils_on_every_fixture_layer():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT / "tests", env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    layers = json.loads(line.removeprefix("RESULT "))
    assert len(layers) == 28  # 14 conv layers of T and of R
    assert any("radial True" in k for k in layers) and any("up 4" in k for k in layers)
    for key, r in layers.items():
        assert r["shape_ok"] and r["channels_last"], (key, r)
        assert r["err"] <= 1e-5 * max(1.0, r["scale"]), (key, r)
    assert sum(r["clamped"] for r in layers.values()) > 0  # the clamp was exercised
