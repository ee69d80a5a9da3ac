"""Face sets for the projector and their cached projections: one HDF5 file per set.

A set is a stack of aligned faces (uint8, the generator's resolution) projected by one or more
*runs* (a space and a prior weight: W&T compare the same faces with and without the prior, so
one file holds every run of its faces, and the evaluation never projects twice). Each run
stores what the later stages read: the latents (ws; w for W), S and S_rgb (the edit starts
from S), the optimised noise maps (so a real-face edit keeps the projection's fine detail), the
reconstructions and per-image numbers (losses, PSNR, and, where the true latents are known,
W&T's latent errors).

File layout (`genfields.projection_set.v1`): `targets` [N,H,W,3] uint8, optional `true_ws`,
`names`; per run a group `runs/<space>/<prior|no_prior>` with `ws`, `w`, `S`, `S_rgb`,
`images` (uint8), `noise/<buffer>`, `metrics/<name>` (float [N]) and the projector config as JSON.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from pipeline_lib.atomic import atomic_path
from pipeline_lib.images import from_uint8_hwc, to_uint8_hwc
from pipeline_lib.latent.evaluation import latent_errors, psnr
from pipeline_lib.latent.gaussian import to_v
from pipeline_lib.latent.image_losses import make_image_loss
from pipeline_lib.latent.objective import make_objective
from pipeline_lib.latent.projector import ProjectorConfig, latent_statistics, project

log = logging.getLogger(__name__)

FORMAT = "genfields.projection_set.v1"
FACE_SIZES = (256, 1024)  # FFHQ's aligned sizes; anything else is not an aligned face


@dataclass(frozen=True)
class Run:
    """One projection of a set: `name` is its group, e.g. "w+/prior"."""

    space: str
    prior_weight: float

    @property
    def name(self) -> str:
        return f"{self.space}/{'prior' if self.prior_weight > 0 else 'no_prior'}"


def runs_for(set_name: str, space: str, prior_weight: float) -> list[Run]:
    """generated: W and W+, each without and with the prior (W&T Fig. 2); real: the configured
    space without and with it (Fig. 3's interpolations); identities: with it only (editing).
    The prior is not defined in S, so S gets one run without it."""
    if set_name == "generated":
        return [Run(s, w) for s in ("w", "w+") for w in (0.0, prior_weight)]
    if space == "s":
        return [Run("s", 0.0)]
    if set_name == "real":
        return [Run(space, 0.0), Run(space, prior_weight)]
    return [Run(space, prior_weight)]


def check_face_image(path) -> np.ndarray:
    """An aligned face photo as uint8 RGB [H, W, 3]; a clear ValueError when the file cannot be
    read or is not face-sized (square, 256 or 1024 pixels, as FFHQ's aligned images)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None
    w, h = img.size
    if w != h or w not in FACE_SIZES:
        raise ValueError(
            f"{path}: {w}x{h} pixels is not an aligned face: expected a square of {' or '.join(map(str, FACE_SIZES))} "
            "pixels (align and crop the photo as FFHQ does first)"
        )
    return np.asarray(img, dtype=np.uint8)


def read_face_folder(folder, limit: int) -> tuple[np.ndarray, list[str]]:
    """Up to `limit` aligned faces of a folder (sorted names), skipping files that are not
    face-sized or readable, each with one log line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of aligned face photos")
    faces, names = [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        if len(faces) == limit:
            break
        try:
            faces.append(resize_u8(check_face_image(path), 256))
            names.append(str(path.relative_to(folder)))
        except ValueError as exc:
            log.warning("skipped %s", exc)
    if not faces:
        raise ValueError(f"{folder}: no aligned face photos (square PNG/JPG of 256 or 1024 pixels)")
    return np.stack(faces), names


def resize_u8(img: np.ndarray, size: int) -> np.ndarray:
    """One uint8 HWC image at `size` (Lanczos, as StyleGAN2-ADA's dataset tool resizes)."""
    if img.shape[0] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS), dtype=np.uint8)


def to_generator_input(images_u8: np.ndarray, resolution: int, device) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] at the generator's resolution (area or bilinear)."""
    x = from_uint8_hwc(torch.from_numpy(np.array(images_u8, copy=True)).to(device))
    if x.shape[-1] > resolution:
        return F.interpolate(x, size=(resolution, resolution), mode="area")
    if x.shape[-1] < resolution:
        return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x


def project_runs(
    G,
    targets_u8: np.ndarray,
    runs: list[Run],
    base: ProjectorConfig,
    gaussian=None,
    true_ws: torch.Tensor | None = None,
    seed: int = 0,
    batch: int = 32,
    image_loss=None,
    device="cpu",
    progress: bool = True,
) -> dict[str, dict]:
    """Every run of a set, `batch` faces at a time; {run name: arrays (numpy) and config}.

    Image i always uses the random stream seed + i, so results do not depend on `batch`. One
    objective (`base.precision`, `base.compile`) serves every batch and run: compiled, it then
    compiles once per batch shape and space.
    """
    from dataclasses import replace

    device = torch.device(device)
    stats = latent_statistics(G, base.w_avg_samples, base.w_avg_seed, device)
    if image_loss is None:
        image_loss = make_image_loss(base.loss, base.msssim_weight, base.vgg16_path, device)
    objective = make_objective(G, image_loss, base.precision, base.compile, device)
    n = len(targets_u8)
    out = {}
    for run in runs:
        config = replace(base, space=run.space, prior_weight=run.prior_weight)
        parts: dict[str, list] = {}
        for a in tqdm(range(0, n, batch), desc=f"project {run.name}", unit="batch", disable=not progress):
            b = min(a + batch, n)
            target = to_generator_input(targets_u8[a:b], G.img_resolution, device)
            seeds = list(range(seed + a, seed + b))
            res = project(G, target, config, gaussian, seeds, stats=stats, device=device, objective=objective)
            arrays = {"S": res.S, "S_rgb": res.S_rgb, "images": to_uint8_hwc(res.images.clamp(-1, 1))}
            if res.ws is not None:
                arrays["ws"] = res.ws
            arrays.update({f"noise/{k}": v for k, v in res.noise.items()})
            metrics = {f"metrics/{k}": v for k, v in res.losses.items()}
            metrics["metrics/psnr"] = psnr(res.images.clamp(-1, 1), target)
            if base.loss == "lpips":
                metrics["metrics/lpips"] = res.losses["image"]
            if gaussian is not None and res.ws is not None:
                metrics["metrics/mahalanobis_sq_per_layer"] = gaussian.mahalanobis_sq(to_v(res.ws.double())).mean(-1)
            if true_ws is not None and res.ws is not None:
                errs = latent_errors(res.ws, true_ws[a:b].to(device), gaussian)
                metrics.update({f"metrics/{k}": v for k, v in errs.items()})
            for k, v in {**arrays, **metrics}.items():
                parts.setdefault(k, []).append(v.detach().cpu().numpy())
        out[run.name] = {k: np.concatenate(v) for k, v in parts.items()}
        out[run.name]["config"] = json.dumps(asdict(config), sort_keys=True)
        summary = {k.split("/")[1]: float(np.mean(v)) for k, v in out[run.name].items() if k.startswith("metrics/")}
        log.info("%s: %s", run.name, ", ".join(f"{k} {v:.4g}" for k, v in sorted(summary.items())))
    return out


def write_set(path, targets_u8: np.ndarray, runs: dict[str, dict], attrs: dict, true_ws=None, names=None) -> None:
    """The set's HDF5 file, atomically (layout in the module docstring)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        for key, value in attrs.items():
            f.attrs[key] = value
        f.create_dataset("targets", data=targets_u8, chunks=(1, *targets_u8.shape[1:]))
        if true_ws is not None:
            f.create_dataset("true_ws", data=np.asarray(true_ws, dtype=np.float32))
        if names is not None:
            f.create_dataset("names", data=np.asarray(names, dtype=object), dtype=h5py.string_dtype())
        for run_name, arrays in runs.items():
            group = f.create_group(f"runs/{run_name}")
            group.attrs["config"] = arrays["config"]
            for key, value in arrays.items():
                if key == "config":
                    continue
                chunks = (1, *value.shape[1:]) if key == "images" else None
                group.create_dataset(key, data=value, chunks=chunks)
            if "ws" in arrays and json.loads(arrays["config"])["space"] == "w":
                group.create_dataset("w", data=arrays["ws"][:, 0])


def read_set(path) -> dict:
    """{"targets", "true_ws" (or None), "attrs", "runs": {name: {key: array}}} of a set file."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a projection set (format {f.attrs.get('format')!r})")
        runs = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "S" in obj:
                runs[name] = {k: np.asarray(v) for k, v in _datasets(obj)}

        f["runs"].visititems(visit)
        return {
            "targets": f["targets"][()],
            "true_ws": f["true_ws"][()] if "true_ws" in f else None,
            "attrs": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()},
            "runs": runs,
        }


def _datasets(group: h5py.Group):
    for key, obj in group.items():
        if isinstance(obj, h5py.Dataset):
            yield key, obj[()]
        else:
            for sub, value in _datasets(obj):
                yield f"{key}/{sub}", value
