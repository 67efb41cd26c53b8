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


# `make test` hands whole files to two xdist workers (`--dist loadfile --no-loadscope-reorder`) in collection
# order. These files take longest (seconds of a fresh-clone `--durations=0` run, summed per file, longest
# first): started first, the short files fill in around them and neither worker is left alone with a long
# one at the end. Any other file keeps its place after them. A stale list costs time, never a result.
LONGEST_FIRST = (
    "test_hostile.py",
    "test_examples_ds5220.py",
    "test_distributed.py",
    "test_gradescope_build.py",
    "test_kit.py",
    "test_batch.py",
    "test_daemon.py",
    "test_examples_hw4.py",
    "test_examples_a2_tricks.py",
    "test_training_checks.py",
    "test_cli.py",
    "test_examples_loading.py",
    "test_judge.py",
    "test_batch_resume.py",
    "test_report_hostile.py",
)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the files of `LONGEST_FIRST` first, in that order; each file's tests keep their own order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
