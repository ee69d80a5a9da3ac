"""Loading official snapshots without NVIDIA code, refusing anything else, and exporting."""

import json
import os
import pickle

import pytest
import torch

from pipeline_lib import WeightsError, load_generator
from pipeline_lib.generator.loading import export_snapshot, infer_config, read_snapshot, sidecar_path
from pipeline_lib.generator.stylegan2 import Generator, GeneratorConfig

ATOL = 1e-4


@pytest.fixture(scope="module")
def official_pkl(fixture_dir):
    return fixture_dir / "generator_small_official_format.pkl"


def test_snapshot_tensors_are_bit_equal_to_the_state_dict(official_pkl, small_state_dict):
    state_dict, kwargs = read_snapshot(official_pkl)
    assert set(state_dict) == set(small_state_dict)
    for key, value in small_state_dict.items():
        assert torch.equal(state_dict[key], value), key
    assert kwargs["z_dim"] == 64 and kwargs["synthesis_kwargs"]["channel_base"] == 256


def test_snapshot_generator_reproduces_official_images(official_pkl, cases):
    G = load_generator(official_pkl)
    assert (G(cases["z"]) - cases["img"]).abs().max() < ATOL
    assert (G(cases["z"], truncation_psi=0.7) - cases["img_psi0.7"]).abs().max() < ATOL
    assert not any(p.requires_grad for p in G.parameters()) and not G.training


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({"G_ema": _RunsACommand(marker)}))
    with pytest.raises(WeightsError, match=r"refused global '(posix|os)\.system'") as err:
        load_generator(hostile)
    assert str(hostile) in str(err.value)
    assert not marker.exists()
    pickle.loads(hostile.read_bytes())  # the same bytes do run the command under plain pickle
    assert marker.exists()


def test_hostile_pickle_through_an_allowed_looking_module_is_refused(tmp_path):
    hostile = tmp_path / "eval.pkl"
    hostile.write_bytes(b"cbuiltins\neval\n(V__import__('os').getpid()\ntR.")
    with pytest.raises(WeightsError, match="refused global 'builtins.eval'"):
        load_generator(hostile)


def test_truncated_snapshot_names_the_file(official_pkl, tmp_path):
    cut = tmp_path / "truncated.pkl"
    cut.write_bytes(official_pkl.read_bytes()[:200_000])
    with pytest.raises(WeightsError, match="truncated.pkl"):
        load_generator(cut)


def test_snapshot_without_generator_is_explained(tmp_path):
    path = tmp_path / "not_a_snapshot.pkl"
    path.write_bytes(pickle.dumps({"training_set_kwargs": {}, "D": None}))
    with pytest.raises(WeightsError, match=r"with a 'G_ema' entry, found \['D', 'training_set_kwargs'\]"):
        load_generator(path)


def test_export_writes_plain_state_dict_and_kwargs(official_pkl, tmp_path, cases):
    out = tmp_path / "small.pt"
    export_snapshot(official_pkl, out)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["official_kwargs"]["synthesis_kwargs"]["channel_base"] == 256
    assert meta["official_kwargs"]["synthesis_kwargs"]["conv_clamp"] is None
    state = torch.load(out, weights_only=True)
    assert len(state) == 75 and all(isinstance(v, torch.Tensor) for v in state.values())
    G = load_generator(out)
    assert (G(cases["z"]) - cases["img"]).abs().max() < ATOL


def test_state_dict_without_sidecar_assumes_train_py_clamp(small_state_dict, tmp_path, caplog):
    path = tmp_path / "bare.pth"
    torch.save(small_state_dict, path)
    G = load_generator(path)
    assert G.cfg.conv_clamp == 256.0
    assert "no stored conv_clamp" in caplog.text


def test_wrong_shape_names_the_key(small_state_dict, tmp_path):
    bad = dict(small_state_dict)
    bad["synthesis.b8.conv1.bias"] = torch.zeros(7)
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    with pytest.raises(WeightsError, match=r"bad.pt.*synthesis.b8.conv1.bias: \(7,\) \(expected \(32,\)\)"):
        load_generator(path)


def test_non_generator_file_is_explained(tmp_path):
    path = tmp_path / "encoder.pt"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(WeightsError, match="encoder.pt: not a StyleGAN2 generator state_dict"):
        load_generator(path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="garbage.pt: cannot be read as .* not a readable"):
        load_generator(garbage)
    with pytest.raises(WeightsError, match="missing.pkl: file not found"):
        load_generator(tmp_path / "missing.pkl")


def test_stored_kwargs_that_contradict_the_weights_are_refused(small_state_dict, tmp_path):
    path = tmp_path / "liar.pt"
    torch.save(small_state_dict, path)
    sidecar_path(path).write_text(json.dumps({"official_kwargs": {"z_dim": 512, "w_dim": 64, "img_resolution": 32}}))
    with pytest.raises(WeightsError, match="stored z_dim=512 but the weights have z_dim=64"):
        load_generator(path)


def test_paper256_architecture_is_inferred_from_shapes(paper256_structure):
    shapes = {e["key"]: e["shape"] for e in paper256_structure["state_dict"]}
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    cfg = infer_config(meta, "paper256", paper256_structure["kwargs"])
    assert cfg == GeneratorConfig()  # our defaults are paper256
    assert cfg.conv_clamp == 256
    with torch.device("meta"):
        G = Generator(cfg)
    ours = {k: list(v.shape) for k, v in G.state_dict().items()}
    assert ours == shapes
    assert list(ours) == list(shapes)  # same order as the official state_dict
    n_params = sum(p.numel() for p in G.parameters())
    assert n_params == paper256_structure["param_count"] == 24_767_458


def test_export_command_line(official_pkl, tmp_path, capsys):
    from pipeline_lib.generator.loading import main

    main(["export", str(official_pkl), str(tmp_path / "g.pt")])
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "g.pt").exists() and (tmp_path / "g.json").exists()


def test_saving_the_same_generator_twice_gives_the_same_bytes(tmp_path):
    """A rerun must give the same bytes: torch names a saved archive's root after the file, so
    the atomic writer's random temporary name used to leak into the file."""
    from pipeline_lib.generator import save_generator
    from pipeline_lib.generator.stylegan2 import init_random_generator

    cfg = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=16, num_mapping_layers=2, channel_base=64, channel_max=8)
    G = init_random_generator(cfg, seed=0, w_avg_samples=10)
    save_generator(G, tmp_path / "a.pt")
    save_generator(G, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
