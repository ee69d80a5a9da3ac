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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from pipeline_lib.editing import AttributeFaces, Editor, Encoders
from pipeline_lib.encoders.base import ENCODER_RESOLUTION, encoder_view
from pipeline_lib.evaluation.metrics import expression_distance, identity_similarity, pose_error, summarise
from pipeline_lib.images import from_uint8_hwc, to_uint8_hwc

log = logging.getLogger(__name__)


def draw_pairs(num_pairs: int, seed: int, identity_split: np.ndarray, num_attribute: int):
    """(identity face index, attribute position) of each test pair, from `seed` alone."""
    rng = np.random.default_rng([seed, 7])
    ids = identity_split[rng.integers(0, len(identity_split), num_pairs)]
    attrs = rng.integers(0, num_attribute, num_pairs)
    return ids, attrs


def evaluate(
    editor: Editor,
    encoders: Encoders,
    attribute_faces: AttributeFaces,
    num_pairs: int,
    seed: int,
    batch_size: int,
    mask=None,
    progress: bool = True,
) -> tuple[dict, torch.Tensor]:
    """Per-pair metrics of `num_pairs` edits and the edited faces (uint8 NHWC, host, for FID).

    Nothing in the loop waits on the host (issue 16): a thread reads the next batch of attribute
    faces from HDF5 while the device works on this one, each landmark detector sees a batch's
    attribute and edited faces as one batch of twice the size (what it returns for a face does
    not depend on its neighbours), the encoders' outputs stay on the device until the last batch,
    and the edited faces come back by asynchronous copies into pinned memory. Only the overflow
    check of a reduced-precision encoder synchronises (`Encoders`)."""
    ids, attrs = draw_pairs(num_pairs, seed, editor.identity_split, len(attribute_faces.indices))
    cuda = editor.device.type == "cuda"
    size = (num_pairs, editor.G.img_resolution, editor.G.img_resolution, editor.G.img_channels)
    edited_all = torch.empty(size, dtype=torch.uint8, pin_memory=cuda)
    outputs: dict[str, list] = {"identity": []}
    for role in encoders.landmarks:
        for name in ("landmarks_attr", "landmarks_edit", "pose_attr", "pose_edit"):
            outputs[f"{name}/{role}"] = []

    def read(positions) -> torch.Tensor:  # pinned: the copy to the device does not block the host
        faces = torch.from_numpy(attribute_faces.read(positions))
        return faces.pin_memory() if cuda else faces

    with ThreadPoolExecutor(1) as reader, torch.no_grad():
        pending = reader.submit(read, attrs[:batch_size])
        for a in tqdm(range(0, num_pairs, batch_size), desc="edits", unit="batch", disable=not progress):
            b = min(a + batch_size, num_pairs)
            attr_u8 = pending.result()
            if b < num_pairs:
                pending = reader.submit(read, attrs[b : b + batch_size])
            attr_img = encoder_view(from_uint8_hwc(attr_u8.to(editor.device, non_blocking=cuda)))
            edited, _ = editor.edit(ids[a:b], encoders.attribute_features(attr_img), mask)
            edited_view = encoder_view(edited)  # the encoders' 256 frame, as the annotations
            outputs["identity"].append(encoders.identity_embedding(edited_view))
            both = torch.cat([attr_img, edited_view])
            for role in encoders.landmarks:
                lnd, pose = encoders.landmarks_and_pose(role, both)
                for name, value in (("landmarks", lnd), ("pose", pose)):
                    outputs[f"{name}_attr/{role}"].append(value[: b - a])
                    outputs[f"{name}_edit/{role}"].append(value[b - a :])
            edited_all[a:b].copy_(to_uint8_hwc(edited), non_blocking=cuda)
    out = {k: torch.cat(v).cpu() for k, v in outputs.items()}  # waits for the device, and the copies
    resolution = ENCODER_RESOLUTION  # landmarks are in the encoders' frame
    values = {"identity": identity_similarity(editor.identity_embedding[torch.as_tensor(ids)].cpu(), out["identity"])}
    for role in encoders.landmarks:
        lnd_a, lnd_e = out[f"landmarks_attr/{role}"], out[f"landmarks_edit/{role}"]
        values[f"expression/{role}"] = expression_distance(lnd_a, lnd_e, resolution)
        values[f"pose/{role}"] = pose_error(out[f"pose_attr/{role}"], out[f"pose_edit/{role}"])
    return values, edited_all


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
def edit_grid_images(
    editor: Editor, encoders: Encoders, attribute_faces: AttributeFaces, rows: int, cols: int, mask=None
):
    """Identity faces x attribute faces and every edit, uint8, for `figures.edit_grid`."""
    ids = editor.identity_split[:rows]
    attr_pos = np.arange(min(cols, len(attribute_faces.indices)))
    attr_u8 = attribute_faces.read(attr_pos)
    features = encoders.attribute_features(encoder_view(from_uint8_hwc(torch.from_numpy(attr_u8).to(editor.device))))
    res, ch = editor.G.img_resolution, editor.G.img_channels  # edits are at the generator's size
    edited = np.zeros((rows, len(attr_pos), res, res, ch), dtype=np.uint8)
    for r, i in enumerate(ids):
        img, _ = editor.edit(np.full(len(attr_pos), i), features, mask)
        edited[r] = to_uint8_hwc(img).cpu().numpy()
    if attr_u8.shape[1] != res:  # real FFHQ256 beside a generator of another size: one tile size
        attr_img = from_uint8_hwc(torch.from_numpy(attr_u8))
        size = (res, res)
        attr_u8 = to_uint8_hwc(torch.nn.functional.interpolate(attr_img, size, mode="bilinear", antialias=True)).numpy()
    return editor.identity_images(ids), attr_u8, edited


@torch.no_grad()
def style_offsets(
    editor: Editor, encoders: Encoders, attribute_faces: AttributeFaces, num_tests: int, seed: int, batch_size: int
):
    """dS of one identity face with `num_tests` attribute faces (Fig. 7's tests), float32 numpy;
    `num_tests` 0 takes every attribute face (the paper's protocol: all of FFHQ256)."""
    rng = np.random.default_rng([seed, 11])
    available = len(attribute_faces.indices)
    attrs = rng.choice(available, size=min(num_tests or available, available), replace=False)
    identity = editor.identity_split[0]
    out = []
    for a in range(0, len(attrs), batch_size):
        pos = attrs[a : a + batch_size]
        img = encoder_view(from_uint8_hwc(torch.from_numpy(attribute_faces.read(pos)).to(editor.device)))
        dS = editor.offsets(np.full(len(pos), identity), encoders.attribute_features(img))[2]  # no synthesis
        out.append(dS.float().cpu().numpy())
    return np.concatenate(out)
