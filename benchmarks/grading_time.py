"""Wall time of grading the bundled examples end to end with the real CLI (median of several runs).

Measures `grader check submissions_example/ds5220/correct --assignment ds5220`
(training on, default budget) and `grader check submissions_example/hw4/correct
--assignment hw4 --skip-training`, the figures the README quotes, interleaved with
a bare `python -c "import torch"` (one torch import) and the sandbox child's own start-up
alone (import torch, its operations, torch._dynamo through one warm-up torch.export: what the child
must do, one step after the other, before it can export a student's model; the floor of any grading
that judges a model). The hw4 check is also sent to a grader daemon (`grader daemon`), two ways: with
the spare child the previous check left ready (the other cases run in between), and back to back (the
second of two checks in a row, whose spare is still starting). For hw4 it also
prints where a grading's time goes: the engine's own part (from the JSON record:
sandbox start and load, then each check kind) and the rest (interpreter,
imports, rubric and reference loading, reports), with the 1-min load average.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from warm_daemon import GRADER, warm_daemon

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "ds5220/correct (training on)": ["submissions_example/ds5220/correct", "--assignment", "ds5220"],
    "hw4/correct --skip-training": ["submissions_example/hw4/correct", "--assignment", "hw4", "--skip-training"],
}
DAEMON = "hw4 --skip-training, daemon"
BACK_TO_BACK = "hw4 --skip-training, daemon, back to back"
FLOOR = "python -c 'import torch'"
CHILD = "the child's start-up alone"
# What the sandbox child runs before its hello when the rubric exports models (grader.child.main).
CHILD_CODE = ("import torch; from grader.child import ops; ops.load_operation_modules(); "
              "from grader.child.operations import export; export.warm_up()")


def run_case(args: list[str], seed: int, tmp: str, env: dict[str, str] | None = None) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run([GRADER, "check", *args, "-q", "--seed", str(seed), "--results", f"{tmp}/r.json", "--json",
                    f"{tmp}/record.json", *([] if env else ["--no-daemon"])], cwd=ROOT, check=True, env=env)
    seconds = time.perf_counter() - started
    return seconds, json.loads(Path(tmp, "record.json").read_text())


def run_floor(code: str = "import torch") -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - started


def breakdown(total: float, record: dict, rubric_kinds: dict[str, str]) -> dict[str, float]:
    """Seconds by phase of one grading: the engine's checks by kind, its start and load, the rest."""
    parts: dict[str, float] = defaultdict(float)
    checks = 0.0
    for result in record.get("results", []):
        parts[f"checks: {rubric_kinds.get(result['check_id'], '?')}"] += result.get("seconds", 0.0)
        checks += result.get("seconds", 0.0)
    parts["engine: intake, sandbox start and load"] = max(0.0, record.get("seconds", 0.0) - checks)
    parts["outside the engine: interpreter, imports, rubric and reference, reports"] = max(0.0, total - record.get("seconds", 0.0))
    return dict(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import yaml

    hw4 = yaml.safe_load((ROOT / "rubrics" / "hw4.yaml").read_text())
    kinds = {c["id"]: c["kind"] for q in hw4["questions"] for c in q["checks"]}
    hw4_case = CASES["hw4/correct --skip-training"]
    times: dict[str, list[float]] = {name: [] for name in [FLOOR, CHILD, *CASES, DAEMON, BACK_TO_BACK]}
    parts: dict[str, list[float]] = defaultdict(list)
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp, warm_daemon(
            [*hw4_case, "--results", f"{tmp}/r.json", "--json", f"{tmp}/record.json"]) as env:
        # (the untimed check has the timed ones' options: its spare is made for them)
        for i in range(args.runs):  # interleaved: a change in the machine's load hits every case alike
            times[FLOOR].append(run_floor())
            times[CHILD].append(run_floor(CHILD_CODE))
            times[DAEMON].append(run_case(hw4_case, i, tmp, env)[0])
            for name, case in CASES.items():
                seconds, record = run_case(case, i, tmp)
                times[name].append(seconds)
                if case is hw4_case:
                    for part, s in breakdown(seconds, record, kinds).items():
                        parts[part].append(s)
            run_case(hw4_case, i, tmp, env)
            times[BACK_TO_BACK].append(run_case(hw4_case, i, tmp, env)[0])
            loads.append(os.getloadavg()[0])
    for name, ts in times.items():
        print(f"{name:32s} median {statistics.median(ts):6.2f} s   runs: {', '.join(f'{t:.2f}' for t in ts)}")
    hw4 = statistics.median(times["hw4/correct --skip-training"])
    print(f"hw4/correct --skip-training against the child's start-up alone: "
          f"{hw4 / statistics.median(times[CHILD]):.2f}x (ratio of medians)")
    print(f"hw4/correct --skip-training directly against through a daemon with its spare ready: "
          f"{hw4 / statistics.median(times[DAEMON]):.2f}x; against one torch import: "
          f"{statistics.median(times[DAEMON]) / statistics.median(times[FLOOR]):.2f}x of it")
    print("where hw4/correct --skip-training goes (medians):")
    for part, ts in sorted(parts.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {statistics.median(ts):6.2f} s  {part}")
    print(f"1-min load average {min(loads):.2f}-{max(loads):.2f} during the runs")


if __name__ == "__main__":
    main()
