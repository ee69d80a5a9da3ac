"""Loading StyleGAN3 weights: the official-format pickles through the allow-list unpickler
(bit-equal to the npz, G_ema not G), hostile pickles refused, .pt + sidecar round trip."""

import os
import pickle

import pytest
import torch
from stylegan3_fixtures import fixture_file, generator, state_dict

from pipeline_lib.generator import load_generator
from pipeline_lib.generator.stylegan3_io import (
    WeightsError,
    infer_stylegan3_config,
    is_stylegan3_state,
    save_stylegan3,
)


@pytest.mark.parametrize("tag", ["t", "r"])
def test_pickle_loads_bit_equal_to_npz(tag):
    G = load_generator(fixture_file(f"generator_{tag}_small.pkl"))
    expected = state_dict(tag)
    assert list(G.state_dict()) == list(expected)
    for k, v in G.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert G.family == "stylegan3" and G.config_name == tag
    assert G.cfg == generator(tag).cfg  # stored kwargs and tensors agree


@pytest.mark.parametrize("tag", ["t", "r"])
def test_architecture_is_inferred_from_tensors_alone(tag):
    sd = state_dict(tag)
    assert is_stylegan3_state(sd)
    cfg = infer_stylegan3_config(sd, "x", {})
    ref = generator(tag).cfg
    assert (cfg.channel_base, cfg.channel_max, cfg.conv_kernel, cfg.use_radial_filters) == (
        ref.channel_base, ref.channel_max, ref.conv_kernel, ref.use_radial_filters
    )  # fmt: skip
    assert not is_stylegan3_state({"mapping.fc0.weight": 0, "synthesis.b4.const": 0})


class _Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_hostile_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Hostile()}))
    with pytest.raises(WeightsError, match=r"refused global '(posix|nt|os)\.system'"):
        load_generator(path)


def test_pt_round_trip(tmp_path):
    G = generator("r")
    save_stylegan3(G, tmp_path / "g.pt", {"source": "fixture"})
    again = load_generator(tmp_path / "g.pt")
    assert again.cfg == G.cfg
    for (k, a), b in zip(G.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(WeightsError, match="unknown weights format"):
        load_generator(tmp_path / "g.bin")
