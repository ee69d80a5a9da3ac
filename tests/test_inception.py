"""E_attr (torchvision InceptionV3) plumbing, with random weights.

The ImageNet checkpoint cannot be downloaded here, so a state_dict saved from torchvision's own
`inception_v3` (random weights, the same layout as `inception_v3_google-0cc3c7bd.pth`) stands in:
it proves strict loading, the preprocessing equivalence with torchvision's recipe, shapes,
gradients and eval mode, not the quality of the features.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models import inception_v3

from pipeline_lib.encoders.inception import IMAGENET_MEAN, IMAGENET_STD, AttributeEncoder
from pipeline_lib.weights import WeightsError


@pytest.fixture(scope="module")
def torchvision_model():
    torch.manual_seed(0)
    model = inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    gen = torch.Generator().manual_seed(1)
    for name, buf in model.named_buffers():  # non-trivial BatchNorm statistics
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, torchvision_model):
    path = tmp_path_factory.mktemp("inception") / "inception_v3_google-0cc3c7bd.pth"
    torch.save(torchvision_model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def encoder(weights_file):
    return AttributeEncoder.from_file(weights_file)


@pytest.fixture(scope="module")
def faces():
    return torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 2 - 1


def test_features_equal_torchvisions_pretrained_recipe(encoder, torchvision_model, faces):
    """ImageNet normalisation + transform_input=True (what `inception_v3(weights=...)` runs)
    gives the same features as our [-1, 1] input with transform_input=False."""
    tv_state = torchvision_model.state_dict()
    for key, value in encoder.net.state_dict().items():  # every tensor arrived (strict load)
        assert torch.equal(value, tv_state[key]), key
    features = encoder.embed(faces)
    assert features.shape == (2, 2048)
    x01 = torch.nn.functional.interpolate((faces + 1) / 2, size=(299, 299), mode="bilinear", antialias=True)
    normalised = (x01 - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    pooled = {}
    hook = torchvision_model.avgpool.register_forward_hook(lambda m, i, o: pooled.update(x=o.flatten(1)))
    try:
        assert torchvision_model.transform_input is False
        torchvision_model.transform_input = True
        with torch.no_grad():
            torchvision_model(normalised)
    finally:
        torchvision_model.transform_input = False
        hook.remove()
    assert torch.allclose(features, pooled["x"], atol=1e-4, rtol=1e-4)


def test_eval_mode_and_batch_independence(encoder, faces):
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    both = encoder.embed(faces)
    assert torch.allclose(encoder.embed(faces[1:]), both[1:], atol=1e-4)
    assert torch.equal(both, encoder.embed(faces))  # dropout is off


def test_gradients_reach_pixels(encoder, faces):
    img = faces[:1].clone().requires_grad_(True)
    (encoder.embed(img) * torch.linspace(-1, 1, 2048)).sum().backward()
    assert img.grad is not None and img.grad.abs().gt(0).float().mean() > 0.9


def test_wrong_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth.*inception_v3_google"):
        AttributeEncoder.from_file(tmp_path / "nothing.pth")
    no_aux = tmp_path / "no_aux.pth"
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=False).state_dict(), no_aux)
    with pytest.raises(WeightsError, match=r"no_aux.pth: not torchvision's ImageNet InceptionV3.*AuxLogits"):
        AttributeEncoder.from_file(no_aux)
    other = tmp_path / "other_classes.pth"
    state = inception_v3(weights=None, aux_logits=True, init_weights=False, num_classes=10).state_dict()
    torch.save(state, other)
    with pytest.raises(WeightsError, match=r"other_classes.pth: 'AuxLogits.fc.weight' has shape \(10, 768\)"):
        AttributeEncoder.from_file(other)
