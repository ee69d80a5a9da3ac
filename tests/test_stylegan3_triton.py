"""The Triton filtered leaky ReLU (`stylegan3_triton.py`'s four passes and `stylegan3_fused.py`'s
one kernel per layer) computes what the stencils compute.

Run by Triton's interpreter on the CPU (TRITON_INTERPRET=1 must be set before Triton is
imported, hence a child process), on the real filters, paddings and up/down factors of the T
and R fixture generators' layers (up 2 and 4, R's radial down filters, the critically sampled
last layer's crop), with and without the clamp (0.5, so that it bites), against the stencil passes of
`stylegan3_fast.py` (which equal NVIDIA's official output, tests/test_stylegan3_fast.py), in
float32; R's cases also through the chunked launch (one image at a time, for memory); and the
whole fast module with the fused kernel in every layer against the float32 reference. Sizes and channels are free in the kernels, so a small input (side 8 or more, three
channels) keeps the interpreter, one Python call per program, within seconds. On a GPU,
benchmarks/stylegan3_benchmark.py compares the whole generator with the float32 reference."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, types, numpy as np, torch
from stylegan3_fixtures import generator
from pipeline_lib.generator.stylegan3_fast import _Layer, stencil, stencil_terms, up_phase_taps, upsample
from pipeline_lib.generator import stylegan3_triton
from pipeline_lib.generator.stylegan3_triton import filtered_lrelu_op as filtered_lrelu  # the custom op, as the fast path calls it
from pipeline_lib.generator.stylegan3_fused import filtered_lrelu_op as fused, fused_plan

def plan_for(G, index, clamp, min_out=4):
    # the fixture layer's filters and padding, for a small input of side n (at least 8, 4 outputs)
    spec = G.conv_layers[index]
    layer = G.module_of(spec)
    fu = layer.up_filter.double().numpy()
    fd = layer.down_filter.double().numpy()
    kd = np.flip(fd, tuple(range(fd.ndim))).copy()
    up, down = layer.spec.up, spec.down
    for n in range(8, 128):
        g, pad_l, pad_r, m = up_phase_taps(n, up, spec.padding[0], spec.padding[1], np.flip(fu) * up)
        n_out = (m - fd.shape[0]) // down + 1
        if n_out >= min_out:
            break
    act = lambda y: _Layer.act(types.SimpleNamespace(clamp=clamp), y)
    return types.SimpleNamespace(n=n, g=[stencil_terms(r) for r in g], g_array=g, pad_l=pad_l, pad_r=pad_r,
        t=-(-m // up), up=up, down=down, kd=stencil_terms(kd), kd_array=kd, n_out=n_out, radial=fd.ndim == 2, act=act)

def stencils(plan, x, dcoef, bias):
    x = x.float() * dcoef[:, :, None, None] + bias[None, :, None, None]
    x = torch.nn.functional.pad(x.permute(0, 2, 3, 1), [0, 0] + [plan.pad_l, plan.pad_r] * 2)
    x = upsample(x, plan.g, 1, plan.t, torch.float32)
    x = plan.act(upsample(x, plan.g, 2, plan.t, torch.float32))
    if plan.radial:
        return stencil(x, plan.kd, (1, 2), plan.n_out, plan.down).permute(0, 3, 1, 2)
    x = stencil(x, plan.kd, (2,), plan.n_out, plan.down)
    return stencil(x, plan.kd, (1,), plan.n_out, plan.down).permute(0, 3, 1, 2)

gen = torch.Generator().manual_seed(0)
out = {}
for tag, layers in (("t", ((0, None), (4, 0.5), (13, None))), ("r", ((0, 0.5), (4, None), (12, 0.5)))):
    G = generator(tag)
    stylegan3_triton.CHUNK_BYTES = 1 if tag == "r" else 2**31  # R's cases one image per launch
    for index, clamp in layers:
        plan = plan_for(G, index, clamp)
        x = torch.randn(2, 3, plan.n, plan.n, generator=gen).contiguous(memory_format=torch.channels_last)
        dcoef, bias = torch.rand(2, 3, generator=gen) + 0.5, 0.3 * torch.randn(3, generator=gen)
        up, down = torch.from_numpy(plan.g_array).float(), torch.from_numpy(plan.kd_array).float()
        got = filtered_lrelu(x, dcoef, bias, up, down, plan.pad_l, plan.t, plan.down, plan.n_out,
                             -1.0 if clamp is None else clamp)
        want = stencils(plan, x, dcoef, bias)
        unclamped = stencils(plan_for(G, index, None), x, dcoef, bias)
        out[f"{tag} L{index} clamp {clamp}"] = {
            "up": plan.up, "radial": plan.radial, "crop": plan.pad_l < 0,
            "err": (got - want).abs().max().item(), "scale": want.abs().max().item(),
            "shape_ok": tuple(got.shape) == tuple(want.shape), "clamp_effect": (want - unclamped).abs().max().item(),
            "channels_last": got.is_contiguous(memory_format=torch.channels_last)}
# The fused kernel (stylegan3_fused.py) on the same layers, at a side with several tiles per axis
# (30 outputs: three tiles of 11 or 10), in float32 and in float16 (hi + lo taps), and R's radial
# filter as a sum of separable ones.
for tag, layers in (("t", ((0, None), (4, 0.5), (13, None))), ("r", ((0, 0.5), (4, None), (12, 0.5)))):
    G = generator(tag)
    for index, clamp in layers:
        plan = plan_for(G, index, clamp, min_out=30)
        want = {}
        for dtype in (torch.float32, torch.float16):
            fp = fused_plan(plan.g_array, plan.kd_array, plan.down, 16)
            x = torch.randn(2, 16, plan.n, plan.n, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
            dcoef, bias = torch.rand(2, 16, generator=gen) + 0.5, 0.3 * torch.randn(16, generator=gen)
            got = fused(x, dcoef, bias, *fp.matrices(dtype), fp.up, fp.down, plan.pad_l, plan.n_out, fp.step, fp.step_h, fp.CB,
                        -1.0 if clamp is None else clamp).float()
            want = stencils(plan, x.float(), dcoef, bias)
            if dtype == torch.float32:  # the next layer's style scaling fused into the output
                oscale = torch.rand(2, 16, generator=gen) + 0.5
                scaled = fused(x, dcoef, bias, *fp.matrices(dtype), fp.up, fp.down, plan.pad_l, plan.n_out, fp.step,
                               fp.step_h, fp.CB, -1.0 if clamp is None else clamp, oscale)
                out[f"fused {tag} L{index} clamp {clamp} float32 out_scale"] = {
                    "up": plan.up, "radial": plan.radial, "crop": plan.pad_l < 0, "rank": fp.rank,
                    "tiles": -(-plan.n_out // fp.step), "tiles_h": -(-plan.n_out // fp.step_h),
                    "err": (scaled - want * oscale[:, :, None, None]).abs().max().item(),
                    "scale": (want * oscale[:, :, None, None]).abs().max().item(), "rel_rms": 0.0,
                    "shape_ok": tuple(scaled.shape) == tuple(want.shape),
                    "channels_last": scaled.is_contiguous(memory_format=torch.channels_last)}
            out[f"fused {tag} L{index} clamp {clamp} {str(dtype)[6:]}"] = {
                "up": plan.up, "radial": plan.radial, "crop": plan.pad_l < 0, "rank": fp.rank, "tiles": -(-plan.n_out // fp.step),
                "tiles_h": -(-plan.n_out // fp.step_h),
                "err": (got - want).abs().max().item(), "scale": want.abs().max().item(),
                "rel_rms": ((got - want).square().mean() / want.square().mean()).sqrt().item(),
                "shape_ok": tuple(got.shape) == tuple(want.shape), "channels_last": got.is_contiguous(memory_format=torch.channels_last)}
# The whole fast module on the T fixture, every layer in float16 (mixed=False) so that every
# layer runs the fused kernel, each with the next layer's style scaling in its output.
from stylegan3_fixtures import cases
from pipeline_lib.generator.fast import psnr
from pipeline_lib.generator.stylegan3_fast import StyleGAN3FastSynthesis
G = generator("t")
with torch.no_grad():
    S, S_rest = G.styles(G.mapping(cases("t")["z"][:1]))
    fast = StyleGAN3FastSynthesis(G, torch.float16, mixed=False, fir="triton")
    out["module"] = {"psnr": psnr(fast(S, S_rest), G.synthesize(S, S_rest)),
                     "fused_layers": sum(p.fused is not None for p in fast.plans)}
print("RESULT " + json.dumps(out))
"""


def test_triton_filtered_lrelu_equals_the_stencils_on_the_fixture_layers():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT / "tests", env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    cases = json.loads(line.removeprefix("RESULT "))
    module = cases.pop("module")
    assert module["fused_layers"] == 14 and module["psnr"] > 65, module  # fp16 everywhere: 71.1 dB measured
    fused = {k: cases.pop(k) for k in list(cases) if k.startswith("fused ")}
    assert len(cases) == 6 and len(fused) == 18
    kinds = {(c["up"], c["radial"], c["crop"]) for c in cases.values()}
    assert {(2, False, False), (4, False, True), (2, True, False), (4, True, True)} <= kinds, kinds
    for key, c in cases.items():
        assert c["shape_ok"] and c["channels_last"], (key, c)
        assert c["err"] <= 2e-6 * max(1.0, c["scale"]), (key, c)
    assert all(c["clamp_effect"] > 1e-2 for k, c in cases.items() if k.endswith("clamp 0.5"))  # the clamp bit
    for key, c in fused.items():
        assert c["shape_ok"] and c["channels_last"] and c["tiles"] >= 3 and c["tiles_h"] >= 2, (key, c)
        if "float32" in key:
            assert c["err"] <= 2e-6 * max(1.0, c["scale"]), (key, c)
        else:  # half operands, float32 accumulation, hi + lo taps: a few half roundings (2^-11)
            assert c["rel_rms"] <= 1e-3, (key, c)
    assert {c["rank"] for k, c in fused.items() if c["radial"]} == {3}  # the radial filter: three separable terms
    assert {c["rank"] for k, c in fused.items() if not c["radial"]} == {1}
