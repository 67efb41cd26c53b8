"""Shared fixtures: the repository's paths, loaded rubrics, and a way to grade a folder."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "submissions_example"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `import reference.hw4` in cross-check tests
# A grader daemon the developer left running must not take the suite's `grader check`s (grader/daemon.py);
# tests/test_daemon.py starts its own and lets its checks through.
os.environ["GRADER_NO_DAEMON"] = "1"


def pytest_configure(config: pytest.Config) -> None:
    """Fork the judge (grader.judge.server) before any test runs a torch operation: forked then, it costs
    no torch import; forked later it could not run torch, and a fresh interpreter would be started instead."""
    from grader.judge.server import ensure_started

    ensure_started()


@pytest.fixture(scope="session")
def hw4_rubric():
    from grader.rubric.load import load_rubric

    return load_rubric(ROOT / "rubrics" / "hw4.yaml")


def grade(folder: Path, rubric, **kwargs):
    """Grade with a fixed seed so failures reproduce."""
    from grader.engine import grade_submission

    kwargs.setdefault("seed", 1234)
    return grade_submission(Path(folder), rubric, **kwargs)


def scores(run) -> dict[str, float]:
    return {r.check_id: r.score for r in run.results}


def make_submission(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "submission"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def gradescope_schema() -> dict:
    return json.loads((ROOT / "grader" / "schemas" / "gradescope_results.schema.json").read_text())
