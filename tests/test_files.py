"""A full disk, a corrupt JSON sidecar and a truncated HDF5 file are reported by file name,
with the fix, and a full disk never leaves a complete-looking target."""

from __future__ import annotations

import errno

import h5py
import numpy as np
import pytest
import torch

from pipeline_lib.atomic import NoSpaceError, atomic_path
from pipeline_lib.files import CorruptFileError, open_h5, read_json_sidecar


def test_enospc_names_the_target_and_leaves_nothing(tmp_path):
    target = tmp_path / "shards" / "shard_000.h5"
    with (
        pytest.raises(NoSpaceError, match=rf"no space left on device while writing {target}") as err,
        atomic_path(target) as tmp,
    ):
        tmp.write_bytes(b"half a shard")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert list(target.parent.iterdir()) == []  # neither the target nor its temporary file


def test_torch_saves_unexpected_pos_is_a_full_disk(tmp_path, monkeypatch):
    def full_disk_save(obj, f, *args, **kwargs):
        f.write_bytes(b"PK\x03\x04 partial zip")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: unexpected pos 64 vs 0"
        )

    monkeypatch.setattr(torch, "save", full_disk_save)
    target = tmp_path / "mref.pt"
    with (
        pytest.raises(NoSpaceError, match="no space left on device while writing .*mref.pt"),
        atomic_path(target) as tmp,
    ):
        torch.save({"w": torch.zeros(3)}, tmp)
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(OSError) as err, atomic_path(tmp_path / "x.bin"):
        raise OSError(errno.EACCES, "Permission denied")
    assert not isinstance(err.value, NoSpaceError)
    with pytest.raises(RuntimeError, match="something else"), atomic_path(tmp_path / "y.bin"):
        raise RuntimeError("something else")
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_json_sidecar_names_the_file_position_and_fix(tmp_path):
    side = tmp_path / "tiny.json"
    side.write_text('{"official_kwargs": {"z_dim": 512,}\n')
    with pytest.raises(CorruptFileError) as err:
        read_json_sidecar(side, "the generator's kwargs sidecar", "download_weights")
    msg = str(err.value)
    assert f"file {side} (the generator's kwargs sidecar) is not valid JSON (line 1, column 35" in msg
    assert msg.endswith("delete it and rerun rule download_weights (`snakemake --forcerun download_weights`)")
    side.write_text('{"a": 1}')
    assert read_json_sidecar(side, "x") == {"a": 1}


def test_a_truncated_h5_names_the_file_and_fix(tmp_path):
    good = tmp_path / "shard.h5"
    with h5py.File(good, "w") as f:
        f["images"] = np.zeros((4, 8, 8, 3), np.uint8)
    with open_h5(good, "a dataset shard") as f:
        assert f["images"].shape == (4, 8, 8, 3)
    bad = tmp_path / "cut.h5"
    bad.write_bytes(good.read_bytes()[:700])
    with pytest.raises(CorruptFileError, match=rf"file {bad} \(a dataset shard\) is not a readable HDF5 file"):
        open_h5(bad, "a dataset shard", "synthesize_shard")
    with pytest.raises(CorruptFileError, match="delete it and rerun rule synthesize_shard"):
        open_h5(bad, "a dataset shard", "synthesize_shard")
    with pytest.raises(FileNotFoundError, match="does not exist: run `snakemake"):
        open_h5(tmp_path / "none.h5", "a dataset shard")
