"""Training-step throughput of M_ref on a GPU, against our straightforward float32 eager step
measured in the same run, with a breakdown of where the time goes.

    python benchmarks/training_benchmark.py [--batches 6 64 128] [--steps 30]

Random weights of the real shapes: the paper256 generator (dim S = 4928), IR-SE50 ArcFace and
3DDFA_V2 MobileNet-1.0. Speed does not depend on the weights' values. The data are random
stand-ins held on the GPU (the real job reads them from the annotations; see training.py).

Variants:
- baseline: the straightforward step: float32, eager, the official up-sampling (transposed conv
  + FIR), and every encoder run on the input faces every step (E_id on I_id, E_attr and the
  landmark detector on I_attr) as well as on I_out.
- fast fp32: our step in float32: inputs' encoder outputs from the annotations, polyphase synthesis.
- fast bf16: the same with bf16 generator/encoders (losses and M_ref float32).
- fast bf16 + compile: the same, `torch.compile`d (the product's default on GPUs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.devices import resolve_device  # noqa: E402
from pipeline_lib.encoders import build_encoder  # noqa: E402
from pipeline_lib.encoders.random_weights import random_weights_file  # noqa: E402
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator  # noqa: E402
from pipeline_lib.images import from_uint8_hwc  # noqa: E402
from pipeline_lib.mref import mapper_input  # noqa: E402
from pipeline_lib.settings import TrainingSettings  # noqa: E402
from pipeline_lib.training.losses import (  # noqa: E402
    euler_loss,
    identity_loss,
    landmark_loss,
    reconstruction_loss,
    style_negative_log_likelihood,
    total_loss,
)
from pipeline_lib.training.step import LOSS_TERMS, Trainer, loss_terms, loss_weights  # noqa: E402
from pipeline_lib.weights.registry import REGISTRY  # noqa: E402

PAPER256 = GeneratorConfig()  # the defaults are the paper256 shape
N_FACES = 2048


class StandInData:
    """Random tensors in the shapes of TrainingData (faces, annotations, statistics)."""

    def __init__(self, G, device, g: torch.Generator):
        self.w = G.mapping(torch.randn(N_FACES, 512, generator=g).to(device))[:, 0].contiguous()
        S = G.styles_from_w(self.w)[0]
        self.style_mean, self.style_std = S.mean(0), S.std(0)
        self.identity = torch.nn.functional.normalize(torch.randn(N_FACES, 512, generator=g), dim=1).to(device)
        self.attribute = torch.rand(N_FACES, 2048, generator=g).to(device)
        self.landmarks = (torch.rand(N_FACES, 68, 3, generator=g) * 100 + 78).to(device)
        self.pose = (torch.randn(N_FACES, 3, generator=g) * 10).to(device)
        self.images = torch.randint(0, 256, (N_FACES, 256, 256, 3), dtype=torch.uint8, generator=g).to(device)
        self.identity_split = torch.arange(0, N_FACES * 3 // 4)
        self.attribute_split = torch.arange(N_FACES * 3 // 4, N_FACES)
        self.noise_mode = "const"


def settings(batch: int, precision: str, compile_: bool):
    cfg = {
        "gpus": 1,
        "batch_size": batch,
        "num_steps": 200_000,
        "lr": 5e-6,
        "lr_end": 1e-7,
        "betas": [0.9, 0.999],
        "cross_frequency": 3,
        "seed": 0,
        "lambda_id": 1.0,
        "lambda_attr": 0.01,
        "lambda_rec": 0.02,
        "alpha": 0.84,
        "hidden": [2048, 2048, 2048],
        "precision": precision,
        "compile": compile_,
        "checkpoint_every": 10**9,
        "log_every": 10**9,
        "sample_every": 10**9,
        "variants": {"euler": {"input_features": "attribute", "lambda_reg": 0.1, "euler_loss": True}},
    }
    return TrainingSettings.for_variant(cfg, "euler")


def batches(data, batch: int, n: int, device):
    """Step-indexed batches as the product draws them (cross every 3rd step)."""
    g = torch.Generator().manual_seed(1)
    out = []
    for step in range(n):
        ids = data.identity_split[torch.randint(len(data.identity_split), (batch,), generator=g)]
        cross = step % 3 == 0
        attrs = data.attribute_split[torch.randint(len(data.attribute_split), (batch,), generator=g)] if cross else ids
        out.append((ids.to(device), attrs.to(device), cross))
    return out


def fast_runner(G, id_enc, lnd_enc, data, s, device, mode=None):
    trainer = Trainer(G, id_enc, lnd_enc, data, s, device, compile_mode=mode)

    def run(ids, attrs, cross):
        image = None if cross else data.images[attrs]
        trainer.train_step(ids, attrs, cross, image)
        trainer._pending.clear()

    return run, trainer


def baseline_runner(G, id_enc, lnd_enc, attr_enc, data, s, device):
    """Our straightforward step: float32, eager, official up-sampling, encoders on the inputs."""
    from pipeline_lib.mref import ReferenceMapper

    G.set_up_impl("transpose")
    model = ReferenceMapper(2048, G.style_dim, s.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, betas=s.betas)

    def run(ids, attrs, cross):
        with torch.no_grad():
            img_id = from_uint8_hwc(data.images[ids])
            img_attr = from_uint8_hwc(data.images[attrs])
            e_id = id_enc.embed(img_id)
            f_attr = attr_enc.embed(img_attr)
            lnd_attr, pose_attr = lnd_enc.landmarks_and_pose(img_attr)
            S_id, S_rgb = G.styles_from_w(data.w[ids])
        S_out = S_id + model(mapper_input(e_id, f_attr, "attribute"))
        img = G.synthesize(S_out, S_rgb).clamp(-1, 1)
        lnd, pose = lnd_enc.landmarks_and_pose(img)
        terms = {
            "identity": identity_loss(e_id, id_enc.embed(img)),
            "landmark": landmark_loss(lnd_attr, lnd),
            "euler": euler_loss(pose_attr, pose),
            "style_nll": style_negative_log_likelihood(S_out, data.style_mean, data.style_std),
        }
        if not cross:
            terms["reconstruction"] = reconstruction_loss(img_attr, img)
        loss = total_loss(terms, loss_weights(s), not cross)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def restore():
        G.set_up_impl("polyphase")

    return run, restore


def time_steps(run, plan, warmup: int) -> float:
    for ids, attrs, cross in plan[:warmup]:
        run(ids, attrs, cross)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for ids, attrs, cross in plan[warmup:]:
        run(ids, attrs, cross)
    torch.cuda.synchronize()
    return (len(plan) - warmup) / (time.perf_counter() - t0)


def breakdown(trainer, data, batch: int, reps: int = 10) -> dict:
    """Milliseconds of forward+backward of each frozen part on a batch, alone."""
    edit, device = trainer.edit, trainer.device
    ids = data.identity_split[:batch].to(device)
    S_id, S_rgb = edit.styles(data.w[ids])
    bf16 = edit.dtype == torch.bfloat16
    img0 = edit.synthesis(S_id, S_rgb).clamp(-1, 1).detach()

    def gen():
        S = S_id.clone().requires_grad_(True)
        edit.synthesis(S, S_rgb).float().sum().backward()

    def ident():
        x = img0.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            e = edit.identity_encoder.embed(x)
        e.float().sum().backward()

    def lnd():
        x = img0.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            a, b = edit.landmark_encoder.landmarks_and_pose(x)
        (a.float().sum() + b.float().sum()).backward()

    def rec():
        x = img0.clone().requires_grad_(True)
        reconstruction_loss(img0, x).backward()

    out = {}
    for name, fn in [("generator", gen), ("identity encoder", ident), ("landmark encoder", lnd), ("MS-SSIM+L1", rec)]:
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
        out[name] = (time.perf_counter() - t0) / reps * 1000
    return out


def loss_agreement(G, id_enc, lnd_enc, data, device, batch: int = 32, n: int = 8) -> dict:
    """Loss terms of bf16 vs float32 on the same batches with the same (non-zero) edit, against
    the batch-to-batch spread of the terms (the noise SGD sees anyway)."""
    results = {}
    for precision in ("float32", "bfloat16"):
        trainer = Trainer(G, id_enc, lnd_enc, data, settings(batch, precision, False), device)
        torch.manual_seed(0)
        torch.nn.init.normal_(trainer.model.head.weight, std=1e-3)
        rows = []
        for ids, attrs, cross in batches(data, batch, n, device):
            ids = ids.to(device)
            with torch.no_grad():
                S_id, S_rgb, dS = trainer.edit_styles(ids, attrs.to(device))
                img, emb, lnd, pose = trainer.edit(S_id + dS, S_rgb, "const")
                t = loss_terms(
                    img, emb, lnd, pose, S_id + dS, trainer.targets(ids, ids, data.images[ids]), data, 0.84, True
                )
            rows.append(torch.stack([t[k] for k in LOSS_TERMS[1:]]).double().cpu())
        results[precision] = torch.stack(rows)
    diff = (results["bfloat16"] - results["float32"]).abs().mean(0)
    spread = results["float32"].std(0)
    return {k: (float(d), float(sp)) for k, d, sp in zip(LOSS_TERMS[1:], diff, spread)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[6, 64, 128])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=6)
    ap.add_argument("--paper-steps", type=int, default=200_000)
    ap.add_argument("--only-fastest", action="store_true", help="measure only the baseline and the default path")
    args = ap.parse_args()
    device = resolve_device("cuda")
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    g = torch.Generator().manual_seed(0)
    G = init_random_generator(PAPER256, seed=0, w_avg_samples=1000).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        names = ["arcface_ir_se50", "tddfa_mb1", "tddfa_param_mean_std", "bfm_68_landmarks", "inception_v3_imagenet"]
        files = {}
        for name in names:
            files[name] = str(Path(tmp) / REGISTRY[name].filename)
            random_weights_file(name, files[name], seed=0)
        id_enc = build_encoder("arcface_ir_se50", files, device)
        lnd_enc = build_encoder("3ddfa_mb1", files, device)
        attr_enc = build_encoder("inception_v3", files, device)
    data = StandInData(G, device, g)

    print("\nloss terms, bf16 vs float32 (same batches, same edit): mean |difference| vs batch-to-batch std")
    for k, (d, sp) in loss_agreement(G, id_enc, lnd_enc, data, device).items():
        print(f"  {k:15s} |bf16 - fp32| {d:.3e}   spread {sp:.3e}   ratio {d / sp if sp else float('nan'):.3f}")

    print(
        f"\n| batch | path | steps/s | faces/s | x baseline | paper schedule ({args.paper_steps:,} steps) at batch 6 |"
    )
    print("|---|---|---|---|---|---|")
    for batch in args.batches:
        plan = batches(data, batch, args.steps + args.warmup, device)
        rates = {}
        try:
            run, restore = baseline_runner(
                G, id_enc, lnd_enc, attr_enc, data, settings(batch, "float32", False), device
            )
            rates["baseline: fp32 eager, encoders on inputs"] = time_steps(run, plan, args.warmup)
            restore()
            for label, precision, comp, mode in [
                ("fast fp32 eager", "float32", False, None),
                ("fast bf16 eager", "bfloat16", False, None),
                ("fast bf16 + compile", "bfloat16", True, None),
                ("fast bf16 + compile (CUDA graphs)", "bfloat16", True, "reduce-overhead"),
            ]:
                if args.only_fastest and mode is None:
                    continue
                run, trainer = fast_runner(G, id_enc, lnd_enc, data, settings(batch, precision, comp), device, mode)
                rates[label] = time_steps(run, plan, args.warmup + (10 if comp else 0))
                last_trainer = trainer
        except torch.OutOfMemoryError:
            print(f"| {batch} | out of memory | | | | |")
            torch.cuda.empty_cache()
            continue
        base = rates["baseline: fp32 eager, encoders on inputs"]
        for label, r in rates.items():
            hours = args.paper_steps / r / 3600 if batch == 6 else float("nan")
            print(f"| {batch} | {label} | {r:.2f} | {r * batch:.0f} | {r / base:.2f} | {hours:.1f} h |")
        parts = breakdown(last_trainer, data, batch)
        print(
            "|   | time per step, fwd+bwd alone (bf16): "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in parts.items())
            + " | | | | |"
        )
        print(f"|   | peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB | | | | |")
        torch.cuda.reset_peak_memory_stats(device)


if __name__ == "__main__":
    main()
