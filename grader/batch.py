"""Grade a folder of submissions (one sub-folder each) with a local process pool.

Each worker grades one submission with its own sandbox; results come back as
JSON text (the same records `GradingRun.to_dict` writes), so nothing but plain
data crosses between processes. One broken submission, or one crashed
worker, costs only that submission: it gets a valid results file saying so.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from grader.report import gradescope
from grader.results import GradingRun


def _grade_one(folder: str, rubric_path: str, seed: int, device: str, skip_training: bool,
               isolation: str | None, data_dir: str | None, results_path: str) -> str:
    from grader.engine import grade_submission
    from grader.rubric.load import load_rubric

    rubric = load_rubric(Path(rubric_path))
    run = grade_submission(Path(folder), rubric, seed=seed, device=device, skip_training=skip_training,
                           isolation=isolation, data_dir=data_dir, protect=[Path(results_path).parent])
    gradescope.write_results(run, Path(results_path))
    return json.dumps(run.to_dict())


def submission_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def grade_folder(root: Path, rubric_path: Path, out: Path, *, jobs: int, seed: int, device: str = "cpu",
                 skip_training: bool = False, isolation: str | None = None, data_dir: str | None = None,
                 on_done: Callable[[str, GradingRun], None] | None = None) -> tuple[list[str], list[GradingRun]]:
    folders = submission_folders(root)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, GradingRun] = {}
    # Each worker runs its own sandbox child: split the cores between them.
    env_threads = os.environ.get("GRADER_THREADS")
    os.environ.setdefault("GRADER_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
    try:
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(_grade_one, str(f), str(rubric_path), seed, device, skip_training, isolation,
                                   data_dir, str(out / f.name / "results.json")): f for f in folders}
            for future in as_completed(futures):
                folder = futures[future]
                started = time.perf_counter()
                try:
                    run = GradingRun.from_dict(json.loads(future.result()))
                except Exception as exc:  # a crashed worker: this submission only
                    run = GradingRun(assignment="?", submission=str(folder),
                                     load_messages=[f"grading failed: {type(exc).__name__}: {exc}"])
                    gradescope.write_failure(out / folder.name / "results.json", f"internal error ({type(exc).__name__}).",
                                             time.perf_counter() - started)
                runs[folder.name] = run
                if on_done:
                    on_done(folder.name, run)
    finally:
        if env_threads is None:
            os.environ.pop("GRADER_THREADS", None)
    names = [f.name for f in folders]
    return names, [runs[n] for n in names]
