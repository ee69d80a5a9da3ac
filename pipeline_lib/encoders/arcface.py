"""E_id: the ArcFace IR-SE50 identity embedding used by pSp/e4e's identity loss.

The network is TreB1eN/InsightFace_Pytorch's `Backbone(50, 0.6, 'ir_se')`, re-written here with
the same module tree, so that the widely shared `model_ir_se50.pth` loads with strict key
matching. Preprocessing is the one pSp and e4e apply to their 256x256 FFHQ-aligned images:
crop rows 35:223 and columns 32:220 (188x188, the inner face), adaptive-average-pool to 112x112,
and feed the [-1, 1] pixels unchanged (TreB1eN normalises (x - 0.5) / 0.5, which is that range).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.encoders.base import EmbeddingEncoder, freeze
from pipeline_lib.weights.checkpoints import check_state_dict, read_torch_state_dict

# pSp/e4e `IDLoss.extract_feats` on 256x256 images: x[:, :, 35:223, 32:220], then 112x112.
REFERENCE_SIZE = 256
CROP_ROWS = (35, 223)
CROP_COLS = (32, 220)
INPUT_SIZE = 112
EMBEDDING_DIM = 512

# (in_channels, depth, units) per stage of the 50-layer body; each stage's first unit has stride 2.
IR50_STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))


class SqueezeExcite(nn.Module):
    """Channel gating; `fc1`/`fc2` are 1x1 convs without bias, as in the checkpoint."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * gate


class IRSEUnit(nn.Module):
    """Pre-activation residual unit (BN-conv-PReLU-conv-BN-SE) with an identity or 1x1 shortcut.

    An identity shortcut with stride 2 is a stride-2 subsampling, upstream's `MaxPool2d(1, 2)`.
    """

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SqueezeExcite(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE50(nn.Module):
    """112x112 RGB in [-1, 1] -> 512-d embedding (before normalisation); upstream's key names."""

    def __init__(self, drop_ratio: float = 0.6):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units = []
        for in_channels, depth, count in IR50_STAGES:
            units.append(IRSEUnit(in_channels, depth, 2))
            units.extend(IRSEUnit(depth, depth, 1) for _ in range(count - 1))
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, EMBEDDING_DIM),
            nn.BatchNorm1d(EMBEDDING_DIM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


def arcface_input(img: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] aligned faces in [-1, 1] -> [N,3,112,112] network input, as pSp/e4e prepare it.

    Other sizes are first average-pooled to 256x256 (what e4e's ID loss does for larger images),
    because the crop indices are only meaningful in the 256x256 frame.
    """
    if img.shape[-2:] != (REFERENCE_SIZE, REFERENCE_SIZE):
        img = F.adaptive_avg_pool2d(img, REFERENCE_SIZE)
    face = img[:, :, CROP_ROWS[0] : CROP_ROWS[1], CROP_COLS[0] : CROP_COLS[1]]
    return F.adaptive_avg_pool2d(face, INPUT_SIZE)


class IdentityEncoder(EmbeddingEncoder):
    """E_id: unit-norm 512-d ArcFace embedding; cosine similarity of two embeddings = identity match."""

    dim = EMBEDDING_DIM
    networks = ("net",)

    def __init__(self, net: IRSE50 | None = None):
        super().__init__()
        self.net = IRSE50() if net is None else net
        freeze(self)

    @classmethod
    def from_file(cls, path) -> IdentityEncoder:
        net = IRSE50()
        net.load_state_dict(load_ir_se50_state_dict(path, net), strict=True)
        return cls(net)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(arcface_input(img)), dim=1)

    forward = embed


def load_ir_se50_state_dict(path, net: IRSE50) -> dict:
    """`model_ir_se50.pth`'s tensors, checked against the architecture."""
    expected = "an ArcFace IR-SE50 state_dict (TreB1eN/InsightFace_Pytorch `model_ir_se50.pth`)"
    state = read_torch_state_dict(path, expected)
    check_state_dict(state, net, path, expected)
    return state
