"""M_ref with NaN or infinite parameters is never saved and never loaded."""

from __future__ import annotations

import pytest
import torch

from pipeline_lib.mref import ReferenceMapper, load_mapper, save_mapper


def small_mapper():
    torch.manual_seed(0)
    return ReferenceMapper(8, 6, hidden=(5,))


def test_a_finite_mapper_round_trips(tmp_path):
    model = small_mapper()
    save_mapper(tmp_path / "mref.pt", model, {"lr": 1e-3})
    loaded, meta = load_mapper(tmp_path / "mref.pt")
    assert meta == {"lr": 1e-3}
    assert torch.equal(loaded.body[0].weight, model.body[0].weight)


def test_save_refuses_non_finite_parameters_and_writes_nothing(tmp_path):
    model = small_mapper()
    with torch.no_grad():
        model.body[0].weight[0, :3] = float("nan")
        model.head.bias[1] = float("inf")
    path = tmp_path / "models" / "mref.pt"
    with pytest.raises(ValueError) as err:
        save_mapper(path, model, {})
    msg = str(err.value)
    assert str(path) in msg and "4 non-finite (NaN or infinite) parameter values" in msg
    assert "body.0.weight" in msg and "head.bias" in msg and "not written" in msg
    assert not path.exists() and not path.parent.exists()  # refused before anything was made


def test_load_refuses_non_finite_parameters(tmp_path):
    model = small_mapper()
    path = tmp_path / "mref.pt"
    save_mapper(path, model, {})
    record = torch.load(path, weights_only=True)
    record["state_dict"]["head.weight"][0, 0] = float("-inf")
    torch.save(record, path)
    with pytest.raises(
        ValueError, match=r"mref.pt: M_ref has 1 non-finite .* \(in head.weight\); delete it and retrain"
    ):
        load_mapper(path)
