"""Wall time of grading the bundled examples end to end with the real CLI (median of several runs).

Measures `grader check submissions_example/ds5220/correct --assignment ds5220`
(training on, default budget) and `grader check submissions_example/hw4/correct
--skip-training`, the two figures the README quotes.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "ds5220/correct (training on)": ["submissions_example/ds5220/correct", "--assignment", "ds5220"],
    "hw4/correct --skip-training": ["submissions_example/hw4/correct", "--assignment", "hw4", "--skip-training"],
}


def time_case(args: list[str], runs: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "grader", "check", *args, "-q", "--seed", str(i),
                            "--results", f"{tmp}/r.json"], cwd=ROOT, check=True)
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for name, case in CASES.items():
        times = time_case(case, args.runs)
        print(f"{name:32s} median {statistics.median(times):6.1f} s   runs: {', '.join(f'{t:.1f}' for t in times)}")


if __name__ == "__main__":
    main()
