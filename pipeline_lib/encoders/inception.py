"""E_attr: torchvision's ImageNet InceptionV3, 2048-d pooled features of the reference face.

Weights are torchvision's port of Google's checkpoint, `inception_v3_google-0cc3c7bd.pth`, read
from a local file. Preprocessing, and why it is simply "resize to 299, keep [-1, 1]":
torchvision's recipe for these weights is ImageNet normalisation ((x - mean) / std on [0, 1]
pixels) followed by the model's `transform_input=True` (set by `inception_v3(weights=...)`),
which maps the normalised values back to (x - 0.5) / 0.5 per channel, because Google's network
was trained on [-1, 1] inputs. The two steps cancel exactly, so feeding the library's [-1, 1]
images with `transform_input=False` is the same computation without the round trip (the tests
check it against torchvision's own path). The image is resized, not centre-cropped as in
ImageNet evaluation (resize 342, crop 299): an aligned face must stay whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception_v3

from pipeline_lib.encoders.base import EmbeddingEncoder, freeze
from pipeline_lib.weights.checkpoints import check_state_dict, read_torch_state_dict

INPUT_SIZE = 299
FEATURE_DIM = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def inception_input(img: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] in [-1, 1] -> [N,3,299,299] in [-1, 1], bilinear (antialiased when shrinking,
    as torchvision's Resize does on tensors)."""
    if img.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return img
    return F.interpolate(img, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)


def build_inception() -> nn.Module:
    """Inception3 with the checkpoint's layout (auxiliary head included, so loading is strict)."""
    return inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)


class AttributeEncoder(EmbeddingEncoder):
    """E_attr: 2048-d average-pooled Mixed_7c features (the input of ImageNet's classifier)."""

    dim = FEATURE_DIM
    networks = ("net",)

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        net = build_inception() if net is None else net
        net.transform_input = False
        net.aux_logits, net.AuxLogits = False, None  # training-time head, never used
        net.fc = nn.Identity()  # forward then ends at avgpool -> dropout (off in eval) -> flatten
        self.net = net
        freeze(self)

    @classmethod
    def from_file(cls, path) -> AttributeEncoder:
        net = build_inception()
        net.load_state_dict(load_inception_state_dict(path, net), strict=True)
        return cls(net)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(inception_input(img))

    forward = embed


def load_inception_state_dict(path, net: nn.Module) -> dict:
    """Tensors only, checked against the architecture so a wrong file fails with its name."""
    expected = "torchvision's ImageNet InceptionV3 state_dict (`inception_v3_google-0cc3c7bd.pth`)"
    state = read_torch_state_dict(path, expected)
    check_state_dict(state, net, path, expected)
    return state
