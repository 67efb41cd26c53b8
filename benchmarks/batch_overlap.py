"""Wall time of `grader grade` on a folder of copies of hw4/correct, with and without prestarting ahead.

`grader grade` starts the next submission's grading process (and its sandbox child, ~6 s of CPU for
torch) while the current one is graded (grader/batch.py, `AHEAD`). This times the real CLI on a folder
of `--copies` copies of submissions_example/hw4/correct with `--skip-training --regrade -q`, at `-j 1`
and `-j 2`, with 0 processes prestarting ahead (each starts only when a slot frees, as before) and
`AHEAD` (or the values of `--ahead`), forced whatever `ahead_for` would choose, interleaved run by run so that a change in the machine's load hits every
variant alike, and prints medians and the ratios. `--baseline-tree DIR` adds the grader found in DIR (e.g. a `git worktree` of an
earlier commit), run with the same interpreter.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Runs the CLI with the pool's prestarts set first (argv[1]); the rest of argv is the CLI's.
WITH_AHEAD = ("import sys, grader.batch as b; n = int(sys.argv.pop(1)); b.ahead_for = lambda jobs: n; "
              "from grader.cli import main; sys.exit(main(sys.argv[1:]))")


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ahead", type=int, nargs="+", help="values of AHEAD to compare (default: 0 and the default)")
    parser.add_argument("--baseline-tree", type=Path, help="also time the grader in this source tree")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from grader.batch import AHEAD

    times: dict[str, list[float]] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "class"
        for i in range(args.copies):
            shutil.copytree(ROOT / "submissions_example" / "hw4" / "correct", folder / f"s{i + 1}")
        variants: list[tuple[str, list[str], Path, dict[str, str]]] = []
        for jobs in args.jobs:
            common = ["grade", str(folder), "--assignment", "hw4", "--skip-training", "--regrade", "-q",
                      "--seed", "1", "-j", str(jobs)]
            if args.baseline_tree:
                tree = args.baseline_tree.resolve()
                variants.append((f"-j {jobs} baseline tree", [sys.executable, "-m", "grader", *common,
                                 "--out", f"{tmp}/out-base"], tree, {**os.environ, "PYTHONPATH": str(tree)}))
            for ahead in sorted(set(args.ahead or [0, AHEAD])):
                variants.append((f"-j {jobs} AHEAD={ahead}", [sys.executable, "-c", WITH_AHEAD, str(ahead), *common,
                                 "--out", f"{tmp}/out-{ahead}"], ROOT, dict(os.environ)))
        for _ in range(args.runs):
            for name, argv, cwd, env in variants:
                times.setdefault(name, []).append(timed(argv, cwd, env))
            loads.append(os.getloadavg()[0])
    for name, ts in times.items():
        print(f"{name:24s} median {statistics.median(ts):6.2f} s   runs: {', '.join(f'{t:.2f}' for t in ts)}")
    for jobs in args.jobs:
        off = times.get(f"-j {jobs} AHEAD=0")
        for ahead in sorted(set(args.ahead or [0, AHEAD]) - {0}):
            if off is not None:
                on = times[f"-j {jobs} AHEAD={ahead}"]
                print(f"-j {jobs}: AHEAD={ahead} takes {statistics.median(on) / statistics.median(off):.2f}x "
                      f"the time of AHEAD=0")
    print(f"1-min load average {min(loads):.2f}-{max(loads):.2f} during the runs ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
