"""Per-image losses for the projector: each returns one value per image, [N], so that a batch
is the sum of independent problems (summing, not averaging, keeps every image's gradient the
same as in a batch of one)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline_lib.weights.checkpoints import load_tensors_only

VGG16_FEATURE_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # indices in vgg16.features


class PixelLoss:
    """Mean squared error per image (images in [-1, 1]) plus `msssim_weight` x (1 - MS-SSIM).

    MS-SSIM (five scales, standard weights) shrinks its Gaussian window on small images and
    falls back to single-scale SSIM below 49 pixels, so it also runs on tiny test generators.
    """

    def __init__(self, msssim_weight: float = 0.0, win_size: int = 11):
        self.msssim_weight = float(msssim_weight)
        self.win_size = win_size

    def __call__(self, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = (img - target).square().flatten(1).mean(1)
        if self.msssim_weight:
            loss = loss + self.msssim_weight * (1 - self.msssim(img, target))
        return loss

    def msssim(self, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from pytorch_msssim import ms_ssim, ssim

        side = min(img.shape[-2:])
        x, y = (img + 1) / 2, (target + 1) / 2
        win = self.win_size
        while win > 3 and (win - 1) * 16 >= side:  # pytorch_msssim needs side > 16 (win - 1)
            win -= 2
        if (win - 1) * 16 < side:
            return ms_ssim(x, y, data_range=1.0, size_average=False, win_size=win)
        win = min(self.win_size, side if side % 2 else side - 1)
        return ssim(x, y, data_range=1.0, size_average=False, win_size=win)  # too small for 5 scales


def load_vgg16_features(net: torch.nn.Module, vgg16_path) -> None:
    """Copy torchvision vgg16 `features.<i>.weight/bias` from a local state dict into lpips's
    backbone, whose slices keep the torchvision indices as module names (slice2.5 = features.5)."""
    path = Path(vgg16_path)
    if not path.is_file():
        raise FileNotFoundError(f"no VGG16 state dict at {path} (torchvision's vgg16 weights; nothing is downloaded)")
    state = load_tensors_only(path, "torchvision's vgg16 state dict")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    loaded = set()
    with torch.no_grad():
        for slice_name, block in net.named_children():
            for idx, module in block.named_children():
                if not isinstance(module, torch.nn.Conv2d):
                    continue
                for part in ("weight", "bias"):
                    key = f"features.{idx}.{part}"
                    if key not in state:
                        raise KeyError(f"{path} lacks {key}: not a torchvision vgg16 state dict")
                    getattr(module, part).copy_(state[key])
                loaded.add(int(idx))
    if loaded != set(VGG16_FEATURE_CONVS):
        raise ValueError(f"loaded VGG16 convs {sorted(loaded)}, expected {list(VGG16_FEATURE_CONVS)}")


class LpipsLoss(torch.nn.Module):
    """LPIPS (VGG16, v0.1) per image, as NVIDIA's projector uses a VGG16 LPIPS.

    The linear calibration layers ship inside the `lpips` package; the VGG16 backbone is read
    from `vgg16_path` (torchvision's `vgg16` state dict), never downloaded. Images larger than
    `resolution` are area-downsampled to it first, as NVIDIA's projector does for 256.
    """

    def __init__(self, vgg16_path, resolution: int = 256):
        super().__init__()
        import warnings

        import lpips

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        load_vgg16_features(self.model.net, vgg16_path)
        self.model.eval().requires_grad_(False)
        self.resolution = int(resolution)

    def _resized(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-1] > self.resolution:
            return F.interpolate(img, size=(self.resolution, self.resolution), mode="area")
        return img

    def forward(self, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.model(self._resized(img), self._resized(target), normalize=False).flatten()

    # The same distance in two halves, for the fast projector: the target never changes during a
    # projection, so its VGG16 features are computed once (`target_features`) instead of at every
    # step, which saves one of the three VGG16 passes of a step. `distance(img, target_features(t))`
    # equals `forward(img, t)` (tests/test_projection_objective.py).

    def _normalised_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """lpips's per-slice VGG16 activations, each normalised over channels (v0.1 input scaling).
        The slices run one by one: lpips's own `net.forward` builds a namedtuple class per call,
        which torch.compile cannot trace."""
        from lpips import normalize_tensor

        net = self.model.net
        h, feats = self.model.scaling_layer(self._resized(x)), []
        for k in range(1, net.N_slices + 1):
            h = getattr(net, f"slice{k}")(h)
            feats.append(normalize_tensor(h))
        return feats

    @torch.no_grad()
    def target_features(self, target: torch.Tensor) -> list[torch.Tensor]:
        return self._normalised_features(target)

    def distance(self, img: torch.Tensor, target_features: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS per image [N] of `img` against targets given by their `target_features`; float32
        also under autocast (each layer's calibrated map is averaged in float32)."""
        total = 0
        for lin, f0, f1 in zip(self.model.lins, self._normalised_features(img), target_features, strict=True):
            total = total + lin((f0 - f1) ** 2).float().mean(dim=(2, 3), keepdim=True)
        return total.flatten()


def make_image_loss(name: str, msssim_weight: float = 0.0, vgg16_path=None, device="cpu"):
    """ "pixel" (L2 + optional MS-SSIM) or "lpips" (needs `vgg16_path`)."""
    if name == "pixel":
        return PixelLoss(msssim_weight)
    if name == "lpips":
        if vgg16_path is None:
            raise ValueError("the lpips loss needs vgg16_path: a local torchvision vgg16 state dict")
        return LpipsLoss(vgg16_path).to(device)
    raise ValueError(f"image loss must be 'pixel' or 'lpips', got {name!r}")
