"""`device: cuda` on a machine without CUDA: refused at the job (never at DAG time, since a SLURM
login node has no GPU) with the config key and the fix, before any GPU claim could wait."""

from __future__ import annotations

import pytest
import torch

from pipeline_lib import devices


def test_cuda_without_cuda_names_the_config_key_and_the_fix_before_claiming(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def no_claim(*args, **kwargs):
        raise AssertionError("claim_gpus ran before the CUDA check")

    monkeypatch.setattr(devices, "claim_gpus", no_claim)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(RuntimeError) as info:
            devices.resolve_device(name)
        message = str(info.value)
        assert f"config `device: {name}`" in message
        assert "`device: auto`" in message and "`device: cpu`" in message and "--config device=cpu" in message
    assert devices.resolve_device("auto") == torch.device("cpu")
