"""One compiled graph per training job, a clean end of the batch thread, and several variants
trained together in one process equal to each trained alone (CPU, tiny generator)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from training_inputs import DETECTOR, TRAINING_CFG

from pipeline_lib.encoders import build_encoder
from pipeline_lib.generator import load_generator
from pipeline_lib.mref import load_mapper
from pipeline_lib.settings import TrainingSettings
from pipeline_lib.training.data import Prefetcher, TrainingData
from pipeline_lib.training.launch import start_training
from pipeline_lib.training.loop import train
from pipeline_lib.training.step import Trainer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(training_inputs):
    """The session's tiny training inputs (conftest), read only."""
    return training_inputs


@pytest.fixture(scope="module")
def parts(inputs):
    G = load_generator(inputs["generator_path"])
    files = inputs["encoder_files"]
    identity, landmarks = build_encoder("arcface_ir_se50", files), build_encoder(DETECTOR, files)
    data = TrainingData(inputs["faces_path"], inputs["annotations_path"], inputs["stats_path"], DETECTOR, "cpu")
    return G, identity, landmarks, data


def cfg_with(**changes) -> dict:
    cfg = copy.deepcopy(TRAINING_CFG)
    cfg.update(changes)
    return cfg


def test_one_job_compiles_one_graph_through_log_checkpoint_and_sample_steps(parts, tmp_path, monkeypatch):
    """Both step kinds, the log, checkpoint and sample steps and the final samples reuse one
    graph: dynamo's frame and graph counts stay 1 (the eager backend: whether a frame recompiles
    is decided by dynamo's guards, whatever the backend)."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, backend="eager", dynamic=kw.get("dynamic")))
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    cfg = cfg_with(num_steps=7, compile=True, log_every=2, checkpoint_every=3, sample_every=3)
    settings = TrainingSettings.for_variant(cfg, "final")
    out = train(*parts, settings, tmp_path / "m" / "mref.pt", {}, "cpu", progress=False)
    assert out.exists()
    assert counters["frames"]["total"] == 1 and counters["frames"]["ok"] == 1
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    torch._dynamo.reset()


def test_the_batch_thread_ends_when_the_loop_fails_mid_run(parts, inputs, tmp_path, monkeypatch):
    """An error in a step leaves the prefetch thread blocked on its full queue with the faces
    file open unless the loop closes it: after the error no prefetch thread may be left."""
    calls = []

    def failing(self, batches):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected step failure")
        return original(self, batches)

    original = Trainer.train_steps
    monkeypatch.setattr(Trainer, "train_steps", failing)
    settings = TrainingSettings.for_variant(cfg_with(num_steps=40, checkpoint_every=100, sample_every=100), "final")
    with pytest.raises(RuntimeError, match="injected"):
        train(*parts, settings, tmp_path / "m" / "mref.pt", {}, "cpu", progress=False)
    assert not [t for t in threading.enumerate() if t.name == "prefetch"]


def test_prefetcher_close_joins_a_thread_blocked_on_its_full_queue(parts):
    data = parts[3]
    p = Prefetcher(data, TrainingSettings.for_variant(TRAINING_CFG, "final"), 0, 1000, 0, 1, pin=False)
    assert p.get()[0] == 0
    p.close()
    assert not p.thread.is_alive()


def test_the_job_process_exits_after_a_failed_and_a_finished_run(inputs, tmp_path):
    """The job's entry point in a fresh interpreter: it must exit (rc 1 on an injected error
    in the second step, rc 0 on success), well inside the timeout."""
    cfg = cfg_with(num_steps=4, checkpoint_every=2, log_every=1, sample_every=10)
    for fail, rc in ((True, 1), (False, 0)):
        args = dict(inputs, out_path=str(tmp_path / str(fail) / "mref.pt"), training_cfg=cfg, variant="final")
        script = (
            "import json, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from pipeline_lib.training.step import Trainer\n"
            "from pipeline_lib.training.launch import start_training\n"
            "original, calls = Trainer.train_steps, []\n"
            "def failing(self, b):\n"
            "    calls.append(1)\n"
            f"    if {fail} and len(calls) == 2: raise RuntimeError('injected')\n"
            "    return original(self, b)\n"
            "Trainer.train_steps = failing\n"
            f"start_training(device_name='cpu', **json.loads({json.dumps(json.dumps(args))}))\n"
        )
        env = {"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == rc, done.stderr[-2000:]
        assert ("injected" in done.stderr) == fail


# Two variants of different inputs and weights (feature concatenation vs not, Euler and style terms).
TOGETHER_CFG = cfg_with(num_steps=4, checkpoint_every=2, log_every=1, sample_every=2)
NAMES = ["default", "final"]


@pytest.fixture(scope="module")
def together(inputs, tmp_path_factory):
    """The two variants trained together in one process, straight through: the reference of the
    tests below (each compares another way of training them to it)."""
    folder = tmp_path_factory.mktemp("together")
    out = [folder / n / "mref.pt" for n in NAMES]
    assert start_training(out, training_cfg=TOGETHER_CFG, variant=NAMES, device_name="cpu", **inputs) == out
    return out


def test_variants_trained_together_equal_each_trained_alone(inputs, together, tmp_path):
    """In one process, eager float32: the same loss rows and weights as two jobs."""
    alone = [tmp_path / "alone" / n / "mref.pt" for n in NAMES]
    for name, out in zip(NAMES, alone):
        start_training(out, training_cfg=TOGETHER_CFG, variant=name, device_name="cpu", **inputs)
    import csv

    for a, b in zip(alone, together):
        wa, ma = load_mapper(a)
        wb, mb = load_mapper(b)
        assert ma["fingerprint"] == mb["fingerprint"]
        sa, sb = wa.state_dict(), wb.state_dict()
        assert any(torch.count_nonzero(v) for k, v in sa.items() if k.startswith("head")), "training moved nothing"
        # A tenth of one Adam step at lr 1e-3 (as the DDP test): Adam divides a tiny gradient by its
        # own size, so float rounding of a batch of 4 vs 2 can move an element by a fraction of a
        # step; a gradient taken from the other variant's slice would move it by whole steps.
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-4)
        rows_a = list(csv.DictReader(open(a.parent / "logs" / "losses.csv")))
        rows_b = list(csv.DictReader(open(b.parent / "logs" / "losses.csv")))
        assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b] == ["0", "1", "2", "3"]
        # float32 rounding: the generator's convolutions on a batch of 4 vs 2 round differently
        # (~1e-7 of a pixel), and L_rec = 1 - MS-SSIM with MS-SSIM ~ 0.999 keeps that 1e-7 absolute.
        for ra, rb in zip(rows_a, rows_b):
            for k in ("total", "identity", "landmark", "euler", "reconstruction", "style_nll", "lr"):
                assert float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-4, abs=1e-6, nan_ok=True), (k, ra, rb)
        assert (b.parent / "samples" / "final.png").exists() and (b.parent / "logs" / "loss_curves.png").exists()
        assert not any((b.parent / "checkpoints").glob("*.pt"))


def test_variants_trained_together_resume_from_their_common_checkpoint(inputs, together, tmp_path):
    stopped = [tmp_path / "stopped" / n / "mref.pt" for n in NAMES]
    start_training(stopped, training_cfg=TOGETHER_CFG, variant=NAMES, device_name="cpu", stop_after=3, **inputs)
    assert all((p.parent / "checkpoints" / "step_000000002.pt").exists() for p in stopped)
    assert not any(p.exists() for p in stopped)
    start_training(stopped, training_cfg=TOGETHER_CFG, variant=NAMES, device_name="cpu", **inputs)
    for a, b in zip(together, stopped):
        sa, sb = load_mapper(a)[0].state_dict(), load_mapper(b)[0].state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_variants_trained_together_must_share_one_gpu_and_their_schedule():
    from pipeline_lib.settings import check_together

    check_together(cfg_with(together=True))
    check_together(cfg_with(together=False, gpus=2))
    with pytest.raises(ValueError, match="one GPU"):
        check_together(cfg_with(together=True, gpus=2))
    cfg = cfg_with(together=True)
    cfg["variants"]["final"] = {**cfg["variants"]["final"], "num_steps": 3}
    with pytest.raises(ValueError, match="share num_steps"):
        check_together(cfg)
    with pytest.raises(ValueError, match="true or false"):
        check_together(cfg_with(together="yes"))
