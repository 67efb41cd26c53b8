"""Fill the reference-run cache for some rubrics: ``python -m grader.training.warm [--data-dir DIR] RUBRIC...``.

A threshold ``relative_to_reference`` needs the reference model's accuracy
under the check's exact job (`grader.training.reference_runs`). Computed
during grading, the first submission pays for it; Gradescope's setup.sh
runs this once when the image is built, so none does. It asks each
training check for its reference runs the same way grading does (the
checks' own `reference_runs`), so the cache keys are the same. The reference
is trusted code and runs here; no student code is involved.

Exit status 0 when every run is cached (or there is none), 1 if a rubric or
a reference run failed: each failure is printed, the rest is still done.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from grader.checks import REGISTRY, Context
from grader.rubric.load import load_rubric
from grader.training.reference_runs import reference_cache_dir


def warm(rubric_path: Path, *, data_dir: str | None, device: str = "cpu") -> list[str]:
    """Cache the reference runs of one rubric; returns one line per check (or per failure)."""
    rubric = load_rubric(rubric_path)
    ctx = Context(rubric=rubric, reference=rubric.reference, sandbox=None, load=None, answers={}, seed=0,
                  device=device, data_dir=data_dir)
    lines = []
    for spec in rubric.checks:
        check = REGISTRY[spec.kind](spec)
        runs_of = getattr(check, "reference_runs", None)
        if runs_of is None:
            continue
        started = time.perf_counter()
        try:
            runs = runs_of(ctx)
        except Exception as exc:  # noqa: BLE001 - reported, and the other checks still warm up
            lines.append(f"FAILED {rubric_path.name} {spec.id}: {type(exc).__name__}: {exc}")
            continue
        if runs:
            accs = ", ".join(f"{r.accuracy:.1%}" + (" (cached)" if r.cached else "") for r in runs)
            lines.append(f"{rubric_path.name} {spec.id}: reference accuracy {accs} "
                         f"[{time.perf_counter() - started:.0f} s]")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.training.warm", description=__doc__.splitlines()[0])
    parser.add_argument("rubrics", nargs="+", type=Path)
    parser.add_argument("--data-dir", default=None, help="where the datasets are (as given to grading)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(f"reference-run cache: {reference_cache_dir()}")
    failed = False
    for path in args.rubrics:
        try:
            lines = warm(path, data_dir=args.data_dir, device=args.device)
        except Exception as exc:  # noqa: BLE001 - an unusable rubric: said, and the others still warm up
            lines = [f"FAILED {path}: {type(exc).__name__}: {exc}"]
        for line in lines:
            failed |= line.startswith("FAILED")
            print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
