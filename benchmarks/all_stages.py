"""Every stage's GPU benchmark in one command, printed as one table (issue 16, item 7): stage,
ours, the baseline measured in the same run, the ratio, % of the device's peak where the
benchmark computes it, the issue's target and whether it is met.

    PYTHONPATH=. python benchmarks/all_stages.py --all --time-budget 540 --out-dir $OUT/all

The stages' key figures need about 1,230 s on one H200 (`Stage.need_s`), so every figure takes
three 10-minute calls, then one table of the three:

    PYTHONPATH=. python benchmarks/all_stages.py --stages stylegan3,synthesis --out-dir $OUT/all1
    PYTHONPATH=. python benchmarks/all_stages.py --stages projection,annotation,dataset_e2e --out-dir $OUT/all2
    PYTHONPATH=. python benchmarks/all_stages.py --stages training_jobs,evaluation --out-dir $OUT/all3
    python benchmarks/all_stages.py --report all1/all_stages.json all2/all_stages.json all3/all_stages.json
    PYTHONPATH=. python benchmarks/all_stages.py --all --smoke --sg3-fixtures ../shared/fixtures/stylegan3_ref \\
        --out-dir /tmp/all     # CPU, tiny sizes: every benchmark's own --smoke mode

Each benchmark runs as a subprocess in its own session, so a crash or a hang of one does not
stop the others: it is killed (with everything it started) when its share of the total
`--time-budget` runs out, and reported as timed out with the tail of its output. Its share is
re-computed before each stage from the time left, in proportion to `Stage.need_s` (what its key
figures took on one H200, benchmarks/NOTES.md), so time one stage leaves unused goes to the next;
`--stage-budget NAME=SECONDS` fixes a stage's share. Each benchmark gets its own `--time-budget`
`margin_s` below its share (the longest step it may start before its own budget check, a cold
compile, must still end before it is killed).

The rows come from each benchmark's `--out` JSON, key `summary_rows` (benchmarks/bench_summary.py
says what a row holds): what a figure means stays in the benchmark that measures it. A stage that
was skipped (an input missing, or no time left), failed, timed out or wrote no rows appears as a
row saying so, never silently missing. Written under `--out-dir`: each stage's JSON and full log,
`all_stages.json` (every stage's command, status, seconds and output tail, and all rows) and
`all_stages.md` (the table). `--report` prints one table of several such runs (a later file's
stage replaces an earlier one's): the stages' needs add up to more than one 10-minute GPU call.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_summary import fill_ratio, fmt_number  # noqa: E402

MIN_STAGE_S = 20.0  # below this a stage cannot even start its interpreter and torch: skipped
TAIL_LINES = 30  # lines of a stage's stderr (and stdout) kept in the combined JSON


@dataclass(frozen=True)
class Stage:
    name: str
    script: str  # under benchmarks/ (or an absolute path)
    args: tuple = ()  # the GPU run's arguments (besides --time-budget and --out)
    smoke_args: tuple = ("--smoke",)  # the CPU run's (--smoke)
    need_s: float = 120.0  # wall seconds its key figures took on one H200: its weight in the total budget
    margin_s: float = 20.0  # its share minus its own --time-budget
    inputs: dict = field(default_factory=dict)  # option -> (all_stages option naming a folder, required)


SG3_VARIANTS = "fast fp32 eager,fast fp16-mixed compile,fast fp16-mixed compile tf32"  # stylegan3_benchmark.py
SG2_VARIANTS = "bf16 + compile (earlier default),float16 + compile (new default)"  # synthesis_precision.py
STAGES = (
    # t256 and r256 (the two speed targets), t1024 (the memory target): fp32 eager (a check of the
    # Triton filtered lrelu against the reference), fp16-mixed compiled, and with TF32 float32 convs
    Stage("stylegan3", "stylegan3_benchmark.py", ("--configs", "t256,r256,t1024", "--variants", SG3_VARIANTS),
          ("--smoke", "--device", "cpu", "--configs", "t256"), 250, 40,
          {"--fixtures": ("sg3_fixtures", True)}),
    Stage("synthesis", "synthesis_benchmark.py", ("--compare", "--variants", SG2_VARIANTS),
          ("--compare", "--smoke", "--device", "cpu", "--chunk", "4", "--iters", "1", "--variants", SG2_VARIANTS),
          100, 30, {"--fixtures": ("sg2_fixtures", False)}),
    Stage("projection", "projection_benchmark.py", ("--random",), need_s=160, margin_s=30),
    Stage("annotation", "annotation_benchmark.py", need_s=60,
          inputs={"--tddfa-dir": ("tddfa_dir", False), "--faces-dir": ("faces_dir", False)}),
    Stage("dataset_e2e", "dataset_e2e_benchmark.py", ("--runner", "jobs"), ("--smoke", "--runner", "jobs"), 190, 60),
    Stage("training_jobs", "training_jobs_benchmark.py", need_s=240, margin_s=20),
    Stage("evaluation", "evaluation_benchmark.py", need_s=150, margin_s=30),
)  # fmt: skip
BY_NAME = {s.name: s for s in STAGES}


def command(stage: Stage, opts, budget_s: float, out: Path) -> tuple[list[str], str | None, list[str]]:
    """(argv, reason to skip or None, notes): the stage's command with its inputs resolved; a
    required input that is missing skips the stage, an optional one is left out with a note."""
    argv = [sys.executable, str(REPO / "benchmarks" / stage.script)]
    argv += list(stage.smoke_args if opts.smoke else stage.args)
    notes = []
    for flag, (dest, required) in stage.inputs.items():
        path = Path(getattr(opts, dest))
        if path.exists():
            argv += [flag, str(path.resolve())]
        elif required:
            return argv, f"missing input {path} (--{dest.replace('_', '-')})", notes
        else:
            notes.append(f"{flag} left out: {path} does not exist")
    sub_budget = max(budget_s - stage.margin_s, 0.5 * budget_s)
    return argv + ["--time-budget", f"{sub_budget:.0f}", "--out", str(out)], None, notes


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), found before killing: once their parent is gone
    they are re-parented and, in a session of their own (a benchmark's own child), unreachable."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    for pid in descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its session's group (start_new_session): it and its children
    except ProcessLookupError:
        pass


def stream(pipe, name: str, log, tail: collections.deque, lock: threading.Lock) -> None:
    """Print a stage's output as it comes (progress), into its log, and keep its last lines."""
    for line in iter(pipe.readline, ""):
        with lock:
            log.write(line)
            log.flush()
            print(f"[{name}] {line}", end="", flush=True)
        tail.append(line.rstrip("\n"))
    pipe.close()


def run_stage(name: str, argv: list[str], timeout_s: float, log_path: Path) -> dict:
    """Run one benchmark; {rc, seconds, timed_out, stdout_tail, stderr_tail}."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    t0 = time.perf_counter()
    out_tail, err_tail, lock = (
        collections.deque(maxlen=TAIL_LINES),
        collections.deque(maxlen=TAIL_LINES),
        threading.Lock(),
    )
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", env=env, start_new_session=True)  # fmt: skip
        readers = [threading.Thread(target=stream, args=(p, name, log, t, lock), daemon=True)
                   for p, t in ((proc.stdout, out_tail), (proc.stderr, err_tail))]  # fmt: skip
        for r in readers:
            r.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_tree(proc)
            rc = proc.wait()
        else:
            kill_tree(proc)  # whatever it left running (compile workers) must not hold the GPU for the next
        for r in readers:
            r.join(timeout=10)
    return {"rc": rc, "seconds": time.perf_counter() - t0, "timed_out": timed_out,
            "stdout_tail": list(out_tail), "stderr_tail": list(err_tail)}  # fmt: skip


def stage_rows(name: str, entry: dict) -> list[dict]:
    """The stage's summary rows, then a row saying what went wrong, if anything did."""
    rows = [dict(fill_ratio(r), benchmark=name) for r in (entry.get("report") or {}).get("summary_rows", [])]
    if rows and entry.get("notes"):  # an optional input left out (random stand-in weights, no fixture PSNR)
        rows[0]["note"] = "; ".join(x for x in [rows[0]["note"], *entry["notes"]] if x)
    status = entry["status"]
    if status == "ok" and rows:
        return rows
    why = entry.get("reason", "")
    if status != "skipped":
        tails = [entry.get(k, []) for k in ("stderr_tail", "stdout_tail")]  # a failure's error, else progress
        first, second = tails[::-1] if entry.get("timed_out") else tails
        last = [x for x in first if x.strip()] or [x for x in second if x.strip()]
        why = "; ".join(x for x in (why, last[-1][:200] if last else "") if x)
    status = "ok but wrote no summary rows" if status == "ok" else status
    why = "; ".join(x for x in [why, *([] if rows else entry.get("notes", []))] if x)
    return rows + [fill_ratio({"stage": f"{name} benchmark: {status.upper()}", "note": why, "benchmark": name})]


def run_all(opts, stages: tuple = STAGES) -> dict:
    by_name = {s.name: s for s in stages}
    names = list(by_name) if opts.all else [n for n in opts.stages.split(",") if n]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown stages {unknown}; known: {list(by_name)}")
    fixed = dict(opts.stage_budget)
    out_dir = Path(opts.out_dir)
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    record = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": sys.argv, "smoke": opts.smoke,
              "time_budget_s": opts.time_budget, "stages": {}}  # fmt: skip
    need = sum(by_name[n].need_s for n in names)
    if not opts.smoke and need > opts.time_budget:
        print(f"-- warning: these stages' key figures took ~{need:.0f} s on one H200, more than --time-budget "
              f"{opts.time_budget:.0f} s: the shares below cut them short (the docstring splits them over three calls)",
              flush=True)  # fmt: skip
    for i, name in enumerate(names):
        stage, rest = by_name[name], names[i:]
        left = opts.time_budget - (time.perf_counter() - t_start) - 5.0  # 5 s for the table
        shared = left - sum(fixed[n] for n in rest if n in fixed)
        weight = sum(by_name[n].need_s for n in rest if n not in fixed)
        budget = min(fixed[name], left) if name in fixed else max(0.0, shared) * stage.need_s / weight
        out = out_dir / f"{name}.json"
        out.unlink(missing_ok=True)  # an old run's JSON must not pass for this one's
        argv, skip, notes = command(stage, opts, budget, out)
        entry = {"command": argv, "budget_s": round(budget, 1), "notes": notes}
        if skip is None and budget < min(MIN_STAGE_S, fixed.get(name, MIN_STAGE_S)):  # a given share is kept
            skip = f"{budget:.0f} s left of the total --time-budget {opts.time_budget:.0f} s"
        if skip is not None:
            entry.update(status="skipped", reason=skip)
            print(f"== {name}: skipped ({skip})", flush=True)
        else:
            short = "" if opts.smoke or budget >= stage.need_s else f" (its key figures took ~{stage.need_s:.0f} s)"
            print(f"== {name}: {budget:.0f} s{short}: {' '.join(argv[1:])}", flush=True)
            entry.update(run_stage(name, argv, budget, out_dir / "logs" / f"{name}.log"))
            if out.exists():
                try:
                    entry["report"] = json.loads(out.read_text())
                except json.JSONDecodeError as e:
                    entry["reason"] = f"unreadable JSON {out}: {e}"
            if entry["timed_out"]:
                entry["status"] = f"timed out after {entry['seconds']:.0f} s"
            elif entry["rc"] != 0:
                entry["status"] = f"failed (exit {entry['rc']})"
            elif "report" not in entry:
                entry["status"] = "failed"
                entry.setdefault("reason", f"exit 0 but no JSON at {out}")
            else:
                entry["status"] = "ok"
            took = "" if entry["timed_out"] else f" in {entry['seconds']:.0f} s"
            print(f"== {name}: {entry['status']}{took}", flush=True)
        record["stages"][name] = entry
        write(record, out_dir)  # after every stage: a run cut short keeps what it has
    record["seconds"] = time.perf_counter() - t_start
    return record


def table(record: dict) -> str:
    head = (
        "| stage | ours | baseline (same run) | x | % peak | target | met | note |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in record["rows"]:
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        pct = "-" if r["pct_peak"] is None else f"{r['pct_peak']:.1f}"
        cells = [r["stage"], fmt_number(r["ours"], r["unit"]), fmt_number(r["baseline"], r["unit"]), ratio, pct,
                 r["target"] or "-", met, (r["note"] or "").replace("|", "/")]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def write(record: dict, out_dir: Path) -> str:
    record["rows"] = [row for name, entry in record["stages"].items() for row in stage_rows(name, entry)]
    text = table(record)
    (out_dir / "all_stages.json").write_text(json.dumps(record, indent=1, default=str))
    runs = ", ".join(sorted({str(e.get("started", record.get("started"))) for e in record["stages"].values()}))
    (out_dir / "all_stages.md").write_text(f"# All stages ({runs})\n\n{text}\n")
    return text


def merge(paths: list[str]) -> dict:
    """One record of several runs' all_stages.json: a later file's stage replaces an earlier one's."""
    record = {"merged_from": paths, "stages": {}}
    for path in paths:
        run = json.loads(Path(path).read_text())
        for name, entry in run["stages"].items():
            record["stages"][name] = {**entry, "started": run.get("started")}
    order = [s.name for s in STAGES]
    record["stages"] = dict(
        sorted(record["stages"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    )
    return record


def budget_item(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    if name not in BY_NAME or not seconds:
        raise argparse.ArgumentTypeError(f"expected NAME=SECONDS with NAME one of {list(BY_NAME)}, got {text!r}")
    return name, float(seconds)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every stage, in order: " + ", ".join(BY_NAME))
    which.add_argument("--stages", help="comma-separated stage names")
    which.add_argument("--report", nargs="+", metavar="JSON", help="one table of earlier runs' all_stages.json")
    ap.add_argument("--time-budget", type=float, default=540.0, help="seconds for every stage together")
    ap.add_argument("--stage-budget", type=budget_item, action="append", default=[], metavar="NAME=SECONDS",
                    help="a stage's fixed share (repeatable); the others share the rest")  # fmt: skip
    ap.add_argument("--out-dir", default=None, help="where the JSONs, logs and table go (default: a new temp dir)")
    ap.add_argument("--smoke", action="store_true", help="every benchmark's CPU smoke mode (tiny sizes)")
    ap.add_argument("--sg2-fixtures", default=".device/fixtures/stylegan2_ref", help="synthesis (optional)")
    ap.add_argument("--sg3-fixtures", default=".device/fixtures/stylegan3_ref", help="stylegan3 (required)")
    ap.add_argument("--tddfa-dir", default=".device/assets/3ddfa_v2", help="annotation's real 3DDFA_V2 (optional)")
    ap.add_argument("--faces-dir", default=".device/assets/faces256", help="annotation's real faces (optional)")
    opts = ap.parse_args(argv)
    opts.out_dir = opts.out_dir or tempfile.mkdtemp(prefix="all-stages-")
    if opts.report:
        record = merge(opts.report)
        Path(opts.out_dir).mkdir(parents=True, exist_ok=True)
    else:
        record = run_all(opts)
    text = write(record, Path(opts.out_dir))
    print(f"\n{text}\n\nJSON, logs and all_stages.md in {opts.out_dir}", flush=True)


if __name__ == "__main__":
    main()
