"""E_id (ArcFace IR-SE50) plumbing, with random weights.

No real `model_ir_se50.pth` is available offline, so these tests prove the layout (key names and
shapes of the upstream checkpoint, hence that the real file loads strictly), the preprocessing
window, normalisation, gradients, eval-mode behaviour and error messages; they cannot prove
that the embedding recognises anyone.
"""

from __future__ import annotations

import pytest
import torch

from pipeline_lib.encoders.arcface import IRSE50, IdentityEncoder, arcface_input
from pipeline_lib.weights import WeightsError

# Derived from TreB1eN's Backbone(50, 0.6, 'ir_se'): input layer 3*64*9 + BN 2*64 + PReLU 64;
# unit(i, d) = BN 2i + conv 9id + PReLU d + conv 9d^2 + BN 2d + SE 2*d*(d/16) [+ 1x1 conv id + BN 2d
# when i != d], over 3/4/14/3 units of 64/128/256/512 channels; output BN 1024 + Linear
# 25088*512 + 512 + BN1d 1024.  Total: 43,797,696.
EXPECTED_PARAMETERS = 43_797_696


def upstream_layout() -> dict[str, tuple]:
    """The checkpoint's key -> shape table, written from the upstream module tree."""
    keys: dict[str, tuple] = {}

    def bn(prefix, c):
        keys.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,)})
        keys.update({f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    keys["input_layer.0.weight"] = (64, 3, 3, 3)
    bn("input_layer.1", 64)
    keys["input_layer.2.weight"] = (64,)
    i = 0
    for cin, depth, count in ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)):
        for u in range(count):
            c = cin if u == 0 else depth
            p = f"body.{i}"
            if c != depth:
                keys[f"{p}.shortcut_layer.0.weight"] = (depth, c, 1, 1)
                bn(f"{p}.shortcut_layer.1", depth)
            bn(f"{p}.res_layer.0", c)
            keys[f"{p}.res_layer.1.weight"] = (depth, c, 3, 3)
            keys[f"{p}.res_layer.2.weight"] = (depth,)
            keys[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
            bn(f"{p}.res_layer.4", depth)
            keys[f"{p}.res_layer.5.fc1.weight"] = (depth // 16, depth, 1, 1)
            keys[f"{p}.res_layer.5.fc2.weight"] = (depth, depth // 16, 1, 1)
            i += 1
    bn("output_layer.0", 512)
    keys["output_layer.3.weight"] = (512, 25088)
    keys["output_layer.3.bias"] = (512,)
    bn("output_layer.4", 512)
    return keys


def random_state_dict(seed=0) -> dict:
    """Random weights and non-trivial BatchNorm statistics, so eval mode is observable."""
    gen = torch.Generator().manual_seed(seed)
    state = IRSE50().state_dict()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=gen)
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = 0.1 * torch.randn(value.shape, generator=gen)
        elif value.dim() == 1:  # BN scale, PReLU slope
            state[key] = 0.5 + 0.5 * torch.rand(value.shape, generator=gen)
        else:
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=gen) * (2.0 / fan_in) ** 0.5
    return state


@pytest.fixture(scope="module")
def reference():
    return random_state_dict()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, reference):
    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
    # Like the real file: a plain state_dict, saved before BatchNorm counted batches.
    torch.save({k: v for k, v in reference.items() if "num_batches_tracked" not in k}, path)
    return path


@pytest.fixture(scope="module")
def encoder(weights_file):
    return IdentityEncoder.from_file(weights_file)


@pytest.fixture(scope="module")
def faces():
    return torch.rand(3, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_layout_matches_upstream_checkpoint():
    own = {k: tuple(v.shape) for k, v in IRSE50().state_dict().items()}
    assert own == upstream_layout()
    assert sum(p.numel() for p in IRSE50().parameters()) == EXPECTED_PARAMETERS


def test_loads_strictly_and_is_frozen(encoder, reference):
    for key, value in encoder.net.state_dict().items():
        if "num_batches_tracked" not in key:
            assert torch.equal(value, reference[key]), key
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


def test_embedding_is_unit_norm_deterministic_and_batch_independent(encoder, faces):
    e = encoder.embed(faces)
    assert e.shape == (3, 512) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(e, encoder.embed(faces))
    single = torch.cat([encoder.embed(faces[i : i + 1]) for i in range(3)])
    assert torch.allclose(single, e, atol=1e-5)  # BatchNorm uses running statistics
    assert (e[0] @ e[1]).abs() < 0.999  # different images, different embeddings


def test_running_statistics_are_used(weights_file, faces):
    enc = IdentityEncoder.from_file(weights_file)
    before = enc.embed(faces[:1])
    enc.net.output_layer[4].running_mean += 1.0
    assert not torch.allclose(before, enc.embed(faces[:1]))


def test_gradients_reach_exactly_the_crop_window(encoder, faces):
    img = faces[:1].clone().requires_grad_(True)
    (encoder.embed(img) @ torch.linspace(-1, 1, 512)).sum().backward()
    grad = img.grad.abs().sum(dim=(0, 1))
    assert grad[35:223, 32:220].gt(0).float().mean() > 0.99
    inside = torch.zeros_like(grad, dtype=torch.bool)
    inside[35:223, 32:220] = True
    assert grad[~inside].eq(0).all()


def test_preprocessing_window():
    img = torch.zeros(1, 3, 256, 256)
    img[:, :, 35:223, 32:220] = 1.0
    assert arcface_input(img).shape == (1, 3, 112, 112) and arcface_input(img).eq(1).all()
    big = torch.nn.functional.interpolate(img, scale_factor=2, mode="nearest")
    assert torch.allclose(arcface_input(big), arcface_input(img))


def test_wrong_files_are_named(tmp_path, reference):
    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match="absent.pth.*model_ir_se50"):
        IdentityEncoder.from_file(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth"):
        IdentityEncoder.from_file(garbage)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    with pytest.raises(WeightsError, match=r"resnet.pth: not an ArcFace IR-SE50.*missing keys"):
        IdentityEncoder.from_file(other)
    reshaped = dict(reference)
    reshaped["output_layer.3.weight"] = torch.zeros(512, 512)
    bad = tmp_path / "bad_shape.pth"
    torch.save(reshaped, bad)
    with pytest.raises(WeightsError, match=r"bad_shape.pth: 'output_layer.3.weight' has shape \(512, 512\)"):
        IdentityEncoder.from_file(bad)
