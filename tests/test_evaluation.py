"""The evaluation jobs end to end on the tiny inputs, with the real faces of ../shared standing in
for FFHQ: an untrained M_ref (dS = 0) must give back the identity face (identity 1), and the
sparsity job must account for every channel of S."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from training_inputs import ENCODERS_CFG

from pipeline_lib.evaluation.edits import draw_pairs
from pipeline_lib.generator import load_generator
from pipeline_lib.jobs.evaluation import evaluate_edits, sparsity_analyses
from pipeline_lib.mref import ReferenceMapper, save_mapper

EVAL_CFG = {"num_pairs": 6, "seed": 0, "batch_size": 3, "grid": [2, 3]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, training_inputs, real_faces_fid):
    """The session's tiny inputs and real faces (conftest), and two editors in this module's folder."""
    folder = tmp_path_factory.mktemp("evaluation")
    inputs = training_inputs
    files = dict(inputs["encoder_files"])
    files["fid_inception"] = str(real_faces_fid[1])
    G = load_generator(inputs["generator_path"])
    untrained = ReferenceMapper(2048, G.style_dim, (8,))
    save_mapper(folder / "untrained.pt", untrained, {"settings": {"input_features": "attribute"}})
    trained = ReferenceMapper(2048, G.style_dim, (8,))
    torch.manual_seed(0)
    torch.nn.init.normal_(trained.head.weight, std=20.0)  # a large edit: the tiny generator saturates
    save_mapper(folder / "random.pt", trained, {"settings": {"input_features": "attribute"}})
    return folder, inputs, files, real_faces_fid


def job_args(folder, inputs, files, real, model):
    return dict(
        model=folder / model,
        faces=inputs["faces_path"],
        annotations=inputs["annotations_path"],
        attribute_faces=real[0],
        generator=inputs["generator_path"],
        files=files,
        encoders=ENCODERS_CFG,
        device="cpu",
    )


def test_an_untrained_editor_keeps_the_identity_and_the_metrics_record_their_context(setup, tmp_path):
    folder, inputs, files, real = setup
    out = tmp_path / "metrics.json"
    evaluate_edits(
        **job_args(folder, inputs, files, real, "untrained.pt"),
        real_features=real[2],
        evaluation=EVAL_CFG,
        out_metrics=out,
        out_grid=tmp_path / "grid.png",
    )
    m = json.loads(out.read_text())
    assert m["identity"]["n"] == 6 and m["identity"]["mean"] > 0.999  # dS = 0: the edit is the identity face
    assert m["attribute_source"].startswith("real") and m["fid"]["num_a"] == 6 and m["fid"]["num_b"] == 81
    assert m["expression"]["train"]["mean"] > 0  # real attribute faces differ from the generated identity faces
    assert set(m["pose"]) == {"train", "eval"} and m["layers"] is None
    assert (tmp_path / "grid.png").stat().st_size > 20_000


def test_ablation_masks_dS_to_its_layers(setup, tmp_path):
    folder, inputs, files, real = setup
    args = job_args(folder, inputs, files, real, "random.pt")
    args["real_features"] = real[2]
    full = evaluate_edits(**args, evaluation=EVAL_CFG, out_metrics=tmp_path / "a.json", out_grid=tmp_path / "a.png")
    late = evaluate_edits(
        **args,
        evaluation=EVAL_CFG,
        out_metrics=tmp_path / "b.json",
        out_grid=tmp_path / "b.png",
        layers=["conv6", "conv11"],
    )
    assert late["layers"] == ["conv6", "conv11"]
    G = load_generator(inputs["generator_path"])
    fields = {s.paper_name: s.generative_field for s in G.conv_layers}
    assert late["generative_field_range"] == [fields["conv6"], fields["conv11"]] == [59, 7]
    assert full["identity"]["mean"] < 0.99  # the edit changed the faces
    assert full["identity"]["mean"] != pytest.approx(late["identity"]["mean"], abs=1e-4)


def test_pairs_depend_only_on_the_seed():
    import numpy as np

    a = draw_pairs(5, 3, np.arange(10), 7)
    b = draw_pairs(5, 3, np.arange(10), 7)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert not (draw_pairs(5, 4, np.arange(10), 7)[1] == a[1]).all()


def test_sparsity_job_writes_both_figures_over_every_channel(setup, tmp_path):
    folder, inputs, files, real = setup
    names = ["histogram_csv", "histogram_summary", "histogram_png", "reuse_csv", "reuse_png"]
    outputs = {
        n: tmp_path / (n.replace("_png", ".png").replace("_csv", ".csv").replace("_summary", "_summary.json"))
        for n in names
    }
    sparsity_cfg = {
        "variant": "euler",
        "histogram_tests": 5,
        "bins": 20,
        "threshold": 0.6,
        "reuse_tests": 4,
        "top_k": 10,
    }
    sparsity_analyses(
        **job_args(folder, inputs, files, real, "random.pt"),
        sparsity_cfg=sparsity_cfg,
        evaluation=EVAL_CFG,
        outputs=outputs,
    )
    rows = list(csv.DictReader(open(outputs["histogram_csv"])))
    assert len(rows) == 20
    G = load_generator(inputs["generator_path"])
    assert sum(float(r["mean_count"]) for r in rows) == pytest.approx(G.style_dim)
    reuse = list(csv.DictReader(open(outputs["reuse_csv"])))
    assert 10 <= len(reuse) <= 40 and all(r["conv_layer"].startswith("conv") for r in reuse)
    assert outputs["reuse_png"].stat().st_size > 10_000


def test_face_size_of_the_real_faces_with_the_real_detector(setup, tmp_path):
    """Sec. 4.2.2 on real faces: the shared FFHQ-aligned faces through the real 3DDFA_V2 weights
    land near the paper's 141.68 px, beside the synthetic set's summary."""
    from pipeline_lib.generative_fields import field_table, write_table_csv
    from pipeline_lib.jobs import face_size

    folder, inputs, files, real = setup
    table = tmp_path / "table.csv"
    write_table_csv(field_table(load_generator(inputs["generator_path"]), measure=False), table)
    record = face_size.run(
        inputs["faces_path"], inputs["annotations_path"], table, tmp_path / "face_size.json", tmp_path / "fs.png",
        ENCODERS_CFG, {"config4": ["conv3", "conv6"]}, real_faces=real[0], files=files,
        batch_size=32, device="cpu",
    )  # fmt: skip
    assert set(record) == {"synthetic (faces.h5)", "real (FFHQ)"}
    real = record["real (FFHQ)"]
    assert real["n"] == 81 and real["detector"] == ENCODERS_CFG["landmarks"]["train"]
    assert 120 < real["mean"] < 165 and real["std"] < 20
    assert json.loads((tmp_path / "face_size.json").read_text())["real (FFHQ)"]["mean"] == real["mean"]
    assert (tmp_path / "fs.png").stat().st_size > 5_000
