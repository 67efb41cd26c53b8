"""`grader.engine.prestart`: the sandbox child starts before the parent imports torch, and is adopted only
when the full rubric asks for nothing it was not started with (issue 12, less overhead per submission)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT, grade, make_submission, scores

HW4 = ROOT / "rubrics" / "hw4.yaml"
# p1-p3 right, p5's losses right, the rest missing: cheap to grade (no model to export), with a mix of scores.
SMALL_HW4 = textwrap.dedent('''
    import torch
    import torch.nn.functional as F

    def finite_difference_filters():
        w = torch.zeros(2, 1, 3, 3)
        w[0, 0, 1, 1], w[0, 0, 2, 1] = -1.0, 1.0
        w[1, 0, 1, 1], w[1, 0, 1, 2] = -1.0, 1.0
        return w

    def rgb_to_gray_weight():
        return torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)

    def logistic_loss(z, y):
        return -F.logsigmoid(y * z)
''')


def test_the_cli_start_up_imports_no_torch_before_the_child_is_spawned():
    """What `grader check` runs before `prestart` (its imports, finding the course and the rubric, --device
    auto) leaves torch unimported in the parent, and the child is running by then: the two torch imports
    overlap. The real `cmd_check` runs, with `prestart` wrapped to look at the process when it returns."""
    code = textwrap.dedent(f'''
        import sys
        import grader.engine
        real = grader.engine.prestart
        def prestart(*args, **kwargs):
            torch_before = "torch" in sys.modules
            early = real(*args, **kwargs)
            try:
                assert early is not None and early.sandbox is not None, "no child was prestarted"
                assert early.sandbox.alive(), "the prestarted child is not running"
                assert early.sandbox.warm_export, "hw4 exports models: the child should warm torch.export"
                assert not torch_before and "torch" not in sys.modules, "torch was imported before the child was spawned"
            finally:
                early.close()
            assert not early.sandbox.alive()
            print("ok")
            raise SystemExit(0)
        grader.engine.prestart = prestart
        from grader.cli import main
        main(["check", {str(EXAMPLES / "hw4" / "correct")!r}, "--assignment", "hw4", "--skip-training", "-q"])
    ''')
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.fixture(scope="module")
def small_hw4(tmp_path_factory) -> Path:
    return make_submission(tmp_path_factory.mktemp("prestart"), {"hw4.py": SMALL_HW4})


def test_an_adopted_child_grades_as_a_fresh_one(small_hw4, hw4_rubric, tmp_path):
    """One grading adopts its prestarted child; another, whose prestart was made for other options, must
    not (it starts a fresh child), and both give the same scores and messages."""
    from grader.engine import _sandbox_fits, limits_for, prestart, protected_paths

    adopted = prestart(small_hw4, HW4)
    # The prestart hides every copy of the evaluation labels whatever the checks, so a training rubric's
    # protected paths are covered; a path it was not started with is not.
    needed = protected_paths(hw4_rubric, [])
    fits = dict(limits=limits_for(hw4_rubric), device="cpu", isolation=None)
    assert _sandbox_fits(adopted.sandbox, protected=needed, **fits)
    assert not _sandbox_fits(adopted.sandbox, protected=needed + [Path("/nonexistent-results-dir")], **fits)
    run_a = grade(small_hw4, hw4_rubric, skip_training=True, early=adopted)
    assert adopted.sandbox.load_report is not None, "the prestarted child was not the one that loaded the submission"

    other = prestart(small_hw4, HW4, protect=[tmp_path])  # protects a path the grading below does not ask for
    run_b = grade(small_hw4, hw4_rubric, skip_training=True, early=other)
    assert other.sandbox.load_report is None and not other.sandbox.alive(), "a child started for other options was used"
    assert not other.workspace.exists() and not adopted.workspace.exists()

    assert scores(run_a) == scores(run_b)
    assert run_a.load_messages == run_b.load_messages
    assert run_a.isolation == run_b.isolation
    got = scores(run_a)
    assert got["p1"] > 0 and got["p3"] > 0 and got["p5.logistic_loss"] > 0  # right answers
    assert got["p2"] == 0 and got["p7.LeNet.structure"] == 0  # missing ones


def test_an_unreadable_rubric_gets_no_prestart(small_hw4, tmp_path):
    """The full load reports what is wrong; the prestart just steps aside and leaves nothing behind."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nassignment: [unclosed\n")
    from grader.engine import prestart

    assert prestart(small_hw4, bad) is None
