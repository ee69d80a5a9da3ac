"""Ablation layer ranges (Table 3): a range written backwards or naming a layer the generator
lacks is refused before any job where the generator is known at DAG time, and always by the job
that loads the generator; an empty mask (the unedited face reported as a result) never exists."""

from __future__ import annotations

import json

import pytest
import torch
from stylegan3_fixtures import generator as stylegan3_generator
from test_workflow import TINY, snakemake, write_config

from pipeline_lib.editing import layers_mask
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.settings import AblationSettings, check_all, load_config


def with_ablation(cfg: dict, layers) -> dict:
    cfg = json.loads(json.dumps(cfg))
    cfg["ablation"] = {**load_config()["ablation"], **cfg.get("ablation", {})}
    cfg["ablation"]["configs"] = {"config1": ["conv0", "conv7"], "bad": layers}
    return cfg


@pytest.mark.parametrize(
    "layers, message",
    [
        (["conv7", "conv0"], "ablation.configs.bad is [conv7, conv0]: the range is written backwards"),
        (["conv0", "conv99"], "ablation.configs.bad names conv99, but no generator the pipeline loads has it"),
        # the tiny config's random StyleGAN2 (256 px) has conv0..conv12: known at DAG time
        (["conv0", "conv13"], "ablation.configs.bad names conv13, but the random StyleGAN2 generator"),
    ],
)
def test_a_bad_ablation_range_stops_the_dry_run_before_any_job_naming_the_key(tmp_path, layers, message):
    cfg = write_config(tmp_path / "bad.yaml", with_ablation(TINY, layers))
    proc = snakemake("-n", "--directory", tmp_path, "--configfile", cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in out, out[-2000:]
    assert "Job stats" not in out and not (tmp_path / "results").exists()


def test_the_paper_generator_and_an_existing_sidecar_are_checked_at_dag_time(tmp_path):
    cfg = with_ablation(load_config(), ["conv0", "conv13"])
    with pytest.raises(
        ValueError, match=r"ablation.configs.bad names conv13, but the paper's StyleGAN2 .*conv0..conv12"
    ):
        check_all(cfg)  # the registry's ffhq70k-paper256-ada.pkl, not downloaded yet
    G = tmp_path / "G.pt"
    G.write_bytes(b"")
    G.with_suffix(".json").write_text(json.dumps({"family": "stylegan3", "official_kwargs": {"img_resolution": 16}}))
    cfg["generator"]["weights"] = str(G)
    check_all(cfg)  # StyleGAN3 has conv13
    cfg["ablation"]["configs"]["bad"] = ["conv0", "conv14"]
    with pytest.raises(ValueError, match=r"names conv14, but the StyleGAN3 generator .* conv0..conv13"):
        check_all(cfg)


def test_parse_drops_null_configurations_and_keeps_ordered_ranges():
    raw = {"variant": "euler", "num_pairs": 10, "configs": {"a": ["conv3", "conv3"], "b": None}}
    assert AblationSettings.parse(raw).configs == {"a": ("conv3", "conv3")}


def test_the_job_refuses_a_range_its_generator_lacks_and_never_makes_an_empty_mask():
    G2 = init_random_generator(
        GeneratorConfig(z_dim=8, w_dim=8, img_resolution=32, num_mapping_layers=1, channel_base=64, channel_max=8),
        seed=0,
        w_avg_samples=10,
    )  # 32 px: conv0..conv6
    mask = layers_mask(G2, ["conv2", "conv2"], "cpu", "ablation.configs.c")
    assert mask.sum() == G2.layers[3].style_dim and layers_mask(G2, None, "cpu") is None
    with pytest.raises(ValueError) as info:
        layers_mask(G2, ["conv0", "conv7"], "cpu", "ablation.configs.c")
    assert str(info.value) == (
        "config ablation.configs.c names conv7, but the StyleGAN2 generator (32 px) has 7 conv layers: conv0..conv6"
    )
    with pytest.raises(ValueError, match="ablation.configs.c is \\[conv5, conv1\\]: the range is written backwards"):
        layers_mask(G2, ["conv5", "conv1"], "cpu", "ablation.configs.c")

    G3 = stylegan3_generator("t")
    convs = [s for s in G3.layers if s.kind == "conv"]
    last = f"conv{len(convs) - 1}"
    assert torch.equal(layers_mask(G3, ["conv0", last], "cpu").bool(), torch.ones(G3.style_dim, dtype=torch.bool))
    with pytest.raises(ValueError, match=f"names conv{len(convs)}, but the StyleGAN3 generator"):
        layers_mask(G3, ["conv0", f"conv{len(convs)}"], "cpu")
