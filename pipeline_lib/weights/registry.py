"""Every pretrained file the pipeline uses: where it comes from and how to check it.

This table is the one source of truth for weights. Only the `download_weights` rule downloads
(`download`); library code and tests take local paths. A `sha256` here may be a full digest
or, where upstream publishes only that, the leading hex digits (torch hub's file-name
convention); `verify` accepts either.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline_lib.atomic import atomic_path
from pipeline_lib.provenance import file_sha256
from pipeline_lib.weights import WeightsError

log = logging.getLogger(__name__)

DEFAULT_DIR = "resources/weights"


@dataclass(frozen=True)
class WeightsFile:
    name: str  # key in config.yaml's `weights:` section
    filename: str
    url: str | None  # direct download; None where the host needs a browser (then see `source`)
    sha256: str | None
    size: int | None
    source: str  # project, licence and how to obtain the file by hand
    used_for: str


_3DDFA = "https://github.com/cleardusk/3DDFA_V2/raw/1b6c67601abffc1e9f248b291708aef0e43b55ae"
_FAN = "https://www.adrianbulat.com/downloads/python-fan"

REGISTRY: dict[str, WeightsFile] = {
    entry.name: entry
    for entry in [
        WeightsFile(
            "stylegan2_ffhq256",
            "ffhq70k-paper256-ada.pkl",
            "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/paper-fig7c-training-set-sweeps/"
            "ffhq70k-paper256-ada.pkl",
            None,
            None,
            "NVIDIA StyleGAN2-ADA (NVlabs/stylegan2-ada-pytorch), FFHQ 256x256 paper256 snapshot; "
            "NVIDIA Source Code License (non-commercial)",
            "the generator G studied throughout (config: generator.weights)",
        ),
        WeightsFile(
            "tddfa_mb1",
            "mb1_120x120.pth",
            f"{_3DDFA}/weights/mb1_120x120.pth",
            None,
            None,
            "cleardusk/3DDFA_V2 (MIT; trained on 300W-LP, research use)",
            "3DDFA_V2 landmarks and pose, MobileNetV1 width 1.0",
        ),
        WeightsFile(
            "tddfa_mb05",
            "mb05_120x120.pth",
            f"{_3DDFA}/weights/mb05_120x120.pth",
            "f93ed7f1c4c0382b16d7c18480a5f67473c1917a47475a9823924f38aeb27280",
            3752462,
            "cleardusk/3DDFA_V2 (MIT; trained on 300W-LP, research use)",
            "3DDFA_V2 landmarks and pose, MobileNetV1 width 0.5",
        ),
        WeightsFile(
            "tddfa_param_mean_std",
            "param_mean_std_62d_120x120.pkl",
            f"{_3DDFA}/configs/param_mean_std_62d_120x120.pkl",
            "090d7150f77cb66c29ddae21e4508fbde59123dcd1dea7facc24a7ed06d1c795",
            713,
            "cleardusk/3DDFA_V2 (MIT)",
            "de-normalising 3DDFA_V2's 62 parameters",
        ),
        WeightsFile(
            "bfm_68_landmarks",
            "bfm_68_landmarks.npz",
            "https://github.com/1996scarlet/Dense-Head-Pose-Estimation/raw/"
            "cf9e94be5d3b5401dafc939338081de087d7dfe6/weights/bfm_68_landmarks.npz",
            "3b9051c421a1c17655c4a8fc57fd35528f60fea2f85accd95fda81f0ec41923d",
            42386,
            "1996scarlet/Dense-Head-Pose-Estimation: the 68 keypoint rows of the 3DDFA Basel Face Model "
            "(BFM 2009: research-only, non-commercial)",
            "3DDFA_V2 landmark reconstruction; mean shape for FAN's pose fit",
        ),
        WeightsFile(
            "fan_3d",
            "3DFAN4-7835d9f11d.pth.tar",
            f"{_FAN}/3DFAN4-7835d9f11d.pth.tar",
            "7835d9f11d",
            None,
            "1adrianb/face-alignment (BSD-3-Clause), 3D-FAN with 4 hourglass modules; the plain state dict "
            "face-alignment >= 1.5 downloads (its TorchScript archives 3DFAN4_1.6-*.zip also load)",
            "independent landmark detector for evaluation (landmarks.eval = fan)",
        ),
        WeightsFile(
            "fan_depth",
            "depth-2a464da4ea.pth.tar",
            f"{_FAN}/depth-2a464da4ea.pth.tar",
            "2a464da4ea",
            None,
            "1adrianb/face-alignment (BSD-3-Clause), ResNetDepth; plain state dict (or depth_1.6-*.zip)",
            "depth of FAN's landmarks",
        ),
        WeightsFile(
            "arcface_ir_se50",
            "model_ir_se50.pth",
            None,
            None,
            None,
            "TreB1eN/InsightFace_Pytorch IR-SE50 ArcFace (MIT), the file pSp/e4e use for their identity loss. "
            "It is hosted on Google Drive: follow the 'model_ir_se50.pth' link in the pretrained-models table "
            "of the eladrich/pixel2style2pixel README",
            "identity encoder E_id (L_id, identity metric)",
        ),
        WeightsFile(
            "inception_v3_imagenet",
            "inception_v3_google-0cc3c7bd.pth",
            "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
            "0cc3c7bd",
            None,
            "torchvision ImageNet InceptionV3 (BSD-3-Clause)",
            "attribute encoder E_attr (2048-d pooled features)",
        ),
        WeightsFile(
            "fid_inception",
            "weights-inception-2015-12-05-6726825d.pth",
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
            "6726825d",
            None,
            "toshas/torch-fidelity (Apache-2.0): the TensorFlow FID Inception (2015-12-05) converted to PyTorch",
            "FID, as the paper's numbers use it",
        ),
        # issue 15: the backbone of the projector's LPIPS (the lpips package ships its linear layers)
        WeightsFile(
            "vgg16_lpips",
            "vgg16-397923af.pth",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            # Only a prefix is published: torchvision names its checkpoints `<arch>-<first 8 hex digits
            # of the file's sha256>.pth`, and torch.hub's `load_state_dict_from_url(check_hash=True)`
            # checks a download the same way (digest starts with the name's digits); `verify` too.
            "397923af",
            None,
            "torchvision (BSD-3-Clause) VGG16 ImageNet weights (VGG16_Weights.IMAGENET1K_V1)",
            "LPIPS-VGG16 image loss of the projector and diversity of the sampling comparison (W&T)",
        ),
    ]
}

BY_FILENAME = {entry.filename: entry for entry in REGISTRY.values()}


class WeightsUnavailable(WeightsError):
    """A pretrained file that is absent and could not be fetched; the message says what to do."""


def verify(entry: WeightsFile, path) -> None:
    """Raise if `path` has the wrong size or checksum for `entry` (when they are known)."""
    path = Path(path)
    if entry.size is not None and path.stat().st_size != entry.size:
        raise WeightsUnavailable(
            f"{path}: {path.stat().st_size} bytes, but {entry.filename} has {entry.size}: "
            "a truncated or different file"
        )
    if entry.sha256:
        digest = file_sha256(path)
        if not digest.startswith(entry.sha256):
            raise WeightsUnavailable(f"{path}: sha256 {digest} does not match {entry.filename}'s {entry.sha256}")


def config_key(entry: WeightsFile) -> str:
    """The config.yaml key that points this entry at a local file."""
    return "generator.weights" if entry.name == "stylegan2_ffhq256" else f"weights.files.{entry.name}"


def how_to_get(entry: WeightsFile, dest) -> str:
    where = f"download it from {entry.url}" if entry.url else "download it by hand"
    return (
        f"{entry.filename} ({entry.used_for}) is needed at {dest}: {where} and put it there, or point "
        f"`{config_key(entry)}` in config.yaml at your copy. Source: {entry.source}."
    )


def download(entry: WeightsFile, dest, timeout: float = 60.0) -> Path:
    """Fetch `entry` into `dest` (atomically) and verify it. Only the weights rule calls this."""
    dest = Path(dest)
    if entry.url is None:
        raise WeightsUnavailable(f"{entry.filename} cannot be downloaded automatically. " + how_to_get(entry, dest))
    log.info("downloading %s from %s", entry.filename, entry.url)
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout) as response, atomic_path(dest) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=entry.filename) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
            verify(entry, tmp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WeightsUnavailable(f"could not download {entry.filename} ({exc}). " + how_to_get(entry, dest)) from None
    log.info("wrote %s (sha256 %s)", dest, file_sha256(dest))
    return dest
