"""The whole workflow on a tiny random StyleGAN3-T (`.test/tiny_sg3.yaml`): every stage runs on
the second family, the equivariance stage joins the DAG, and a rerun has nothing to do."""

from __future__ import annotations

import csv
import json
import math

import h5py
import yaml
from test_workflow import REPO, job_counts, snakemake, write_config

TINY_SG3 = yaml.safe_load((REPO / ".test" / "tiny_sg3.yaml").read_text())


def tiny_generator():
    from pipeline_lib.settings import RandomStyleGAN3Settings

    return RandomStyleGAN3Settings.parse(TINY_SG3["generator"]["random_init"]).stylegan3_config()


def test_equivariance_stage_is_in_the_dag_only_for_stylegan3(tmp_path):
    sg2 = snakemake("-n", "--forceall", "--profile", REPO / "profiles" / "demo", "--directory", REPO)
    assert "equivariance" not in job_counts(sg2.stdout + sg2.stderr)
    sg3 = snakemake("-n", "--forceall", "--profile", REPO / "profiles" / "demo-sg3", "--directory", REPO)
    assert job_counts(sg3.stdout + sg3.stderr)["equivariance"] == 1


def test_a_random_init_of_the_other_family_is_refused(tmp_path):
    wrong = json.loads(json.dumps(TINY_SG3))
    wrong["generator"]["family"] = "stylegan2"
    proc = snakemake(
        "-n", "--directory", tmp_path, "--configfile", write_config(tmp_path / "w.yaml", wrong), check=False
    )
    assert proc.returncode != 0 and "generator.family is stylegan2" in proc.stdout + proc.stderr


def test_tiny_stylegan3_pipeline_end_to_end(tmp_path):
    from pipeline_lib.generator.stylegan3_layers import build_stylegan3_layer_table

    table_rows = build_stylegan3_layer_table(tiny_generator())
    style_dim = sum(r.style_dim for r in table_rows if r.kind == "conv")
    # One variant and one ablation range: what differs between variants or ranges is family-agnostic
    # code, which the StyleGAN2 workflow test and the training tests run; here each stage runs once.
    small = json.loads(json.dumps(TINY_SG3))
    small["training"]["variants"]["concat"] = None
    small["ablation"]["configs"]["config1"] = None
    cfg = write_config(tmp_path / "tiny_sg3.yaml", small)
    # The paper's DAG and the equivariance stage; the W&T stages are family-agnostic code that
    # the StyleGAN2 workflow test runs (the SG3 demo runs them too), so this test stays short.
    targets = ["results/report/tables.md", "results/equivariance/metrics.json"]
    snakemake(
        *targets, "--cores", 2, "--directory", tmp_path, "--configfile", cfg
    )  # targets first: --configfile takes many
    res = tmp_path / "results"

    metrics = json.loads((res / "equivariance" / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"eqt_int", "eqt_frac", "eqr"} and metrics["family"] == "stylegan3"
    for value in metrics["metrics"].values():
        assert math.isfinite(value["psnr_db"]) and value["num_samples"] == 8
    assert (res / "equivariance" / "figure.png").stat().st_size > 10_000
    assert (
        json.loads((res / "equivariance" / "provenance.json").read_text())["params"]["equivariance"]["num_samples"] == 8
    )

    with open(res / "generative_fields" / "table.csv", newline="") as fh:
        fields = list(csv.DictReader(fh))
    assert [r["layer"] for r in fields] == [f"conv{i}" for i in range(14)]
    assert fields[0]["nvidia_name"].startswith("L0_") and all(int(r["gf_measured"]) > 0 for r in fields)
    assert all(int(r["gf_measured"]) <= int(r["gf_analytic"]) for r in fields)

    with h5py.File(res / "dataset" / "faces.h5", "r") as f:
        assert f["images"].shape == (12, 64, 64, 3) and f["styles"].shape == (12, style_dim)
        layers = json.loads(f.attrs["layer_table"]) if "layer_table" in f.attrs else None
        if layers is not None:
            assert [r["paper_name"] for r in layers if r["kind"] == "conv"] == [f"conv{i}" for i in range(14)]
    with h5py.File(res / "dataset" / "annotations.h5", "r") as f:
        assert f["landmarks/fan"].shape == (12, 68, 3)
    ablation = json.loads((res / "ablation" / "config4" / "metrics.json").read_text())
    assert ablation["layers"] == ["conv3", "conv6"]
    assert (res / "analysis" / "reuse.csv").read_text().startswith("s_column")
    assert "Table 3" in (res / "report" / "tables.md").read_text()

    again = snakemake(*targets, "-n", "--directory", tmp_path, "--configfile", cfg)
    assert "Nothing to be done" in again.stdout + again.stderr
