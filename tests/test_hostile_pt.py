"""A .pt file that pickles anything but tensors is refused in our words: for safety, naming the
file and the expected format, never repeating torch's advice to load with weights_only=False."""

from __future__ import annotations

import pytest
import torch

from pipeline_lib.generator.loading import WeightsError
from pipeline_lib.mref import ReferenceMapper, load_mapper
from pipeline_lib.weights.checkpoints import load_tensors_only, read_torch_state_dict

RAN = []


class Payload:
    """What an attacker would ship: unpickling it calls a function of their choice."""

    def __reduce__(self):
        return (RAN.append, ("the file's code ran",))


def hostile(path):
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": Payload()}, path)
    return path


def check_refusal(message: str, path, expected: str):
    assert str(path) in message and "refused for safety" in message
    assert "holds objects other than tensors" in message and expected in message
    assert "a file of tensors only, as written by torch.save(model.state_dict())" in message
    assert "weights_only" not in message and "trust" not in message
    assert RAN == []


def test_read_torch_state_dict_refuses_a_pickled_class(tmp_path):
    path = hostile(tmp_path / "arcface.pth")
    with pytest.raises(WeightsError) as err:
        read_torch_state_dict(path, "the ArcFace IR-SE50 state dict")
    check_refusal(str(err.value), path, "the ArcFace IR-SE50 state dict")
    assert "(e.g. getattr)" in str(err.value)  # the first global the file asked for


def test_load_mapper_refuses_a_pickled_class(tmp_path):
    path = hostile(tmp_path / "mref.pt")
    with pytest.raises(WeightsError) as err:
        load_mapper(path)
    check_refusal(str(err.value), path, "an M_ref file written by genfields")


def test_a_truncated_file_is_not_called_hostile(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(ReferenceMapper(4, 3, hidden=(2,)).state_dict(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(WeightsError, match=r"cut.pt: cannot be read as a state dict \(truncated or corrupt\?\)") as err:
        load_tensors_only(cut, "a state dict")
    assert "weights_only" not in str(err.value) and "refused" not in str(err.value)
    assert set(load_tensors_only(good, "a state dict")) == {"body.0.weight", "body.0.bias", "head.weight", "head.bias"}
