"""Rules `latent_model`, `project_faces`, `latent_evaluation` and `sampling_comparison`: Wulff &
Torralba's Gaussianized latent space (issue 15), from config sections and paths to the science
modules of `pipeline_lib.latent`."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import torch

from pipeline_lib.atomic import write_json_atomic
from pipeline_lib.dataset.store import open_faces
from pipeline_lib.devices import resolve_device
from pipeline_lib.evaluation.fid import fid_kid, inception_features, read_real
from pipeline_lib.evaluation.metrics import compute_fid, mean_and_standard_error
from pipeline_lib.generator import load_generator
from pipeline_lib.images import to_uint8_hwc
from pipeline_lib.latent.compression import expected_fraction_touched, sample_ws
from pipeline_lib.latent.figures import interpolation_strips, reconstruction_figure, sampling_figure
from pipeline_lib.latent.gaussian import LatentGaussian, fit_latent_gaussian, gaussianity_figure, mapping_w_batches
from pipeline_lib.latent.image_losses import LpipsLoss, make_image_loss
from pipeline_lib.latent.projector import ProjectorConfig
from pipeline_lib.latent.sets import project_runs, read_face_folder, read_set, runs_for, write_set
from pipeline_lib.provenance import write_provenance
from pipeline_lib.settings import (
    DatasetSamplingSettings,
    LatentSettings,
    ProjectionSettings,
    SamplingComparisonSettings,
)

log = logging.getLogger(__name__)

STAND_IN = (
    "generated (the dataset's {split} split standing in for real faces: no ffhq.source or photo folder configured)"
)
FIGURE_SAMPLES = 20_000  # mapping samples drawn in the Fig. 1-like figure (a scatter of more is a blot)


def latent_model(generator, out_h5, out_figure, out_json, latent: dict, device: str) -> None:
    """gaussian.h5 (mean, covariance, eigenbasis of V), the Fig. 1-like figure and its numbers."""
    ls = LatentSettings.parse(latent)
    torch_device = resolve_device(device)
    G = load_generator(generator, device=torch_device)
    gaussian = fit_latent_gaussian(G, ls.num_samples, ls.seed, ls.batch, torch_device, progress=True)
    gaussian.save(out_h5)
    n_fig = min(ls.num_samples, FIGURE_SAMPLES)
    w = torch.cat(list(mapping_w_batches(G, n_fig, ls.seed, ls.batch, torch_device))).cpu().numpy()
    dims = tuple(range(min(4, G.w_dim)))
    gaussianity_figure(
        w, out_figure, dims=dims, pair=dims[:2], title=f"W (top) and V = lrelu_5(w) (bottom), {n_fig} samples"
    )
    eig = gaussian.eigvals
    record = {
        "num_samples": gaussian.num_samples,
        "seed": gaussian.seed,
        "w_dim": gaussian.dim,
        "summary": gaussian.gaussianity_summary(),
        "leading_eigenvalues": [float(x) for x in eig[:10]],
        "variance_share_top10": float(eig[:10].sum() / eig.sum()),
        "note": "v = leaky_relu(w, slope 5) of NVIDIA's w, which carries lrelu's sqrt(2) gain: a constant scale "
        "that cancels in Mahalanobis distances and normalised PCA coefficients (mean and covariance are fitted here).",
    }
    write_json_atomic(out_json, record)
    write_provenance(f"{out_h5}.provenance.json", {"latent": latent}, {"generator": generator})
    s = record["summary"]
    log.info(
        "fitted V on %d samples: mean |skew| W %.3f -> V %.3f, mean |excess kurtosis| W %.3f -> V %.3f",
        gaussian.num_samples, s["w"]["mean_abs_skew"], s["v"]["mean_abs_skew"],
        s["w"]["mean_abs_excess_kurtosis"], s["v"]["mean_abs_excess_kurtosis"],
    )  # fmt: skip


def _set_faces(set_name: str, source, source_kind: str, limit: int, num_ws: int):
    """(uint8 faces, names, true ws or None, description) of a set's source file or folder."""
    if source_kind == "folder":
        faces, names = read_face_folder(source, limit)
        return faces, names, None, f"real (the user's photos in {source})"
    if source_kind == "ffhq":
        with h5py.File(source, "r") as f:
            n = min(limit, len(f["images"]))
            return (
                f["images"][:n],
                [str(x) for x in f["names"].asstr()[:n]] if "names" in f else None,
                None,
                "real (FFHQ)",
            )
    split = "attribute (then identity)" if set_name == "real" else "identity"
    with open_faces(source) as f:
        idx = f[f"split/{split.split()[0]}"][:]
        if set_name == "real":  # attribute faces first, then identity faces: enough pairs in a tiny demo
            idx = np.concatenate([idx, f["split/identity"][:]])
        idx = np.sort(idx[:limit])
        faces, w = f["images"][idx], f["w"][idx]
    true_ws = np.repeat(w[:, None], num_ws, axis=1) if set_name == "generated" else None
    desc = (
        "generated (the dataset's identity split, true w known)"
        if set_name == "generated"
        else STAND_IN.format(split=split)
    )
    return faces, [f"face {i}" for i in idx], true_ws, desc


def project_faces(
    set_name, generator, gaussian, source, source_kind, out_path, projection: dict, device: str, num_images: int,
    vgg16=None,
) -> None:  # fmt: skip
    """projection/{set}.h5: every run of the set (`sets.runs_for`), cached for the later stages."""
    ps = ProjectionSettings.parse(projection)
    torch_device = resolve_device(device)
    G = load_generator(generator, device=torch_device)
    gauss = LatentGaussian.load(gaussian)
    faces, names, true_ws, description = _set_faces(set_name, source, source_kind, num_images, G.num_ws)
    if len(faces) < 2 and set_name != "identities":
        raise ValueError(f"{set_name}: {len(faces)} face(s); the evaluation needs at least 2")
    base = ProjectorConfig(num_steps=ps.steps, initial_learning_rate=ps.lr, prior_weight=ps.prior_weight,
                           loss=ps.loss, w_avg_samples=ps.w_avg_samples, vgg16_path=vgg16, precision=ps.precision,
                           compile=ps.compile and torch_device.type == "cuda")  # fmt: skip
    image_loss = make_image_loss(ps.loss, 0.0, vgg16, torch_device)
    runs = runs_for(set_name, ps.space, ps.prior_weight)
    log.info("%s: %d faces, %s; runs %s", set_name, len(faces), description, [r.name for r in runs])
    true = None if true_ws is None else torch.from_numpy(true_ws)
    out = project_runs(G, faces, runs, base, gauss, true, ps.seed, ps.batch, image_loss, torch_device)
    attrs = {"set": set_name, "source": description, "source_path": str(source), "loss": ps.loss, "steps": ps.steps}
    write_set(out_path, faces, out, attrs, true_ws=true_ws, names=names)
    write_provenance(f"{out_path}.provenance.json", {"projection": projection, "set": set_name},
                     {"generator": generator, "gaussian": gaussian})  # fmt: skip


def _stats(values) -> dict:
    mean, se = mean_and_standard_error(np.asarray(values, dtype=np.float64))
    finite = lambda x: x if np.isfinite(x) else None  # noqa: E731 - JSON has no NaN
    return {"mean": finite(mean), "se": finite(se), "n": int(np.size(values))}


def _reference(path_or_none, fallback: np.ndarray):
    """The real faces FID compares with: ffhq256.h5 (lazy) or, without FFHQ, the given faces."""
    if path_or_none:
        f = h5py.File(path_or_none, "r")
        return f, f["images"]
    return None, fallback


@torch.no_grad()
def latent_evaluation(generated, real, generator, gaussian, fid_inception, reference, out_json, out_figure,
                      out_strips, device: str, batch: int = 32) -> dict:  # fmt: skip
    """W&T Fig. 2 (errors of the generated set's runs) and Fig. 3 (interpolations of the real set
    with and without the prior, FID of their midpoints against real faces)."""
    torch_device = resolve_device(device)
    G = load_generator(generator, device=torch_device)
    gen = read_set(generated)
    summary = {run: {k.split("/")[1]: _stats(v) for k, v in arrays.items() if k.startswith("metrics/")}
               for run, arrays in gen["runs"].items()}  # fmt: skip
    reconstruction_figure(summary, out_figure, title=f"Projections of {len(gen['targets'])} generated faces")
    record = {"generated": {"source": gen["attrs"]["source"], "runs": summary}, "interpolation": {}}
    real_set = read_set(real)
    runs = {name: r for name, r in real_set["runs"].items() if "ws" in r}
    alphas = np.linspace(0.0, 1.0, 7)
    rows, labels = [], []
    ref_file, ref_images = _reference(reference, real_set["targets"])
    try:
        for name, arrays in sorted(runs.items()):
            ws = torch.from_numpy(arrays["ws"]).to(torch_device)
            pairs = len(ws) // 2
            a, b = ws[0 : 2 * pairs : 2], ws[1 : 2 * pairs : 2]
            mid = torch.cat([G.ws_to_image(0.5 * (a[i : i + batch] + b[i : i + batch]), noise_mode="const")
                             for i in range(0, pairs, batch)])  # fmt: skip
            mids = to_uint8_hwc(mid.clamp(-1, 1)).cpu().numpy()
            fid = (
                compute_fid(mids, ref_images, fid_inception, device=str(torch_device), batch_size=batch)
                if pairs >= 2
                else None
            )
            record["interpolation"][name] = {"pairs": pairs, "midpoint_fid": fid}
            for p in range(min(3, pairs)):
                path = [G.ws_to_image(((1 - t) * a[p : p + 1] + t * b[p : p + 1]), noise_mode="const") for t in alphas]
                rows.append(to_uint8_hwc(torch.cat(path).clamp(-1, 1)).cpu().numpy())
                labels.append(f"pair {p}, {name.replace('no_prior', 'no prior')}")
    finally:
        if ref_file is not None:
            ref_file.close()
    record["interpolation_source"] = real_set["attrs"]["source"]
    if rows:
        order = sorted(range(len(rows)), key=lambda i: labels[i])
        strips = np.stack([rows[i] for i in order])
        interpolation_strips(strips, [labels[i] for i in order], alphas, out_strips,
                             title=f"Interpolations between projections ({real_set['attrs']['source'][:60]})")  # fmt: skip
    else:
        from pipeline_lib.reporting.style import new_figure, save_figure

        fig = new_figure(5, 1)
        fig.text(0.5, 0.5, "no W/W+ projections of the real set (projection.space is s)", ha="center")
        save_figure(fig, out_strips)
    write_json_atomic(out_json, record)
    return record


def _diversity(images: torch.Tensor, lpips_fn) -> np.ndarray:
    """Distance of each disjoint pair (2k, 2k+1): LPIPS, or RMS difference in [-1, 1]."""
    a, b = images[0::2][: len(images) // 2], images[1::2][: len(images) // 2]
    if lpips_fn is not None:
        return lpips_fn(a, b).flatten().cpu().numpy()
    return (a - b).square().flatten(1).mean(1).sqrt().cpu().numpy()


@torch.no_grad()
def sampling_comparison(generator, gaussian, fid_inception, reference, real_features, out_json, out_figure, cfg: dict,
                        dataset: dict, device: str, vgg16=None) -> dict:  # fmt: skip
    """W&T Fig. 4: raw, truncated and log-compressed samples of the same z; FID and diversity."""
    sc, samp = SamplingComparisonSettings.parse(cfg), DatasetSamplingSettings.parse(dataset)
    torch_device = resolve_device(device)
    G = load_generator(generator, device=torch_device)
    gauss = LatentGaussian.load(gaussian)
    lpips_fn = LpipsLoss(vgg16).to(torch_device) if sc.diversity == "lpips" else None
    z = torch.randn([sc.num_images, G.z_dim], generator=torch.Generator().manual_seed(sc.seed))
    means, stds, numbers = {}, {}, {}
    real, real_statistics = read_real(real_features, reference)  # the reference faces' features, once
    with h5py.File(reference, "r") as ref_file:
        source = STAND_IN.format(split="attribute") if "split/identity" in ref_file else "real (FFHQ)"
    for method in ("raw", "truncation", "log_compression"):
        label = {"raw": "raw", "truncation": f"truncation psi {sc.psi:g}",
                 "log_compression": f"log-compression tau {samp.compression_tau:g}"}[method]  # fmt: skip
        u8, div = [], []
        for a in range(0, sc.num_images, sc.batch):
            w = sample_ws(G, gauss, z=z[a : a + sc.batch], method=method, psi=sc.psi, tau=samp.compression_tau,
                          device=torch_device)  # fmt: skip
            img = G.ws_to_image(w[:, None].repeat(1, G.num_ws, 1), noise_mode="const").clamp(-1, 1)
            u8.append(to_uint8_hwc(img).cpu().numpy())
            div.append(_diversity(img, lpips_fn))
        images = np.concatenate(u8)
        x = images.astype(np.float64)
        means[label], stds[label] = x.mean(0), x.std(0)
        fid = fid_kid(
            inception_features(images, fid_inception, torch_device, sc.batch), real, statistics_b=real_statistics
        )
        numbers[label] = {"method": method, "fid": fid["fid"], "kid": fid["kid"],
                          "diversity": float(np.concatenate(div).mean()), "fid_record": fid}  # fmt: skip
    what = (
        "mean LPIPS of disjoint pairs" if lpips_fn else "mean RMS pixel difference of disjoint pairs (no LPIPS weights)"
    )
    record = {"methods": numbers, "diversity": what, "reference": source, "num_images": sc.num_images,
              "compression_tau": samp.compression_tau, "fraction_touched": expected_fraction_touched(samp.compression_tau)}  # fmt: skip
    sampling_figure(means, stds, numbers, out_figure, title=f"{sc.num_images} samples per method; diversity: {what}")
    write_json_atomic(out_json, record)
    log.info("%s", {k: (round(v["fid"], 2), round(v["diversity"], 4)) for k, v in numbers.items()})
    return record
