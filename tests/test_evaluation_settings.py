"""The evaluation's fast-mode settings (config.yaml `evaluation.precision`, `compile`) and FID's
Inception fed by our batches: the same features as torch-fidelity's own loader gives."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from pipeline_lib.encoders.random_weights import random_weights_file
from pipeline_lib.evaluation.fid import inception_features
from pipeline_lib.evaluation.metrics import FID_FEATURE_DIM, FID_FEATURE_EXTRACTOR, _UInt8ImagesCHW
from pipeline_lib.settings import EvaluationSettings, check_all, load_config


def test_the_config_parses_and_a_cpu_runs_the_float32_reference():
    ev = EvaluationSettings.parse(load_config()["evaluation"])
    ev.validate()
    assert ev.precision == "float16" and ev.synthesis_on("cuda") == "float16"
    assert ev.synthesis_on("cpu") == "float32"


@pytest.mark.parametrize(
    "change, message",
    [({"precision": "float8"}, "evaluation.precision must be one of"), ({"batch_size": 0}, "at least 1")],
)
def test_a_wrong_setting_is_refused_before_any_job(change, message):
    config = load_config()
    config["evaluation"].update(change)
    with pytest.raises(ValueError, match=message):
        check_all(config)


def test_a_missing_key_is_refused():
    raw = dict(load_config()["evaluation"])
    raw.pop("compile")
    with pytest.raises(KeyError, match="compile"):
        EvaluationSettings.parse(raw)
    assert {f.name for f in dataclasses.fields(EvaluationSettings)} >= {"precision", "compile", "batch_size"}


def test_inception_features_equal_torch_fidelitys_loader_for_a_tensor_an_array_and_an_h5py_dataset(tmp_path):
    from torch_fidelity import utils

    weights = tmp_path / "fid_inception.pth"
    random_weights_file("fid_inception", weights, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    extractor = utils.create_feature_extractor(
        FID_FEATURE_EXTRACTOR, [str(FID_FEATURE_DIM)], cuda=False, feature_extractor_weights_path=str(weights),
        verbose=False,
    )  # fmt: skip
    theirs = utils.get_featuresdict_from_dataset(_UInt8ImagesCHW(images, 2), extractor, 2, False, True, False)
    theirs = theirs[str(FID_FEATURE_DIM)].double().numpy()
    with h5py.File(tmp_path / "faces.h5", "w") as f:
        f["images"] = images
    with h5py.File(tmp_path / "faces.h5", "r") as f:
        from_h5 = inception_features(f["images"], weights, batch_size=2)  # batches of 2, 2, 1: as theirs
    from_tensor = inception_features(torch.from_numpy(images), weights, batch_size=2)
    from_array = inception_features(images, weights, batch_size=2)
    assert theirs.shape == (5, FID_FEATURE_DIM) and np.abs(theirs).max() > 0
    for ours in (from_h5, from_tensor, from_array):
        np.testing.assert_array_equal(ours, theirs)
