"""A class graded on a Dask cluster (issue 12): the same results as the local pool, and a dead worker costs
only its own submission."""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from conftest import EXAMPLES, ROOT, gradescope_schema
from grader.batch import KEY, grade_folder
from grader.results import GradingRun

HW4 = ROOT / "rubrics" / "hw4.yaml"
SEED = 11
VICTIM = "a_victim"  # sorted first: its task is among the first sent, while the others are still to grade


def _make_class(root: Path) -> list[str]:
    """Twelve submissions, the cheap ones where there is a choice: hw4's examples as .py and as notebooks, and
    the shapes a class folder has (nothing handed in, answers only, a misnamed file, a code file that is a
    symbolic link, which intake refuses on the sending machine and the refusal travels with the task)."""
    for example in ("broken", "correct", "forms", "notebook", "notebook_comments", "partial"):
        shutil.copytree(EXAMPLES / "hw4" / example, root / example)
    shutil.copytree(EXAMPLES / "hw4" / "broken", root / "broken_again")
    (root / "empty").mkdir()
    (root / "readme_only").mkdir()
    (root / "readme_only" / "README.txt").write_text("I could not finish, sorry.\n")
    (root / "answers_only").mkdir()
    shutil.copy(EXAMPLES / "hw4" / "correct" / "answers.yaml", root / "answers_only")
    (root / "misnamed").mkdir()
    shutil.copy(EXAMPLES / "hw4" / "correct" / "hw4.py", root / "misnamed" / "solution.py")
    (root / "symlinked_code").mkdir()
    os.symlink(EXAMPLES / "hw4" / "correct" / "hw4.py", root / "symlinked_code" / "hw4.py")
    return sorted(p.name for p in root.iterdir())


@pytest.fixture(scope="module")
def local_pool(tmp_path_factory):
    """The class graded once by the local pool (the default): what the cluster must reproduce."""
    root = tmp_path_factory.mktemp("local")
    names = _make_class(root / "class")
    got_names, runs = grade_folder(root / "class", HW4, root / "out", jobs=2, seed=SEED, skip_training=True)
    assert got_names == names and len(names) >= 12
    return dict(zip(got_names, runs))


def _verdicts(run: GradingRun) -> dict:
    """What a grade is made of (not timings, not where the folder was)."""
    return {"score": run.score, "max": run.max_score, "isolation": run.isolation, "load": run.load_messages,
            "checks": [(r.check_id, r.status, r.score, r.feedback, [i.label() for i in r.items], r.review)
                       for r in run.results]}


def _kill_victims(client, kills: list[str], stop: threading.Event) -> None:
    """SIGKILL whichever worker holds the victim's task, each time one does (as the OOM killer would)."""
    killed: set[int] = set()
    while not stop.is_set():
        try:
            processing = client.processing()
        except Exception:  # the client is closing
            return
        for address, keys in processing.items():
            if any(str(k).startswith(f"grade-{VICTIM}-") for k in keys):
                try:
                    pid = client.run(os.getpid, workers=[address])[address]
                except Exception:
                    continue  # that worker is going away already
                if pid not in killed:
                    killed.add(pid)
                    kills.append(address)
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # ~90 s on a quiet machine; this covers the local pool's fixture under a loaded one
def test_a_local_cluster_grades_a_class_like_the_local_pool_and_a_dead_worker_costs_only_its_submission(
        tmp_path, local_pool):
    root = tmp_path / "class"
    names = _make_class(root)
    shutil.copytree(EXAMPLES / "hw4" / "correct", root / VICTIM)
    kills: list[str] = []
    stop = threading.Event()
    killer: list[threading.Thread] = []

    def on_client(client) -> None:
        thread = threading.Thread(target=_kill_victims, args=(client, kills, stop), daemon=True)
        thread.start()
        killer.append(thread)

    out = tmp_path / "out"
    try:
        got_names, runs = grade_folder(root, HW4, out, jobs=2, seed=SEED, skip_training=True, local_cluster=2,
                                       on_client=on_client)
    finally:
        stop.set()
    by_name = dict(zip(got_names, runs))
    assert got_names == sorted([*names, VICTIM])
    for name in names:  # every other submission: exactly what the local pool decided
        assert _verdicts(by_name[name]) == _verdicts(local_pool[name]), name
        data = json.loads((out / name / "results.json").read_text())
        jsonschema.validate(data, gradescope_schema())
        assert data["score"] == local_pool[name].score and (out / name / KEY).exists()
    assert by_name["correct"].score == 90 and by_name["partial"].score == 38 and by_name["empty"].score == 0
    assert any("symbolic link" in m for m in by_name["symlinked_code"].load_messages)
    # The victim killed a worker on each of its two attempts: a did-not-finish record, every check undecided, for review.
    assert len(kills) == 2, kills
    victim = by_name[VICTIM]
    assert victim.score == 0 and {r.status for r in victim.results} == {"undecided"}
    assert "Grading did not finish: its Dask worker died while grading it" in victim.load_messages[0]
    data = json.loads((out / VICTIM / "results.json").read_text())
    jsonschema.validate(data, gradescope_schema())
    assert data["extra_data"]["statuses"]["undecided"] == len(data["tests"]) > 0
    assert not (out / VICTIM / KEY).exists()  # a grader fault: the next run grades it again


def test_an_unreachable_scheduler_is_a_usage_error_that_writes_nothing(tmp_path, monkeypatch):
    import grader.distributed as distributed
    from grader.errors import UsageError

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 1)
    (tmp_path / "class" / "alice").mkdir(parents=True)
    with pytest.raises(UsageError, match="cannot reach a Dask scheduler at tcp://127.0.0.1:9"):
        grade_folder(tmp_path / "class", HW4, tmp_path / "out", jobs=1, seed=1, scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "out" / "alice").exists()


def test_the_grade_command_takes_one_place_to_grade():
    from grader.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["grade", "class", "--assignment", "hw4", "--local-cluster", "2", "-q", "--regrade"])
    assert (args.local_cluster, args.scheduler, args.quiet, args.regrade) == (2, None, True, True)
    assert parser.parse_args(["grade", "c", "--assignment", "hw4", "--scheduler", "tcp://h:8786"]).scheduler == "tcp://h:8786"
    with pytest.raises(SystemExit):
        parser.parse_args(["grade", "c", "--assignment", "hw4", "--scheduler", "tcp://h:8786", "--local-cluster", "2"])
