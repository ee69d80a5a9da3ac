"""config.yaml: every number finite and bounded, and a real results folder, refused before any job."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipeline_lib.config_checks import check_finite

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def errors(cfg) -> list[str]:
    return [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(cfg)]


def with_value(config, keys: str, value):
    cfg = copy.deepcopy(config)
    *parents, last = keys.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    node[last] = value
    return cfg


def test_the_shipped_config_passes(config):
    assert errors(config) == []
    check_finite(config)


def test_yaml_nan_and_inf_are_floats_that_the_schema_alone_would_pass(config):
    cfg = with_value(config, "dataset.truncation_psi", yaml.safe_load("x: .nan")["x"])
    assert math.isnan(cfg["dataset"]["truncation_psi"])
    assert errors(cfg) == []  # nan passes minimum and maximum: hence check_finite
    with pytest.raises(ValueError, match=r"found dataset\.truncation_psi = nan"):
        check_finite(cfg)


@pytest.mark.parametrize(
    "keys, value",
    [("training.lr", float("nan")), ("training.lambda_id", float("inf")), ("sparsity.threshold", float("-inf"))],
)
def test_check_finite_names_the_key_path(config, keys, value):
    with pytest.raises(ValueError, match="every number must be finite; found " + re.escape(keys) + " = "):
        check_finite(with_value(config, keys, value))


def test_check_finite_walks_lists_and_variants(config):
    cfg = with_value(config, "training.betas", [0.9, float("nan")])
    cfg["training"]["variants"]["mine"] = {"input_features": "attribute", "lr": float("inf")}
    with pytest.raises(ValueError) as err:
        check_finite(cfg)
    assert "training.betas[1] = nan" in str(err.value) and "training.variants.mine.lr = inf" in str(err.value)


@pytest.mark.parametrize(
    "keys, value",
    [
        ("training.lr", float("inf")),
        ("training.lr", 2.0),
        ("dataset.truncation_psi", 2.5),
        ("dataset.truncation_psi", -0.1),
        ("dataset.seed", 2**63),
        ("training.seed", -1),
        ("dataset.num_identity", 10**9 + 1),
        ("training.lambda_attr", float("inf")),
        ("results", ""),
        ("results", "/"),
        ("results", "//"),
    ],
)
def test_the_schema_bounds_every_number_and_the_results_folder(config, keys, value):
    assert errors(with_value(config, keys, value)), f"{keys} = {value!r} was accepted"


def test_in_bound_values_stay_valid(config):
    for keys, value in [("dataset.truncation_psi", 0.7), ("dataset.seed", 2**63 - 1), ("results", "/scratch/me/gf")]:
        assert errors(with_value(config, keys, value)) == [], (keys, value)
