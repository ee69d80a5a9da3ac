"""Edit evaluation of a trained M_ref on real faces (paper Sec. 4, Tables 1-3) and the style
offsets that the sparsity analyses (Figs. 7-8) read.

An edit: a generated identity face (styles S_id from its stored w) and a real attribute face;
dS = M_ref(features of the attribute face), optionally kept only on a range of conv layers
(the generative-field ablation, Table 3), and I_edit = G(S_id + dS). Metrics are those of
`edit_metrics.py`, with the landmarks and pose of both detectors (the one training used and an
independent one), and FID between the edited faces and the real faces.

Attribute faces come from `ffhq256.h5` (real FFHQ). Without FFHQ (the demo) they come from the
dataset's attribute split, and every output says so (`attribute_source`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from pipeline_lib.atomic import write_json_atomic
from pipeline_lib.dataset.synthesis import open_faces
from pipeline_lib.evaluation.metrics import compute_fid, expression_distance, identity_similarity, pose_error, summarise
from pipeline_lib.generator.fast import FastSynthesis
from pipeline_lib.images import from_uint8_hwc, read_images, to_uint8_hwc
from pipeline_lib.mref import load_mapper, mapper_input
from pipeline_lib.generator.layers import find_layer, layer_mask, layer_range

log = logging.getLogger(__name__)


class AttributeFaces:
    """The attribute faces of the evaluation: every face of `ffhq256.h5`, or the attribute split
    of a generated `faces.h5` (demo)."""

    def __init__(self, path):
        self.path = Path(path)
        with h5py.File(self.path, "r") as f:
            if "split/attribute" in f:
                self.indices = f["split/attribute"][:]
                self.source = "generated (dataset attribute split; no FFHQ configured)"
            else:
                self.indices = np.arange(len(f["images"]))
                self.source = "real (FFHQ)"
        if len(self.indices) == 0:
            raise ValueError(f"{self.path} holds no faces")

    def read(self, positions: np.ndarray) -> np.ndarray:
        with h5py.File(self.path, "r") as f:
            return read_images(f["images"], self.indices[positions])

    def all_images(self, f: h5py.File):
        """An array-like of every attribute face, for FID (read lazily in blocks)."""
        images = f["images"]
        if len(self.indices) == len(images):
            return images
        return read_images(images, self.indices)


@dataclass
class Encoders:
    identity: object
    attribute: object
    landmarks: dict  # {"train": LandmarkEncoder, "eval": LandmarkEncoder}


class Editor:
    """Applies a trained M_ref: identity faces x attribute images -> edited images and dS."""

    def __init__(self, G, mapper, input_features: str, faces_path, annotations_path, device, dtype=torch.float32):
        self.G, self.mapper, self.input_features, self.device = G, mapper, input_features, torch.device(device)
        cuda = self.device.type == "cuda"
        self.synthesis = FastSynthesis(G, dtype=dtype, channels_last=cuda and dtype == torch.bfloat16).to(self.device)
        with open_faces(faces_path) as f:
            self.w = torch.from_numpy(f["w"][:]).to(self.device)
            self.identity_split = f["split/identity"][:]
            self.noise_mode = str(f.attrs["noise_mode"])
            self.faces_path = Path(faces_path)
        with h5py.File(annotations_path, "r") as a:
            self.identity_embedding = torch.from_numpy(a["identity"][:]).to(self.device)

    @torch.no_grad()
    def edit(self, identity_indices, attribute_features: torch.Tensor, mask=None):
        """Edited images [N,3,H,W] in [-1, 1] and dS [N, dim S], from the attribute faces' E_attr
        features (computed once by the caller, however many identities they are paired with)."""
        ids = torch.as_tensor(identity_indices, device=self.device)
        S_id, S_rgb = self.G.styles_from_w(self.w[ids])
        features = mapper_input(self.identity_embedding[ids], attribute_features, self.input_features)
        dS = self.mapper(features)
        if mask is not None:
            dS = dS * mask
        img = self.synthesis(S_id + dS, S_rgb, noise_mode=self.noise_mode).float().clamp(-1, 1)
        return img, dS

    def identity_images(self, indices) -> np.ndarray:
        with h5py.File(self.faces_path, "r") as f:
            return read_images(f["images"], np.asarray(indices))


def draw_pairs(num_pairs: int, seed: int, identity_split: np.ndarray, num_attribute: int):
    """(identity face index, attribute position) of each test pair, from `seed` alone."""
    rng = np.random.default_rng([seed, 7])
    ids = identity_split[rng.integers(0, len(identity_split), num_pairs)]
    attrs = rng.integers(0, num_attribute, num_pairs)
    return ids, attrs


def layers_mask(G, layers: list[str] | None, device):
    """The 0/1 mask over S of conv layers `layers` ([first, last] range), or None for all."""
    if not layers:
        return None
    first, last = layers
    return layer_mask(G.layers, layer_range(first, last), device=device)


def field_range(G, layers: list[str]) -> list[int]:
    """Generative fields (Eq. 1) of the first and last layer of a range."""
    return [find_layer(G.layers, layers[0]).generative_field, find_layer(G.layers, layers[1]).generative_field]


def evaluate(
    editor: Editor,
    encoders: Encoders,
    attribute_faces: AttributeFaces,
    num_pairs: int,
    seed: int,
    batch_size: int,
    mask=None,
    progress: bool = True,
) -> tuple[dict, np.ndarray]:
    """Per-pair metrics of `num_pairs` edits and the edited faces (uint8 NHWC, for FID)."""
    ids, attrs = draw_pairs(num_pairs, seed, editor.identity_split, len(attribute_faces.indices))
    per_pair: dict[str, list] = {"identity": []}
    for det in encoders.landmarks:
        per_pair[f"expression/{det}"] = []
        per_pair[f"pose/{det}"] = []
    edited_all = []
    resolution = editor.G.img_resolution
    for a in tqdm(range(0, num_pairs, batch_size), desc="edits", unit="batch", disable=not progress):
        b = min(a + batch_size, num_pairs)
        attr_img = from_uint8_hwc(torch.from_numpy(attribute_faces.read(attrs[a:b])).to(editor.device))
        with torch.no_grad():
            edited, _ = editor.edit(ids[a:b], encoders.attribute.embed(attr_img), mask)
            e_edit = encoders.identity.embed(edited)
            per_pair["identity"].append(identity_similarity(editor.identity_embedding[torch.as_tensor(ids[a:b])].cpu(), e_edit.cpu()))
            for det, enc in encoders.landmarks.items():
                lnd_a, pose_a = enc.landmarks_and_pose(attr_img)
                lnd_e, pose_e = enc.landmarks_and_pose(edited)
                per_pair[f"expression/{det}"].append(expression_distance(lnd_a.cpu(), lnd_e.cpu(), resolution))
                per_pair[f"pose/{det}"].append(pose_error(pose_a.cpu(), pose_e.cpu()))
        edited_all.append(to_uint8_hwc(edited).cpu().numpy())
    values = {k: np.concatenate(v) for k, v in per_pair.items()}
    return values, np.concatenate(edited_all)


def metrics_record(values: dict, detectors: dict) -> dict:
    """The report's metrics dict (see report.py): identity, and expression/pose per detector
    role ("train", "eval") with the detector's name."""
    s = summarise(values)
    record = {"identity": s["identity"], "expression": {}, "pose": {}, "detectors": detectors}
    for role, det in detectors.items():
        record["expression"][role] = s[f"expression/{role}"]
        record["pose"][role] = s[f"pose/{role}"]
    return record


@torch.no_grad()
def edit_grid_images(editor: Editor, encoders: Encoders, attribute_faces: AttributeFaces, rows: int, cols: int, mask=None):
    """Identity faces x attribute faces and every edit, uint8, for `figures.edit_grid`."""
    ids = editor.identity_split[:rows]
    attr_pos = np.arange(min(cols, len(attribute_faces.indices)))
    attr_u8 = attribute_faces.read(attr_pos)
    features = encoders.attribute.embed(from_uint8_hwc(torch.from_numpy(attr_u8).to(editor.device)))
    edited = np.zeros((rows, len(attr_pos)) + attr_u8.shape[1:], dtype=np.uint8)
    for r, i in enumerate(ids):
        img, _ = editor.edit(np.full(len(attr_pos), i), features, mask)
        edited[r] = to_uint8_hwc(img).cpu().numpy()
    return editor.identity_images(ids), attr_u8, edited


@torch.no_grad()
def style_offsets(editor: Editor, encoders: Encoders, attribute_faces: AttributeFaces, num_tests: int, seed: int, batch_size: int):
    """dS of one identity face with `num_tests` attribute faces (Fig. 7's tests), float32 numpy."""
    rng = np.random.default_rng([seed, 11])
    attrs = rng.choice(len(attribute_faces.indices), size=min(num_tests, len(attribute_faces.indices)), replace=False)
    identity = editor.identity_split[0]
    out = []
    for a in range(0, len(attrs), batch_size):
        pos = attrs[a : a + batch_size]
        img = from_uint8_hwc(torch.from_numpy(attribute_faces.read(pos)).to(editor.device))
        _, dS = editor.edit(np.full(len(pos), identity), encoders.attribute.embed(img))
        out.append(dS.float().cpu().numpy())
    return np.concatenate(out)


# ----------------------------------------------------------------------------------------------
# Jobs


def build_job(model_path, faces_path, annotations_path, generator_path, files: dict, encoders_cfg: dict, device_name):
    from pipeline_lib.devices import resolve_device
    from pipeline_lib.encoders import build_encoder
    from pipeline_lib.generator.loading import load_generator

    device = resolve_device(device_name)
    G = load_generator(generator_path, device=device)
    mapper, meta = load_mapper(model_path, device)
    settings = meta["settings"]
    editor = Editor(G, mapper, settings["input_features"], faces_path, annotations_path, device)
    detectors = {"train": encoders_cfg["landmarks"]["train"], "eval": encoders_cfg["landmarks"]["eval"]}
    encoders = Encoders(
        identity=build_encoder(encoders_cfg["identity"], files, device),
        attribute=build_encoder(encoders_cfg["attribute"], files, device),
        landmarks={role: build_encoder(kind, files, device) for role, kind in detectors.items()},
    )
    return G, editor, encoders, detectors, device


def run_evaluation_job(
    model_path, faces_path, annotations_path, attribute_path, generator_path, files: dict, encoders_cfg: dict,
    eval_cfg: dict, out_metrics, out_grid, device_name="auto", layers: list[str] | None = None, num_pairs: int | None = None,
    title: str = "",
) -> dict:
    """`evaluate_variant` and `ablation` jobs: metrics.json (+ FID) and an edit grid."""
    from pipeline_lib.reporting.figures import edit_grid

    G, editor, encoders, detectors, device = build_job(
        model_path, faces_path, annotations_path, generator_path, files, encoders_cfg, device_name
    )
    attribute_faces = AttributeFaces(attribute_path)
    mask = layers_mask(G, layers, device)
    n = int(num_pairs or eval_cfg["num_pairs"])
    values, edited = evaluate(editor, encoders, attribute_faces, n, int(eval_cfg["seed"]), int(eval_cfg["batch_size"]), mask)
    record = metrics_record(values, detectors)
    with h5py.File(attribute_faces.path, "r") as f:
        record["fid"] = compute_fid(
            edited, attribute_faces.all_images(f), files["fid_inception"], device=str(device), batch_size=int(eval_cfg["batch_size"])
        )
    record.update(
        {
            "num_pairs": n,
            "seed": int(eval_cfg["seed"]),
            "attribute_source": attribute_faces.source,
            "attribute_file": str(attribute_path),
            "model": str(model_path),
            "layers": layers,
            "generative_field_range": field_range(G, layers) if layers else None,
        }
    )
    rows, cols = eval_cfg["grid"]
    identity_u8, attr_u8, edited_u8 = edit_grid_images(editor, encoders, attribute_faces, int(rows), int(cols), mask)
    edit_grid(identity_u8, attr_u8, edited_u8, out_grid, title=title)
    write_json_atomic(out_metrics, record)
    log.info("identity %.3f, expression (%s) %.4f, pose (%s) %.3f, FID %.2f over %d pairs",
             record["identity"]["mean"], detectors["train"], record["expression"]["train"]["mean"],
             detectors["train"], record["pose"]["train"]["mean"], record["fid"]["fid"], n)
    return record


def run_sparsity_job(
    model_path, faces_path, annotations_path, attribute_path, generator_path, files: dict, encoders_cfg: dict,
    sparsity_cfg: dict, eval_cfg: dict, outputs: dict, device_name="auto",
) -> None:
    """Figs. 7 and 8: the histogram of normalised |dS| and the reuse of the top channels."""
    from pipeline_lib.evaluation.edits import sparsity

    G, editor, encoders, _, _ = build_job(model_path, faces_path, annotations_path, generator_path, files, encoders_cfg, device_name)
    attribute_faces = AttributeFaces(attribute_path)
    seed, batch = int(eval_cfg["seed"]), int(eval_cfg["batch_size"])
    dS = style_offsets(editor, encoders, attribute_faces, int(sparsity_cfg["histogram_tests"]), seed, batch)
    hist = sparsity.dS_histogram(dS, bins=int(sparsity_cfg["bins"]), threshold=float(sparsity_cfg["threshold"]))
    sparsity.write_histogram_csv(hist, outputs["histogram_csv"])
    sparsity.write_histogram_summary(hist, outputs["histogram_summary"])
    sparsity.plot_histogram(hist, outputs["histogram_png"], title=f"|dS| of {len(dS)} edits ({attribute_faces.source})")
    reuse_dS = dS[: int(sparsity_cfg["reuse_tests"])]
    reuse = sparsity.channel_reuse(reuse_dS, top_k=int(sparsity_cfg["top_k"]))
    sparsity.write_reuse_csv(reuse, G.layers, outputs["reuse_csv"])
    sparsity.plot_reuse(reuse, G.layers, outputs["reuse_png"])
