"""Training of M_ref on CPU with a tiny generator: wiring, schedule, restart after SIGKILL, and
the multi-process (DDP) launch."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from training_inputs import DETECTOR, TRAINING_CFG

from pipeline_lib.encoders import build_encoder
from pipeline_lib.generator import load_generator
from pipeline_lib.mref import ReferenceMapper, load_mapper
from pipeline_lib.settings import TrainingSettings
from pipeline_lib.training.data import TrainingData, batch_plan
from pipeline_lib.training.launch import process_alive, start_training
from pipeline_lib.training.step import Trainer, lr_factor

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(training_inputs):
    """The session's tiny training inputs (conftest), read only."""
    return training_inputs


def cfg_with(**changes) -> dict:
    cfg = copy.deepcopy(TRAINING_CFG)
    cfg.update(changes)
    return cfg


def test_variants_take_the_shared_settings_and_override_them():
    default = TrainingSettings.for_variant(TRAINING_CFG, "default")
    final = TrainingSettings.for_variant(TRAINING_CFG, "final")
    assert default.input_features == "identity+attribute" and not default.euler_loss
    assert final.input_features == "attribute" and final.euler_loss and final.lambda_reg == 0.1
    assert default.lambda_attr == final.lambda_attr == 0.01
    with pytest.raises(KeyError, match="no training variant 'nope'"):
        TrainingSettings.for_variant(TRAINING_CFG, "nope")
    with pytest.raises(ValueError, match="multiple of gpus"):
        TrainingSettings.for_variant(cfg_with(gpus=4, batch_size=6), "final")


def test_batches_cross_every_third_step_and_depend_only_on_seed_and_step():
    s = TrainingSettings.for_variant(cfg_with(batch_size=6), "final")
    identity, attribute = np.arange(0, 100), np.arange(100, 130)
    for step in range(7):
        ids, attrs, cross = batch_plan(step, s, identity, attribute)
        assert cross == (step % 3 == 0)
        assert np.isin(ids, identity).all()
        if cross:
            assert np.isin(attrs, attribute).all()
        else:
            assert (attrs == ids).all()
        again = batch_plan(step, s, identity, attribute)
        assert (again[0] == ids).all() and (again[1] == attrs).all()
    assert not (batch_plan(1, s, identity, attribute)[0] == batch_plan(2, s, identity, attribute)[0]).all()


def test_learning_rate_decays_from_start_to_end():
    s = TrainingSettings.for_variant(cfg_with(num_steps=101, lr=5e-6, lr_end=1e-7), "final")
    assert lr_factor(0, s) * s.lr == pytest.approx(5e-6)
    assert lr_factor(100, s) * s.lr == pytest.approx(1e-7)
    assert lr_factor(50, s) * s.lr == pytest.approx((5e-6 * 1e-7) ** 0.5)


def test_mapper_starts_at_zero_and_round_trips(tmp_path):
    from pipeline_lib.mref import save_mapper

    m = ReferenceMapper(10, 7, hidden=(5,))
    assert torch.count_nonzero(m(torch.randn(3, 10))) == 0
    torch.nn.init.normal_(m.head.weight)
    save_mapper(tmp_path / "m.pt", m, {"variant": "x"})
    loaded, meta = load_mapper(tmp_path / "m.pt")
    assert meta == {"variant": "x"}
    x = torch.randn(3, 10)
    assert torch.equal(loaded(x), m(x))


def test_an_untrained_edit_reproduces_the_identity_face_and_its_annotations(inputs):
    """dS = 0 at the start: on a reconstruction step I_out is I_id, so the losses computed on
    the fly against the stored annotations must vanish (up to the uint8 rounding on disk)."""
    G = load_generator(inputs["generator_path"])
    files = inputs["encoder_files"]
    identity = build_encoder("arcface_ir_se50", files)
    landmarks = build_encoder(DETECTOR, files)
    data = TrainingData(inputs["faces_path"], inputs["annotations_path"], inputs["stats_path"], DETECTOR, "cpu")
    trainer = Trainer(G, identity, landmarks, data, TrainingSettings.for_variant(TRAINING_CFG, "final"), "cpu")
    from pipeline_lib.images import read_images
    from pipeline_lib.training.losses import landmark_loss
    from pipeline_lib.training.step import loss_terms

    ids = torch.tensor([0, 5])
    S_id, S_rgb, dS = trainer.edit_styles(ids, ids)
    assert torch.count_nonzero(dS) == 0
    img, emb, lnd, pose = trainer.edit(S_id + dS, S_rgb, data.noise_mode)
    import h5py

    with h5py.File(inputs["faces_path"], "r") as f:
        stored = torch.from_numpy(read_images(f["images"], ids.numpy()))
    targets = trainer.targets(ids, ids, stored)
    terms = loss_terms(img, emb, lnd, pose, S_id, targets, data, 0.84, reconstruction=True)
    assert terms["identity"].item() < 2e-3
    # The annotations were made from the uint8 faces on disk: the same detector on those faces
    # gives them back. On I_out (float, not rounded) a random-weight detector magnifies the uint8
    # rounding (measured: 0.8 to 6.4 px of Eq. 8's norm per face), so that term is bounded below
    # relative to a wrong pairing.
    from pipeline_lib.encoders.base import encoder_view
    from pipeline_lib.images import from_uint8_hwc

    lnd_stored, _ = landmarks.landmarks_and_pose(encoder_view(from_uint8_hwc(stored)))
    assert landmark_loss(data.landmarks[ids], lnd_stored).item() < 1e-3
    assert terms["reconstruction"].item() < 2e-3
    # and a wrong pairing is far from it: the losses see the difference
    assert landmark_loss(data.landmarks[torch.tensor([1, 2])], lnd).item() > 10 * terms["landmark"].item() + 1e-3


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def kill_after_checkpoint(proc, ckpt_dir, pattern: str, timeout_s: float) -> None:
    """SIGKILL the job's process group once a checkpoint matching `pattern` exists (or after a
    generous `timeout_s`), then reap it: a kill mid-run, whatever the machine's speed."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and not any(ckpt_dir.glob(pattern)):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _job_script(inputs, out, cfg, variant="final") -> str:
    args = dict(inputs, out_path=str(out), training_cfg=cfg, variant=variant, device_name="cpu")
    return (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from pipeline_lib.logs import configure\n"
        "from pipeline_lib.training.launch import process_alive, start_training\n"
        "configure()\n"
        f"start_training(**json.loads({json.dumps(json.dumps(args))}))\n"
    )


def _state(path):
    return load_mapper(path)[0].state_dict()


def test_a_killed_run_resumes_from_its_checkpoint_and_reaches_the_same_weights(inputs, tmp_path):
    cfg = cfg_with(num_steps=9, checkpoint_every=2, log_every=1)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    straight = tmp_path / "straight" / "mref.pt"
    subprocess.run([sys.executable, "-c", _job_script(inputs, straight, cfg)], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed" / "mref.pt"
    proc = subprocess.Popen(
        [sys.executable, "-c", _job_script(inputs, killed, cfg)],
        env=env,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ckpt_dir = killed.parent / "checkpoints"
    kill_after_checkpoint(proc, ckpt_dir, "step_00000000[4-8].pt", 120)
    assert not killed.exists(), "the run was killed before it finished, so there must be no target"
    resumed_from = int(sorted(ckpt_dir.glob("step_*.pt"))[-1].stem.split("_")[1])
    assert 4 <= resumed_from < 9

    done = subprocess.run(
        [sys.executable, "-c", _job_script(inputs, killed, cfg)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming final from" in done.stderr and f"(step {resumed_from} of 9)" in done.stderr
    a, b = _state(straight), _state(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(torch.count_nonzero(v) for k, v in a.items() if k.startswith("head")), "training moved nothing"
    rows = _read_csv(killed.parent / "logs" / "losses.csv")
    assert [int(r["step"]) for r in rows] == list(range(9))
    straight_rows = _read_csv(straight.parent / "logs" / "losses.csv")
    assert [r["total"] for r in rows] == [r["total"] for r in straight_rows]
    assert not any(ckpt_dir.glob("*.pt")), "checkpoints are removed once the target holds the weights"
    assert (killed.parent / "logs" / "loss_curves.png").stat().st_size > 10_000
    assert (killed.parent / "samples" / "final.png").exists()


def test_checkpoints_of_other_settings_are_not_resumed(inputs, tmp_path):
    out = tmp_path / "m" / "mref.pt"
    start_training(
        out, training_cfg=cfg_with(num_steps=4, lr=1e-3), variant="final", device_name="cpu", stop_after=2, **inputs
    )
    assert (out.parent / "checkpoints" / "step_000000002.pt").exists() and not out.exists()
    start_training(out, training_cfg=cfg_with(num_steps=4, lr=2e-3), variant="final", device_name="cpu", **inputs)
    rows = _read_csv(out.parent / "logs" / "losses.csv")
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[0]["lr"]) == pytest.approx(2e-3)


def test_two_processes_under_torchrun_match_one_process(inputs, tmp_path):
    """The DDP launch (gloo on CPU): each process takes half of the global batch."""
    single = tmp_path / "one" / "mref.pt"
    start_training(single, training_cfg=cfg_with(num_steps=4), variant="default", device_name="cpu", **inputs)
    double = tmp_path / "two" / "mref.pt"
    env_before = dict(os.environ)
    try:
        os.environ["OMP_NUM_THREADS"] = "1"
        start_training(
            double, training_cfg=cfg_with(num_steps=4, gpus=2), variant="default", device_name="cpu", **inputs
        )
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    a, b = _state(single), _state(double)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-4)  # lr 1e-3: a tenth of one Adam step
    assert any(torch.count_nonzero(v) for k, v in b.items() if k.startswith("head"))
    rows_one, rows_two = (_read_csv(p.parent / "logs" / "losses.csv") for p in (single, double))
    assert [r["step"] for r in rows_two] == ["0", "1", "2", "3"]
    # The total loss curve (averaged over the processes) is the one process's, to 1e-4 relative;
    # benchmarks/two_gpu_check.py holds two GPUs to the same. (A single term proportional to the
    # distance trained, such as L_rec near dS = 0, differs by as much as the weights do, relatively.)
    totals_one, totals_two = ([float(r["total"]) for r in rows] for rows in (rows_one, rows_two))
    np.testing.assert_allclose(totals_two, totals_one, rtol=1e-4, atol=0)


def test_a_killed_two_process_job_leaves_no_process_behind_and_resumes(inputs, tmp_path):
    """torchrun puts its workers in sessions of their own: killing the job's process group must
    still end them (launch.end_with_launcher), and the rerun resumes from the checkpoint."""
    cfg = cfg_with(num_steps=6, checkpoint_every=2, log_every=1, gpus=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed" / "mref.pt"
    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _job_script(inputs, out, cfg)], env=env, stderr=log, start_new_session=True
        )
    ckpt_dir = out.parent / "checkpoints"
    kill_after_checkpoint(proc, ckpt_dir, "step_00000000[2-4].pt", 180)
    workers = [int(p) for p in re.findall(r"process \d of 2 on cpu \[pid (\d+)\]", log_path.read_text())]
    assert len(workers) == 2
    deadline = time.time() + 20
    while time.time() < deadline and any(process_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(process_alive(p) for p in workers), "a training process outlived its killed job"
    assert not out.exists()
    resumed_from = int(sorted(ckpt_dir.glob("step_*.pt"))[-1].stem.split("_")[1])
    done = subprocess.run(
        [sys.executable, "-c", _job_script(inputs, out, cfg)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"(step {resumed_from} of 6)" in done.stderr
    assert [int(r["step"]) for r in _read_csv(out.parent / "logs" / "losses.csv")] == list(range(6))
