"""Annotation encoders on a GPU: the float32 reference beside the fast mode (issue 16).

    PYTHONPATH=. python benchmarks/annotation_benchmark.py --out $OUT/annotation.json \
        [--tddfa-dir .device/assets/3ddfa_v2] [--faces-dir .device/assets/faces256] [--compile]
    PYTHONPATH=. python benchmarks/annotation_benchmark.py --smoke --out /tmp/a.json   # CPU, tiny

Per encoder: float32 faces/s (eager, TF32 off), the fast mode's faces/s (config.yaml
`annotation.precision`, channels-last; with --compile also compiled), the ratio, and on the
same images the fast-vs-float32 max landmark error (px, x/y/z), pose error (degrees) or the
embeddings' smallest cosine similarity. Then the whole stage (`annotate_images`, reader thread
and all) over --faces random faces in an HDF5 file, float32 at batch 64 (the old setting)
beside the fast mode at --batch.

Weights are the random stand-ins, except 3DDFA_V2's from --tddfa-dir when given. Random FAN
weights make heatmaps without peaks, whose arg-max reduced precision can flip: FAN's landmark
error on them says nothing, so FAN also gets a planted-peak estimate: the fast-vs-float32
heatmap difference of the real network, relative to each map's peak, added to ideal Gaussian
heatmaps, decoded, in image pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from bench_summary import Target, summary_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.dataset.annotation import annotate_images  # noqa: E402
from pipeline_lib.devices import resolve_device  # noqa: E402
from pipeline_lib.encoders import BACKENDS, build_encoder  # noqa: E402
from pipeline_lib.encoders.fan import aligned_face_box, crop_geometry, soft_argmax  # noqa: E402
from pipeline_lib.encoders.inference import EncoderRunner  # noqa: E402
from pipeline_lib.encoders.random_weights import random_weights_file  # noqa: E402
from pipeline_lib.images import from_uint8_hwc  # noqa: E402
from pipeline_lib.settings import AnnotationSettings, EncoderSettings, load_config  # noqa: E402
from pipeline_lib.weights.registry import REGISTRY  # noqa: E402

TDDFA_FILES = {
    "tddfa_mb1": "mb1_120x120.pth",
    "tddfa_mb05": "mb05_120x120.pth",
    "tddfa_param_mean_std": "param_mean_std_62d_120x120.pkl",
    "bfm_68_landmarks": "bfm_68_landmarks.npz",
}


def weight_files(folder: Path, tddfa_dir: str | None) -> tuple[dict, list]:
    files, real = {}, []
    for name in sorted({n for needed in BACKENDS.values() for n in needed}):
        given = Path(tddfa_dir) / TDDFA_FILES[name] if tddfa_dir and name in TDDFA_FILES else None
        if given is not None and given.is_file():
            files[name] = str(given)
            real.append(name)
        else:
            files[name] = str(folder / REGISTRY[name].filename)
            random_weights_file(name, files[name], seed=1)
    return files, real


def fidelity_faces(n: int, faces_dir: str | None) -> tuple[torch.Tensor, str]:
    """uint8 NHWC: real aligned faces (repeated to n) when a folder is given, else noise."""
    if faces_dir and sorted(Path(faces_dir).glob("*.png")):
        from PIL import Image

        paths = sorted(Path(faces_dir).glob("*.png"))
        arrays = [np.asarray(Image.open(p).convert("RGB").resize((256, 256))) for p in paths]
        return torch.from_numpy(np.stack([arrays[i % len(arrays)] for i in range(n)])), f"{len(paths)} real faces"
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 256, 256, 3), dtype=torch.uint8, generator=gen), "random noise"


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def faces_per_second(run, x, iters: int, device) -> float:
    run(x)  # warm-up (cuDNN algorithm choice; compilation is timed separately)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        run(x)
    sync(device)
    return iters * x.shape[0] / (time.perf_counter() - t0)


def compare(fast: dict, ref: dict) -> dict:
    if "embedding" in ref:
        a, b = ref["embedding"], fast["embedding"]
        cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
        return {"min_cosine": cos.min().item(), "rel_l2": ((a - b).norm() / a.norm()).item()}
    d = (fast["landmarks"] - ref["landmarks"]).abs()
    return {
        "landmark_px": d.max().item(),
        "landmark_xy_px": d[..., :2].max().item(),
        "pose_deg": (fast["pose"] - ref["pose"]).abs().max().item(),
    }


def planted_fan_error(ref: EncoderRunner, fast: EncoderRunner, x: torch.Tensor) -> dict:
    """FAN's landmark error were its heatmaps peaked: the real network's fast-vs-float32
    heatmap difference (per map, relative to its peak) on ideal Gaussians (std 1.75 px, peak 1)."""
    with torch.no_grad():
        exact = ref.encoder.heatmaps(x)[1].float()
        with torch.autocast(x.device.type, dtype=fast.dtype, enabled=fast.dtype != torch.float32):
            rounded = fast.encoder.heatmaps(x)[1].float()
        noise = (rounded - exact) / exact.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        gen = torch.Generator().manual_seed(0)
        centres = (12 + 40 * torch.rand(*exact.shape[:2], 2, generator=gen)).to(x.device)
        grid = torch.arange(64, device=x.device, dtype=torch.float32)
        dx = grid[None, None, None, :] - centres[..., 0, None, None]
        dy = grid[None, None, :, None] - centres[..., 1, None, None]
        ideal = torch.exp(-(dx**2 + dy**2) / (2 * 1.75**2))
        moved = (soft_argmax(ideal + noise) - soft_argmax(ideal)).norm(dim=-1)
    image_px_per_heatmap_px = crop_geometry(aligned_face_box(256, 256))[2] / 64
    return {
        "planted_landmark_px": moved.max().item() * image_px_per_heatmap_px,
        "heatmap_rel_error": ((rounded - exact).norm() / exact.norm()).item(),
    }


def make_faces_file(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, 256, 256, 3), dtype="u1", chunks=(1, 256, 256, 3))
        for a in range(0, n, 512):  # as the dataset stores them: one chunk per face
            images[a : a + 512] = rng.integers(0, 256, (min(512, n - a), 256, 256, 3), dtype=np.uint8)


def run_stage(faces: Path, out: Path, runners: dict, batch: int, device) -> float:
    jobs = [(r, {"landmarks": f"landmarks/{k}", "pose": f"pose/{k}"}) for k, r in runners["landmarks"].items()]
    jobs += [(runners["identity"], {"embedding": "identity"}), (runners["attribute"], {"embedding": "attribute"})]
    with h5py.File(faces, "r") as f, h5py.File(out, "w") as o:
        n = len(f["images"])
        for k in runners["landmarks"]:
            o.create_dataset(f"landmarks/{k}", (n, 68, 3), dtype="f4")
            o.create_dataset(f"pose/{k}", (n, 3), dtype="f4")
        o.create_dataset("identity", (n, runners["identity"].encoder.dim), dtype="f4")
        o.create_dataset("attribute", (n, runners["attribute"].encoder.dim), dtype="f4")
        sync(device)
        t0 = time.perf_counter()
        annotate_images(f["images"], o, jobs, batch, device, progress=False)
        sync(device)
        return n / (time.perf_counter() - t0)


def stage_errors(a: Path, b: Path) -> dict:
    errors = {}
    with h5py.File(a, "r") as ref, h5py.File(b, "r") as fast:
        for k in ref["landmarks"]:
            errors[k] = compare(
                {n: torch.from_numpy(fast[f"{n}/{k}"][:]) for n in ("landmarks", "pose")},
                {n: torch.from_numpy(ref[f"{n}/{k}"][:]) for n in ("landmarks", "pose")},
            )
        for k in ("identity", "attribute"):
            errors[k] = compare({"embedding": torch.from_numpy(fast[k][:])}, {"embedding": torch.from_numpy(ref[k][:])})
    return errors


def fmt(errors: dict) -> str:
    if "min_cosine" in errors:
        return f"min cos {errors['min_cosine']:.6f}, rel {errors['rel_l2']:.1e}"
    text = f"{errors['landmark_px']:.3f} px (xy {errors['landmark_xy_px']:.3f}), {errors['pose_deg']:.4f} deg"
    if "planted_landmark_px" in errors:
        text += f"; planted peaks {errors['planted_landmark_px']:.3f} px, heatmap rel {errors['heatmap_rel_error']:.1e}"
    return text


def summary_rows(results: dict, baseline_batch: int) -> list:
    """The whole stage beside float32 at the old batch, against issue 16's 2,000 faces/s, and 3DDFA
    mb05's fast-vs-float32 error when its real weights were given (benchmarks/all_stages.py)."""
    stage, batch = results["stage"], results["batch"]
    label = f"Annotation stage ({', '.join(stage['kinds'])})"
    note = f"baseline float32 at batch {baseline_batch}"
    target = Target(">=", 2000, "faces/s")
    rows = [
        summary_row(f"{label}, batch {batch} fast", stage["fast_fps"], stage["float32_fps"], "faces/s", target, note)
    ]
    if "compiled_fps" in stage:
        rows.append(
            summary_row(f"{label}, compiled", stage["compiled_fps"], stage["float32_fps"], "faces/s", target, note)
        )
    mb05 = results["encoders"].get("3ddfa_mb05", {})
    if "tddfa_mb05" in results["real_weights"] and "landmark_px" in mb05:
        where = f"{mb05['precision']}, real weights, {results['fidelity_images']}, batch {batch}"
        rows.append(summary_row("3DDFA mb05 fast vs float32, landmarks", mb05["landmark_px"], None, "px",
                                Target("<=", 0.1, "px"), where))  # fmt: skip
        rows.append(summary_row("3DDFA mb05 fast vs float32, pose", mb05["pose_deg"], None, "deg",
                                Target("<=", 0.05, "deg"), where))  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON of every figure")
    ap.add_argument("--batch", type=int, help="fast-mode batch (default: config.yaml annotation.batch_size)")
    ap.add_argument("--baseline-batch", type=int, default=64, help="float32 batch (the measured 'before')")
    ap.add_argument("--faces", type=int, default=4096, help="faces of the whole-stage run")
    ap.add_argument("--iters", type=int, default=3, help="timed batches per encoder and mode")
    ap.add_argument("--tddfa-dir", help="folder with 3DDFA_V2's real files (mb05_120x120.pth, ...)")
    ap.add_argument("--faces-dir", help="folder of aligned 256x256 PNG faces for the fidelity images")
    ap.add_argument("--compile", action="store_true", help="also time the compiled fast mode (minutes of compiling)")
    ap.add_argument("--time-budget", type=float, default=230.0, help="seconds; optional parts are skipped past it")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: proves the script runs")
    args = ap.parse_args()
    t_start = time.perf_counter()
    left = lambda: args.time_budget - (time.perf_counter() - t_start)  # noqa: E731
    if args.smoke:
        args.device, args.faces, args.iters, args.baseline_batch, args.batch = "cpu", 6, 1, 4, 4
    device = resolve_device(args.device)
    config = load_config()
    settings = AnnotationSettings.parse(config["annotation"])
    settings.validate()
    batch = args.batch or settings.batch_size
    precision = dict(settings.precision)
    if device.type == "cpu":  # CPUs' float16 convolutions take a slow path: bf16 proves the plumbing
        precision = {k: "bfloat16" if v == "float16" else v for k, v in precision.items()}
    defaults = EncoderSettings.parse(config["encoders"])
    stage_kinds = list(dict.fromkeys([defaults.landmarks_train, defaults.landmarks_eval]))
    print(
        f"device {device}, batch {batch} (float32 baseline {args.baseline_batch}), {args.faces} stage faces", flush=True
    )

    folder = Path(tempfile.mkdtemp())
    files, real = weight_files(folder, args.tddfa_dir)
    print(f"real weights: {real or 'none'}; the rest random stand-ins", flush=True)
    faces_u8, source = fidelity_faces(batch, args.faces_dir)
    x = from_uint8_hwc(faces_u8.to(device))
    print(f"fidelity images: {source}", flush=True)

    results = {"device": str(device), "batch": batch, "real_weights": real, "fidelity_images": source, "encoders": {}}
    runners = {}
    for kind in BACKENDS:
        ref = EncoderRunner(build_encoder(kind, files, device))
        fast = EncoderRunner(ref.encoder, precision[kind], fast=True)
        row = {"precision": fast.precision}
        row["float32_fps"] = faces_per_second(ref, x[: args.baseline_batch], args.iters, device)
        row["fast_fps"] = faces_per_second(fast, x, args.iters, device)
        row.update(compare(fast(x), ref(x)))
        if kind == "fan":
            row.update(planted_fan_error(ref, fast, x[:16]))
        print(
            f"{kind:16s} {fast.precision:9s} float32 {row['float32_fps']:8.0f} faces/s | fast {row['fast_fps']:8.0f} "
            f"faces/s | x{row['fast_fps'] / row['float32_fps']:5.1f} | {fmt(row)}",
            flush=True,
        )
        runners[kind] = (ref, fast)
        results["encoders"][kind] = row

    if args.compile:
        for kind in BACKENDS:
            if left() < 60:
                print(f"{kind}: compiled mode skipped (time budget)", flush=True)
                continue
            ref, fast = runners[kind]
            compiled = EncoderRunner(ref.encoder, fast.precision, fast=True, compile=True)
            t0 = time.perf_counter()
            compiled(x)
            sync(device)
            seconds = time.perf_counter() - t0
            fps = faces_per_second(compiled, x, args.iters, device)
            row = results["encoders"][kind]
            row.update(compiled_fps=fps, compile_s=seconds, compiled_errors=compare(compiled(x), ref(x)))
            print(
                f"{kind:16s} compiled {fps:8.0f} faces/s (x{fps / row['float32_fps']:5.1f} float32, "
                f"x{fps / row['fast_fps']:4.2f} eager fast), compile {seconds:.0f} s | {fmt(row['compiled_errors'])}",
                flush=True,
            )
            runners[kind] = (ref, fast, compiled)

    # The whole stage with the default encoders, as annotate_faces runs it.
    faces = folder / "faces.h5"
    make_faces_file(faces, args.faces)

    def stage_runners(mode: int) -> dict:
        return {
            "landmarks": {k: runners[k][mode] for k in stage_kinds},
            "identity": runners[defaults.identity][mode],
            "attribute": runners[defaults.attribute][mode],
        }

    stage = {"kinds": stage_kinds + [defaults.identity, defaults.attribute]}
    stage["float32_fps"] = run_stage(faces, folder / "ref.h5", stage_runners(0), args.baseline_batch, device)
    print(f"stage float32 (batch {args.baseline_batch}): {stage['float32_fps']:.0f} faces/s", flush=True)
    stage["fast_fps"] = run_stage(faces, folder / "fast.h5", stage_runners(1), batch, device)
    stage["fast_errors"] = stage_errors(folder / "ref.h5", folder / "fast.h5")
    print(
        f"stage fast (batch {batch}): {stage['fast_fps']:.0f} faces/s, x{stage['fast_fps'] / stage['float32_fps']:.1f}"
    )
    compiled_all = all(len(runners[k]) == 3 for k in stage["kinds"])
    if compiled_all:
        stage["compiled_fps"] = run_stage(faces, folder / "compiled.h5", stage_runners(2), batch, device)
        stage["compiled_errors"] = stage_errors(folder / "ref.h5", folder / "compiled.h5")
        print(
            f"stage compiled: {stage['compiled_fps']:.0f} faces/s, x{stage['compiled_fps'] / stage['float32_fps']:.1f}"
        )
    for k, e in stage["fast_errors"].items():
        print(f"  stage fast vs float32, {k}: {fmt(e)}", flush=True)
    results["stage"] = stage

    print("\n| encoder | precision | float32 faces/s | fast faces/s | ratio | fast vs float32 (same images) |")
    print("|---|---|---|---|---|---|")
    for kind, row in results["encoders"].items():
        ratio = row["fast_fps"] / row["float32_fps"]
        print(
            f"| {kind} | {row['precision']} | {row['float32_fps']:.0f} | {row['fast_fps']:.0f} | {ratio:.1f} | {fmt(row)} |"
        )
    ratio = stage["fast_fps"] / stage["float32_fps"]
    print(
        f"| stage ({', '.join(stage['kinds'])}) | | {stage['float32_fps']:.0f} | {stage['fast_fps']:.0f} | {ratio:.1f} | |"
    )
    results["seconds"] = time.perf_counter() - t_start
    results["summary_rows"] = summary_rows(results, args.baseline_batch)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\n{results['seconds']:.0f} s; results in {args.out}", flush=True)


if __name__ == "__main__":
    main()
