"""benchmarks/all_stages.py's runner on fake benchmarks (small scripts writing the JSON a real one
writes): every stage ends up in the table, whether it succeeded, crashed, hung, wrote nothing or
was skipped for a missing input; a hung one is killed with the process it started."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import all_stages  # noqa: E402
from all_stages import Stage  # noqa: E402
from bench_summary import Target, summary_row  # noqa: E402

ARGS = """
import argparse, json, os, subprocess, sys
ap = argparse.ArgumentParser()
ap.add_argument("--out")
ap.add_argument("--time-budget", type=float)
ap.add_argument("--fixtures")
args = ap.parse_args()
"""
GOOD = ARGS + """
sys.path.insert(0, {bench!r})
from bench_summary import Target, summary_row
rows = [summary_row("fake synthesis", 3000.0, 1000.0, "img/s", Target(">=", 2000, "img/s"), "fast path", 42.0),
        summary_row("fake compile", 90.0, 30.0, "s", Target("<=", 60, "s"))]
rows.append({{"stage": "hand-written", "ours": 10.0, "baseline": 4.0, "unit": "faces/s", "target": None,
             "met": None, "note": "no ratio key"}})
print("fake progress", flush=True)
json.dump({{"summary_rows": rows, "time_budget": args.time_budget}}, open(args.out, "w"))
"""
CRASH = ARGS + """
print("half way", flush=True)
sys.stderr.write("Traceback: boom, a fake failure\\n")
sys.exit(3)
"""
HANG = ARGS + """
json.dump({"summary_rows": [{"stage": "partial row", "ours": 1.0, "unit": "img/s"}]}, open(args.out, "w"))
child = subprocess.Popen([sys.executable, "-c", "import os; r, w = os.pipe(); os.read(r, 1)"], start_new_session=True)
open(args.out + ".child", "w").write(str(child.pid))
sys.stderr.write("UserWarning: not the reason\\n")
print("blocking", flush=True)
r, w = os.pipe()
os.read(r, 1)  # never returns: nothing is ever written to w
"""
NO_JSON = ARGS + "print('forgot to write', flush=True)\n"


def fake_stages(tmp: Path) -> tuple:
    good = GOOD.format(bench=str(Path(all_stages.__file__).parent))
    for name, code in {"good": good, "crash": CRASH, "hang": HANG, "nojson": NO_JSON, "needs": good}.items():
        (tmp / f"{name}.py").write_text(code)
    return (
        Stage("good", str(tmp / "good.py"), margin_s=10, inputs={"--fixtures": ("sg2_fixtures", False)}),
        Stage("crash", str(tmp / "crash.py")),
        Stage("hang", str(tmp / "hang.py")),
        Stage("nojson", str(tmp / "nojson.py")),
        Stage("needs", str(tmp / "needs.py"), inputs={"--fixtures": ("sg3_fixtures", True)}),
    )


def options(tmp: Path, **kw) -> argparse.Namespace:
    base = dict(all=True, stages=None, smoke=False, time_budget=600.0, out_dir=str(tmp / "out"),
                sg3_fixtures=str(tmp / "no-such-fixtures"), sg2_fixtures="optional-absent", stage_budget=[])  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_every_stage_is_a_row(tmp_path, capsys):
    # wide margins: the hang is killed at 5 s; each other stage has 60 s to start an interpreter
    budgets = [("good", 60.0), ("crash", 60.0), ("hang", 5.0), ("nojson", 60.0), ("needs", 60.0)]
    opts = options(tmp_path, stage_budget=budgets)
    record = all_stages.run_all(opts, fake_stages(tmp_path))
    text = all_stages.write(record, Path(opts.out_dir))
    stages = record["stages"]

    assert stages["good"]["status"] == "ok"
    assert stages["good"]["report"]["time_budget"] == 50.0  # its 60 s share less its 10 s margin
    good = [r for r in record["rows"] if r["benchmark"] == "good"]
    assert [r["stage"] for r in good] == ["fake synthesis", "fake compile", "hand-written"]
    assert good[0]["ratio"] == 3.0 and good[0]["met"] is True and good[0]["pct_peak"] == 42.0
    assert good[1]["ratio"] == pytest.approx(1 / 3) and good[1]["met"] is False  # a time: baseline/ours
    assert good[2]["ratio"] == 2.5  # computed for a row written without one
    row = "| fake synthesis | 3,000 img/s | 1,000 img/s | 3.00 | 42.0 | >= 2,000 img/s | yes | fast path; "
    assert row + "--fixtures left out: optional-absent does not exist |" in text  # an optional input: a note
    assert "| fake compile | 90.0 s | 30.0 s | 0.33 | - | <= 60 s | NO |" in text

    assert stages["crash"]["status"] == "failed (exit 3)"
    assert stages["crash"]["stderr_tail"] == ["Traceback: boom, a fake failure"]
    assert "| crash benchmark: FAILED (EXIT 3) |" in text and "boom, a fake failure" in text

    hang = stages["hang"]
    assert hang["timed_out"] and hang["status"].startswith("timed out") and 5.0 <= hang["seconds"] < 60
    status = [x for x in text.splitlines() if x.startswith("| hang benchmark: TIMED OUT AFTER")]
    assert "partial row" in text and len(status) == 1 and status[0].endswith("| blocking |")  # its last progress
    grandchild = int(Path(opts.out_dir, "hang.json.child").read_text())
    deadline = time.monotonic() + 30
    while state(grandchild) not in ("gone", "Z") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state(grandchild) in ("gone", "Z"), "the hung stage's own child (another session) was left running"

    assert stages["nojson"]["status"] == "failed" and "no JSON" in stages["nojson"]["reason"]
    assert stages["needs"]["status"] == "skipped" and "no-such-fixtures" in stages["needs"]["reason"]
    assert "| needs benchmark: SKIPPED | - | - | - | - | - | - | missing input" in text
    assert len(text.splitlines()) == 2 + 3 + 1 + 2 + 1 + 1  # header, good, crash, hang (partial + status), ...

    saved = json.loads(Path(opts.out_dir, "all_stages.json").read_text())
    assert saved["stages"]["crash"]["stderr_tail"] == ["Traceback: boom, a fake failure"]
    assert Path(opts.out_dir, "all_stages.md").read_text().count("\n| ") == len(text.splitlines()) - 1
    assert "[crash] half way" in capsys.readouterr().out  # progress streamed as it comes
    assert "fake progress" in Path(opts.out_dir, "logs", "good.log").read_text()


def test_shares_follow_needs_and_time_left(tmp_path):
    stages = fake_stages(tmp_path)
    small, large = (Stage(n, stages[0].script, need_s=need, margin_s=0) for n, need in (("a", 100), ("b", 300)))
    record = all_stages.run_all(options(tmp_path, time_budget=205.0), (small, large))
    a, b = (record["stages"][n] for n in "ab")
    assert 45 <= a["report"]["time_budget"] <= 50  # a quarter of the 200 s left after the 5 s reserve
    assert 195 <= a["seconds"] + b["budget_s"] <= 200.1  # b gets what a left unused
    record = all_stages.run_all(options(tmp_path, time_budget=30.0), (small, large))
    a, b = (record["stages"][n] for n in "ab")  # a's share, a quarter of 25 s, cannot start an interpreter
    assert a["status"] == "skipped" and "left of the total" in a["reason"]
    assert b["status"] == "ok" and 24 <= b["budget_s"] <= 25  # all of it goes to b


def test_report_merges_runs(tmp_path):
    def run(started, stages):
        path = tmp_path / f"{started}.json"
        path.write_text(json.dumps({"started": started, "stages": stages}))
        return str(path)

    ok = {
        "status": "ok",
        "report": {"summary_rows": [summary_row("x", 2.0, 1.0, "img/s", Target(">=", 3, on="ratio"))]},
    }
    first = run("t1", {"projection": {"status": "timed out after 9 s"}, "stylegan3": ok})
    second = run("t2", {"projection": ok})
    record = all_stages.merge([first, second])
    assert list(record["stages"]) == ["stylegan3", "projection"]  # the suite's order
    assert record["stages"]["projection"]["started"] == "t2"
    text = all_stages.write(record, tmp_path)
    assert "TIMED OUT" not in text and text.count("| x | 2.00 img/s | 1.00 img/s | 2.00 | - | >= 3x | NO |") == 2


def test_training_compile_row_from_a_killed_child():
    """A child killed in its first step bounds the compile from below: past 60 s the target is
    known to be missed; a child killed before it started its first step proves nothing."""
    from training_jobs_benchmark import summary_rows

    def out(single):
        return {"single": single, "together": {"rc": None}, "variants": ["concat", "euler"], "paper_steps": 10,
                "exited": False}  # fmt: skip

    killed = summary_rows(out({"rc": None, "wall_s": 110.0, "first_step_at_least_s": 94.0}))[0]
    assert killed["ours"] is None and killed["met"] is False and "94 s into its first step" in killed["note"]
    early = summary_rows(out({"rc": None, "wall_s": 50.0, "first_step_at_least_s": 30.0}))[0]
    assert early["met"] is None and early["target"] == "<= 60 s"
    done = summary_rows(out({"rc": None, "wall_s": 99.0, "first_step_s": 45.0}))
    assert done[0]["ours"] == 45.0 and done[0]["met"] is True
    assert done[1]["ours"] is None and "not measured" in done[1]["note"]
    # Killed at its budget is not an exit hang (the s5 run's first report said "did not exit").
    budget = {"rc": None, "outcome": "killed at its time budget", "wall_s": 67.0, "first_step_at_least_s": 51.0}
    assert "killed at its time budget" in summary_rows(out(budget))[0]["note"]
    assert "exit hang" not in summary_rows(out(budget))[0]["note"]
    hang = {"rc": None, "outcome": "exit hang", "wall_s": 99.0, "first_step_s": 45.0}
    assert summary_rows(out(hang))[0]["note"].endswith("; an exit hang")
