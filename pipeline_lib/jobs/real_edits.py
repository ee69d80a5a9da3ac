"""Rules `edit_real_faces` (the final M_ref applied to projected real identity faces: an edit grid
and Table 1's metrics as an extra row, ours only) and `latent_report` (report/latent.md)."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch
from tqdm import tqdm

from pipeline_lib.atomic import atomic_path, write_json_atomic
from pipeline_lib.devices import resolve_device
from pipeline_lib.editing import AttributeFaces, layers_mask
from pipeline_lib.encoders import build_encoder
from pipeline_lib.evaluation.edits import draw_pairs, metrics_record
from pipeline_lib.evaluation.fid import fid_kid, inception_features, read_real
from pipeline_lib.evaluation.metrics import expression_distance, identity_similarity, pose_error
from pipeline_lib.generator import load_generator
from pipeline_lib.images import from_uint8_hwc, to_uint8_hwc
from pipeline_lib.latent.real_edits import edit_styles
from pipeline_lib.latent.sets import read_set, to_generator_input
from pipeline_lib.mref import load_mapper
from pipeline_lib.reporting.figures import edit_grid
from pipeline_lib.settings import EncoderSettings, EvaluationSettings

log = logging.getLogger(__name__)

ROW_LABEL = "real identities (ours only)"


def edit_real_faces(model, identities, attribute_faces, real_features, generator, files: dict, encoders: dict,
                    evaluation: dict, out_metrics, out_grid, device: str) -> dict:  # fmt: skip
    """Edits of projected identity faces (S_id and noise maps from projection/identities.h5)."""
    enc, ev = EncoderSettings.parse(encoders), EvaluationSettings.parse(evaluation)
    dev = resolve_device(device)
    G = load_generator(generator, device=dev)
    mapper, meta = load_mapper(model, dev)
    input_features = meta["settings"]["input_features"]
    ident = read_set(identities)
    (run_name, run), *_ = ident["runs"].items()
    S_all, S_rgb_all = torch.from_numpy(run["S"]).to(dev), torch.from_numpy(run["S_rgb"]).to(dev)
    noise_all = {k.split("/", 1)[1]: torch.from_numpy(v).to(dev) for k, v in run.items() if k.startswith("noise/")}
    targets = ident["targets"]
    identity_enc = build_encoder(enc.identity, files, dev)
    attribute_enc = build_encoder(enc.attribute, files, dev)
    detectors = {role: build_encoder(kind, files, dev) for role, kind in enc.detectors.items()}
    with torch.no_grad():
        id_emb = torch.cat([identity_enc.embed(to_generator_input(targets[a : a + ev.batch_size], G.img_resolution, dev))
                            for a in range(0, len(targets), ev.batch_size)])  # fmt: skip
    attributes = AttributeFaces(attribute_faces)

    def edit(ids, attr_img):
        ids = torch.as_tensor(ids, device=dev)
        feats = attribute_enc.embed(attr_img)
        noise = {k: v[ids] for k, v in noise_all.items()}
        return edit_styles(G, mapper, input_features, S_all[ids], S_rgb_all[ids], feats, id_emb[ids], None, noise)[0]

    ids, attrs = draw_pairs(ev.num_pairs, ev.seed, np.arange(len(targets)), len(attributes.indices))
    per_pair: dict[str, list] = {"identity": []}
    edited_all = []
    for a in tqdm(range(0, len(ids), ev.batch_size), desc="real-face edits", unit="batch"):
        b = min(a + ev.batch_size, len(ids))
        attr_img = from_uint8_hwc(torch.from_numpy(attributes.read(attrs[a:b])).to(dev))
        with torch.no_grad():
            edited = edit(ids[a:b], attr_img)
            per_pair["identity"].append(identity_similarity(id_emb[ids[a:b]].cpu(), identity_enc.embed(edited).cpu()))
            for role, det in detectors.items():
                lnd_a, pose_a = det.landmarks_and_pose(attr_img)
                lnd_e, pose_e = det.landmarks_and_pose(edited)
                per_pair.setdefault(f"expression/{role}", []).append(
                    expression_distance(lnd_a.cpu(), lnd_e.cpu(), G.img_resolution)
                )
                per_pair.setdefault(f"pose/{role}", []).append(pose_error(pose_a.cpu(), pose_e.cpu()))
        edited_all.append(to_uint8_hwc(edited).cpu().numpy())
    record = metrics_record({k: np.concatenate(v) for k, v in per_pair.items()}, enc.detectors)
    edited_features = inception_features(np.concatenate(edited_all), files["fid_inception"], dev, ev.batch_size)
    real, real_statistics = read_real(real_features, attribute_faces)
    record["fid"] = fid_kid(edited_features, real, statistics_b=real_statistics)
    record.update({"row": ROW_LABEL, "num_pairs": int(len(ids)), "seed": ev.seed, "model": str(model),
                   "identity_source": ident["attrs"]["source"], "projection_run": run_name,
                   "attribute_source": attributes.source, "num_identities": int(len(targets))})  # fmt: skip
    rows, cols = min(int(ev.grid[0]), len(targets)), min(int(ev.grid[1]), len(attributes.indices))
    attr_u8 = attributes.read(np.arange(cols))
    attr_img = from_uint8_hwc(torch.from_numpy(attr_u8).to(dev))
    with torch.no_grad():
        grid = np.stack([to_uint8_hwc(edit(np.full(cols, r), attr_img)).cpu().numpy() for r in range(rows)])
    id_u8 = to_uint8_hwc(to_generator_input(targets[:rows], G.img_resolution, dev)).cpu().numpy()
    edit_grid(id_u8, attr_u8, grid, out_grid, title=f"Real-face edits ({ident['attrs']['source'][:50]})")
    write_json_atomic(out_metrics, record)
    log.info("real identities: identity %.3f, FID %.2f over %d pairs (%s)", record["identity"]["mean"],
             record["fid"]["fid"], len(ids), ident["attrs"]["source"])  # fmt: skip
    return record


def layers_from_text(G, text: str | None, device):
    """`conv0-conv7` -> the mask over S of that range (None for every layer)."""
    if not text:
        return None
    first, sep, last = text.partition("-")
    if not sep:
        raise ValueError(f"--layers {text!r}: expected a range such as conv0-conv7")
    return layers_mask(G, [first.strip(), last.strip()], device)


def _fmt(stats) -> str:
    if not stats:
        return "—"
    se = stats.get("se", stats.get("sem"))
    return f"{stats['mean']:.3f}" + (f" ± {se:.3f}" if se is not None else "")


def latent_report(out_path, gaussianity, evaluation, sampling, real_edits) -> None:
    """report/latent.md: the W&T section of the report (Figs. 1-4 numbers, the real-edit row)."""
    g, ev, sc, re = (json.loads(open(p).read()) for p in (gaussianity, evaluation, sampling, real_edits))
    lines = ["# The Gaussianized latent space (Wulff & Torralba 2020), reproduced", ""]
    s = g["summary"]
    lines += ["## Fig. 1: how Gaussian W and V are", "",
              f"{g['num_samples']} mapping samples (seed {g['seed']}). {g['note']}", "",
              "| space | mean abs skew | mean abs excess kurtosis |", "|---|---|---|"]  # fmt: skip
    for space in ("w", "v"):
        lines.append(
            f"| {space.upper()} | {s[space]['mean_abs_skew']:.3f} | {s[space]['mean_abs_excess_kurtosis']:.3f} |"
        )
    lines += ["", "## Fig. 2: projections of generated faces, with and without the prior", "",
              f"Faces: {ev['generated']['source']}. Mean ± standard error per image.", "",
              "| run | PSNR (dB) | LPIPS | W L2 error | V Mahalanobis error |", "|---|---|---|---|---|"]  # fmt: skip
    for run, m in sorted(ev["generated"]["runs"].items()):
        cells = [_fmt(m.get(k)) for k in ("psnr", "lpips", "w_l2", "v_mahalanobis")]
        lines.append(
            f"| {run.replace('no_prior', 'without prior').replace('/prior', '/with prior')} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "## Fig. 3: interpolation midpoints", "", f"Faces: {ev['interpolation_source']}.", "",
              "| run | pairs | midpoint FID | KID |", "|---|---|---|---|"]  # fmt: skip
    for run, m in sorted(ev["interpolation"].items()):
        fid = m["midpoint_fid"] or {}
        lines.append(
            f"| {run} | {m['pairs']} | {fid.get('fid', float('nan')):.2f} | {fid.get('kid', float('nan')):.4f} |"
        )
    lines += ["", "## Fig. 4: sampling methods", "",
              f"{sc['num_images']} samples each against {sc['reference']}; diversity: {sc['diversity']}. "
              f"Log-compression (our formula) touches {100 * sc['fraction_touched']:.1f}% of coefficients.", "",
              "| method | FID | KID | diversity |", "|---|---|---|---|"]  # fmt: skip
    for label, m in sc["methods"].items():
        lines.append(f"| {label} | {m['fid']:.2f} | {m['kid']:.4f} | {m['diversity']:.4f} |")
    det = re["detectors"]["train"]
    lines += ["", "## Table 1, extra row: real identities (ours only; the paper edits generated faces)", "",
              f"Identities: {re['identity_source']}; attribute faces: {re['attribute_source']}; "
              f"{re['num_pairs']} pairs; projection run {re['projection_run']}.", "",
              f"| row | FID ↓ | KID ↓ | identity ↑ | expression ({det}) ↓ | pose ({det}) ↓ |", "|---|---|---|---|---|---|",
              f"| {re['row']} | {re['fid']['fid']:.2f} | {re['fid']['kid']:.4f} | {_fmt(re['identity'])} | "
              f"{_fmt(re['expression']['train'])} | {_fmt(re['pose']['train'])} |", ""]  # fmt: skip
    with atomic_path(out_path) as tmp:
        with open(tmp, "w") as fh:
            fh.write("\n".join(lines))
