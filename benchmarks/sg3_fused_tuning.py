"""Per-layer timing of StyleGAN3's filtered leaky ReLU on the GPU: the fused kernel
(`stylegan3_fused.py`) at several tile sizes, channels per program and warps, beside the
four-pass kernels (`stylegan3_triton.py`) measured in the same run, on random inputs of the
released generators' layer shapes (random weights; only the shapes and filters matter).

    PYTHONPATH=. python benchmarks/sg3_fused_tuning.py --configs t256,r256 --batch 64

Prints, per layer, milliseconds per call of each setting and the sum over the layers; the
default setting is what `fused_plan` picks."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import torch

from benchmarks.stylegan3_benchmark import CONFIGS, FIXTURES, official_kwargs, random_generator
from benchmarks.synthesis_precision import timed
from pipeline_lib.generator import stylegan3_fused
from pipeline_lib.generator.stylegan3 import StyleGAN3Config
from pipeline_lib.generator.stylegan3_fast import StyleGAN3FastSynthesis
from pipeline_lib.generator.stylegan3_triton import filtered_lrelu_op as passes_op


def cuda_ms(fn, reps: int = 20) -> float:
    """Milliseconds per call after one warm-up call (synthesis_precision.timed: CUDA events)."""
    fn()
    return 1e3 * timed(fn, reps, torch.device("cuda"))


def settings(plan) -> dict:
    """name -> (FusedPlan, warps, register cap): the default, and variations of the channels per
    program, warps, the tile's up-sampled rows and the rows per chunk, and register caps. (Tiles
    of 64 columns spilled registers with the hi + lo taps: up to 5x slower, `results_2026-12-03/fused/r3/`.)"""
    g, kd = plan.g_array, plan.kd_array
    plan_of = functools.partial(stylegan3_fused.fused_plan, g, kd, plan.down, plan.c_out_p)
    warps, cap = stylegan3_fused.NUM_WARPS, stylegan3_fused.MAX_REGISTERS
    out = {"default": (plan_of(), warps, cap)}
    for cb in (8, 16):
        for w in (4, 8):
            out[f"CB{cb} w{w}"] = (plan_of(channels_per_program=cb), w, cap)
    out["rows 32 chunk 32 (one chunk)"] = (plan_of(rows=32, chunk=32), warps, cap)
    out["rows 128 chunk 16"] = (plan_of(rows=128), warps, cap)
    out["TA64 CB8 (64 columns, chunked rows)"] = (plan_of(tile=64, channels_per_program=8), warps, cap)
    for regs in (128, 168):
        out[f"max {regs} registers"] = (plan_of(), warps, regs)
    out["CB8 max 128 registers"] = (plan_of(channels_per_program=8), warps, 128)
    return out


def compiled_info() -> str:
    """Registers, spills and shared memory of the fused kernel launched last."""
    k = stylegan3_fused.last_compiled
    try:
        return f"{k.n_regs} regs, {k.n_spills} spills, {k.metadata.shared} B shared"
    except AttributeError:  # the interpreter, or a Triton without these fields
        return "(no compile info)"


def run(name: str, batch: int, device, fixtures: Path) -> dict:
    cfg = StyleGAN3Config.from_official_kwargs(official_kwargs(name, fixtures))
    G = random_generator(cfg, 0, device)
    fast = StyleGAN3FastSynthesis(G, torch.float16, True, channels_last=True, fir="triton").to(device)
    totals: dict[str, float] = {}
    defaults = stylegan3_fused.NUM_WARPS, stylegan3_fused.MAX_REGISTERS
    for i, plan in enumerate(fast.plans):
        if plan.torgb or plan.fused is None:  # float32 layers run the four passes
            continue
        n = plan.t + plan.j - 1 - plan.pad_l - plan.pad_r
        C = plan.c_out_p
        y = torch.randn(batch, C, n, n, device=device).to(plan.dtype).contiguous(memory_format=torch.channels_last)
        dcoef, bias = torch.rand(batch, C, device=device) + 0.5, torch.randn(C, device=device) * 0.1
        clamp = -1.0 if plan.clamp is None else float(plan.clamp)
        up_t, down_t = getattr(fast, f"up_taps{i}"), getattr(fast, f"down_taps{i}")
        times = {
            "4 passes": cuda_ms(
                lambda: passes_op(y, dcoef, bias, up_t, down_t, plan.pad_l, plan.t, plan.down, plan.n_out, clamp)
            )
        }
        want = passes_op(y, dcoef, bias, up_t, down_t, plan.pad_l, plan.t, plan.down, plan.n_out, clamp).float()
        exact = passes_op(y.float(), dcoef, bias, up_t, down_t, plan.pad_l, plan.t, plan.down, plan.n_out, clamp)
        rms = exact.square().mean().sqrt().item()
        rel_rms = {"4 passes": (want - exact).square().mean().sqrt().item() / rms}
        errs = {}
        info = {}
        for sname, (fp, warps, cap) in settings(plan).items():
            mats = [m.to(device) for m in fp.matrices(plan.dtype)]
            stylegan3_fused.NUM_WARPS, stylegan3_fused.MAX_REGISTERS = warps, cap

            def call():
                args = (fp.up, fp.down, plan.pad_l, plan.n_out, fp.step, fp.step_h, fp.CB, clamp)
                return stylegan3_fused.filtered_lrelu(y, dcoef, bias, *mats, *args)

            try:
                times[sname] = cuda_ms(call)
                info[sname] = compiled_info()
                got = call().float()
                errs[sname] = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-6)
                rel_rms[sname] = (got - exact).square().mean().sqrt().item() / rms
            except Exception as exc:  # a setting that does not compile (registers, shared memory)
                times[sname] = float("nan")
                errs[sname] = f"{type(exc).__name__}: {str(exc)[:80]}"
        stylegan3_fused.NUM_WARPS, stylegan3_fused.MAX_REGISTERS = defaults
        for k, v in times.items():
            totals[k] = totals.get(k, 0.0) + v
        best = min((k for k in times if k != "4 passes" and times[k] == times[k]), key=times.get)
        print(
            f"{name} L{i} n {n}->{plan.n_out} C {C} up {plan.up} {str(plan.dtype)[6:]}: 4 passes "
            f"{times['4 passes']:.2f} ms, default {times['default']:.2f} ms (rel err {errs['default']}), "
            f"best {best} {times[best]:.2f} ms; rms error vs float32 of the same input: 4 passes "
            f"{rel_rms['4 passes']:.1e}, fused {rel_rms.get('default', float('nan')):.1e}; compiled: default "
            f"{info.get('default')}, best {info.get(best)}\n    " + ", ".join(f"{k} {v:.2f}" for k, v in times.items()),
            flush=True,
        )
    print(f"== {name} batch {batch}, sum over layers (ms):")
    for k, v in sorted(totals.items(), key=lambda kv: kv[1]):
        print(f"   {k:>20}: {v:8.2f}")
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="t256,r256")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--fixtures", type=Path, default=FIXTURES)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device("cuda")
    result = {name: run(name, args.batch, device, args.fixtures) for name in args.configs.split(",") if name in CONFIGS}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
