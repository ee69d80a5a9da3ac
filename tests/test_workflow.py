"""The Snakemake workflow itself: lint, formatting, config validation, and a tiny end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

TINY = yaml.safe_load((REPO / ".test" / "tiny.yaml").read_text())


STYLE_DIM = 8 * 13  # channel_max 8 at every conv layer


def snakemake(*args, cwd=REPO, check=True):
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *map(str, args)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake {' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def job_counts(dry_run_output: str) -> dict:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    return {name: int(count) for name, count in rows}


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_lint_is_clean():
    proc = snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    proc = subprocess.run([str(BIN / "snakefmt"), "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unknown_config_key_fails_before_any_job_naming_the_key(tmp_path):
    proc = snakemake("-n", "--directory", tmp_path, "--config", "lamda_id=1", check=False)
    assert proc.returncode != 0
    assert "lamda_id" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_wrong_type_fails_naming_the_value(tmp_path):
    bad = json.loads(json.dumps(TINY))
    bad["generative_fields"]["seed"] = "zero"
    cfg = write_config(tmp_path / "bad.yaml", bad)
    proc = snakemake("-n", "--directory", tmp_path, "--configfile", cfg, check=False)
    assert proc.returncode != 0
    assert "'zero' is not of type 'integer'" in proc.stdout + proc.stderr


def test_pretrained_files_come_from_the_download_rule_or_are_explained(tmp_path):
    proc = snakemake("-n", "--directory", tmp_path)
    assert "download_weights" in proc.stdout and "resources/weights/ffhq70k-paper256-ada.pkl" in proc.stdout

    cfg = write_config(tmp_path / "mine.yaml", {"generator": {"weights": "/data/mine/G.pkl"}})
    proc = snakemake("-n", "--directory", tmp_path, "--configfile", cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Missing pretrained file /data/mine/G.pkl" in out
    assert "ffhq70k-paper256-ada.pkl" in out and "nvlabs-fi-cdn.nvidia.com" in out

    cfg = write_config(tmp_path / "typo.yaml", {"weights": {"dir": "w", "files": {"arcfce": "x.pth"}}})
    proc = snakemake("-n", "--directory", tmp_path, "--configfile", cfg, check=False)
    assert proc.returncode != 0 and "['arcfce'], which are not in the registry" in proc.stdout + proc.stderr


def test_real_faces_stage_appears_only_with_a_source(tmp_path):
    faces = tmp_path / "ffhq"
    faces.mkdir()
    cfg = write_config(tmp_path / "ffhq.yaml", {**TINY, "ffhq": {"source": str(faces)}})
    proc = snakemake("-n", "--directory", tmp_path, "--configfile", cfg)
    assert "prepare_ffhq" in proc.stdout and "results/ffhq/ffhq256.h5" in proc.stdout
    proc = snakemake("-n", "--directory", tmp_path, "--configfile", write_config(tmp_path / "t.yaml", TINY))
    assert "prepare_ffhq" not in proc.stdout


def test_demo_profile_dry_run_lists_the_dag():
    proc = snakemake("-n", "--forceall", "--profile", REPO / "profiles" / "demo", "--directory", REPO)
    assert "generative_fields" in proc.stdout and "random_generator" in proc.stdout


def test_tiny_pipeline_end_to_end_and_rerun_triggers(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml", TINY)
    # an interrupted run that finished one shard: the rerun makes only the missing one
    snakemake("results/dataset/shards/0.h5", "--cores", 2, "--directory", tmp_path, "--configfile", cfg)
    proc = snakemake("-n", "--directory", tmp_path, "--configfile", cfg)
    plan = job_counts(proc.stdout + proc.stderr)
    assert plan == {
        "random_weights": 8,
        "generative_fields": 1,
        "synthesize_shard": 1,
        "merge_dataset": 1,
        "annotate_dataset": 1,
        "style_statistics": 1,
        "train_mref": 2,
        "evaluate_variant": 2,
        "ablation": 2,
        "sparsity": 1,
        "face_size": 1,
        "real_features": 1,
        "report_tables": 1,
        "latent_model": 1,
        "project_faces": 3,
        "latent_evaluation": 1,
        "sampling_comparison": 1,
        "edit_real_faces": 1,
        "latent_report": 1,
        "all": 1,
    }
    assert "results/dataset/shards/1.h5" in proc.stdout

    snakemake("--cores", 2, "--directory", tmp_path, "--configfile", cfg)
    out = tmp_path / "results" / "generative_fields"
    table = (out / "table.csv").read_text().splitlines()
    assert table[0].startswith("layer,ada_name,stylespace") and len(table) == 1 + 13
    assert (out / "figure.png").stat().st_size > 10_000
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["params"] == {"seed": 0, "measure": True}
    assert len(prov["inputs"]["generator"]["sha256"]) == 64
    assert (tmp_path / "results" / "logs" / "generative_fields.log").read_text().count("Eq.1") == 13
    assert (tmp_path / "results" / "benchmarks" / "generative_fields.tsv").exists()
    with h5py.File(tmp_path / "results" / "dataset" / "faces.h5", "r") as f:
        assert f["images"].shape == (12, 256, 256, 3) and f["styles"].shape == (12, STYLE_DIM)
        assert len(f["split/identity"]) == 9 and len(f["split/attribute"]) == 3
    with h5py.File(tmp_path / "results" / "dataset" / "style_stats.h5", "r") as f:
        assert f["S/std"].shape == (STYLE_DIM,) and f["V/covariance"].shape == (16, 16)
    with h5py.File(tmp_path / "results" / "dataset" / "annotations.h5", "r") as f:
        assert f["landmarks/3ddfa_mb05"].shape == (12, 68, 3) and f["pose/fan"].shape == (12, 3)
        assert f["identity"].shape == (12, 512) and f["attribute"].shape == (12, 2048)
        assert np.isfinite(f["landmarks/fan"][()]).all() and np.allclose(np.linalg.norm(f["identity"][()], axis=1), 1)
        assert f.attrs["landmarks_eval"] == "fan" and "arcface_ir_se50" in f.attrs["weights_sha256"]
    assert "wrote results/dataset/shards/1.h5" in (tmp_path / "results/logs/synthesize_shard/1.log").read_text()
    # training, evaluation, ablation, sparsity and the report
    res = tmp_path / "results"
    for variant in ("concat", "euler"):
        assert (res / "models" / variant / "mref.pt").exists()
        metrics = json.loads((res / "eval" / variant / "metrics.json").read_text())
        assert metrics["num_pairs"] == 4 and metrics["identity"]["n"] == 4 and metrics["fid"]["num_a"] == 4
        assert set(metrics["expression"]) == {"train", "eval"} and metrics["attribute_source"].startswith("generated")
    ablation = json.loads((res / "ablation" / "config4" / "metrics.json").read_text())
    assert ablation["layers"] == ["conv3", "conv6"] and ablation["num_pairs"] == 3
    assert ablation["generative_field_range"] == [187, 59]
    assert (res / "analysis" / "reuse.csv").read_text().startswith("s_column")
    tables = (res / "report" / "tables.md").read_text()
    assert "Table 1" in tables and "Table 3" in tables and "4.89" in tables
    # every job wrote one provenance record beside its main target
    made = ["dataset/shards/0.h5", "dataset/faces.h5", "dataset/style_stats.h5", "dataset/annotations.h5",
            "models/euler/mref.pt", "eval/euler/metrics.json", "ablation/config4/metrics.json",
            "analysis/histogram.csv", "analysis/face_size.json", "report/tables.md"]  # fmt: skip
    for target in made:
        record = json.loads((res / f"{target}.provenance.json").read_text())
        assert {"params", "inputs", "derived", "code_version", "versions"} <= set(record), target
    shard = json.loads((res / "dataset/shards/0.h5.provenance.json").read_text())
    with h5py.File(res / "dataset" / "shards" / "0.h5", "r") as f:
        assert shard["derived"]["dataset_id"] == f.attrs["dataset_id"]
    assert len(json.loads((res / "models/euler/mref.pt.provenance.json").read_text())["derived"]["fingerprint"]) == 64

    # issue 15: Wulff & Torralba's stages
    latent = json.loads((res / "latent" / "gaussianity.json").read_text())
    assert (
        latent["num_samples"] == 2000
        and latent["summary"]["v"]["mean_abs_skew"] < latent["summary"]["w"]["mean_abs_skew"]
    )
    with h5py.File(res / "projection" / "generated.h5", "r") as f:
        assert set(f["runs"]) == {"w", "w+"} and f["runs/w+/prior/ws"].shape == (4, 14, 16)
    evaluation = json.loads((res / "latent" / "evaluation.json").read_text())
    assert set(evaluation["generated"]["runs"]) == {"w/no_prior", "w/prior", "w+/no_prior", "w+/prior"}
    assert evaluation["interpolation"]["w/prior"]["pairs"] == 2
    sampling = json.loads((res / "latent" / "sampling.json").read_text())
    assert len(sampling["methods"]) == 3 and "no LPIPS" in sampling["diversity"]
    real = json.loads((res / "latent" / "real_edits.json").read_text())
    assert real["row"] == "real identities (ours only)" and "standing in" in real["identity_source"]
    assert "real identities (ours only)" in (res / "report" / "latent.md").read_text()

    again = snakemake("-n", "--directory", tmp_path, "--configfile", cfg)
    assert "Nothing to be done" in again.stdout + again.stderr

    changed = json.loads(json.dumps(TINY))
    changed["generative_fields"]["seed"] = 3
    cfg2 = write_config(tmp_path / "changed.yaml", changed)
    rerun = snakemake("-n", "--directory", tmp_path, "--configfile", cfg2)
    # the stages that read the field table (face size, report) follow it
    assert job_counts(rerun.stdout + rerun.stderr) == {
        "generative_fields": 1,
        "face_size": 1,
        "report_tables": 1,
        "all": 1,
    }
