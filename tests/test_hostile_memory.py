"""Memorised test answers held in *trainable* parameters: the judge checks the model before it trains.

The graph rules bound constants and refuse lookup ops, but trainable parameters are the child's choice and
a nearest-stored-image match needs only matmul, relu and arithmetic. `submissions_example/hostile/param_memory`
carries the public test set that way (LeNet learns nothing; LR learns a little and opens its memory during
training); graded, it must get no training points, for the reason `memorised_answers`. Randomly initialised models (the references) must never be taken for it; a
memory that training switches on shows as a model better on held-out images than on those it trained on.
"""
from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from grader.checks.training import memorised_verdict
from grader.training.fitting import SEEN_IMAGES, ScoreColumn, _predict_classes, settings_from_plain
from grader.training.plan import Split, load_split

REPO = Path(__file__).resolve().parent.parent
ATTACK = REPO / "submissions_example" / "hostile" / "param_memory"
TRAINING_CHECKS = ("p5.train", "p7.train")


def _checks(rubric: Path) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for q in yaml.safe_load(rubric.read_text())["questions"] for c in q["checks"]}


def _course(root: Path) -> Path:
    """hw4's rubric with only its two training checks (p7.train cut to one run of one epoch), and the reference."""
    data = yaml.safe_load((REPO / "rubrics" / "hw4.yaml").read_text())
    questions = []
    for q in data["questions"]:
        q["checks"] = [c for c in q["checks"] if c["id"] in TRAINING_CHECKS]
        for c in q["checks"]:
            if c["id"] == "p7.train":  # one LeNet for one epoch: the verdict comes from before training (time)
                c["params"].update(runs=c["params"]["runs"][:1], epochs=1)
        if q["checks"]:
            q["points"] = sum(c["points"] for c in q["checks"])
            questions.append(q)
    data["questions"] = questions
    (root / "rubrics").mkdir(parents=True)
    shutil.copytree(REPO / "reference", root / "reference", ignore=shutil.ignore_patterns("__pycache__"))
    path = root / "rubrics" / "hw4.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _whole_test_set(check: dict[str, Any]) -> Split:
    return load_split({k: v for k, v in check["params"].items() if k != "eval_size"}, data_dir=None)


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """param_memory with memory.npz: the whole public test set of the dataset each training check uses."""
    root = tmp_path_factory.mktemp("memory")
    rubric = _course(root / "course")
    checks = _checks(rubric)
    memory = {}
    for key, check in (("binary", "p5.train"), ("classes", "p7.train")):
        split = _whole_test_set(checks[check])
        memory[f"{key}_images"], memory[f"{key}_labels"] = split.eval_images, split.eval_labels
    submission = root / "param_memory"
    shutil.copytree(ATTACK, submission)
    np.savez(submission / "memory.npz", **memory)
    return submission, rubric


@pytest.fixture(scope="module")
def graded(attack: tuple[Path, Path]) -> dict[str, Any]:
    from grader.engine import grade_submission
    from grader.rubric.load import load_rubric

    submission, rubric = attack
    run = grade_submission(submission, load_rubric(rubric), seed=20240, skip_training=False)
    return {r.check_id: r for r in run.results}


def test_the_attack_is_real(attack: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Untrained, outside the grader, the memorising LeNet classifies the evaluation images perfectly and the
    training images at chance; its memory is trainable parameters, and its graph passes the rules."""
    from grader.child.operations.export import _Root, export_graph
    from grader.judge.graph import validate
    from grader.training.harness import predict

    submission, rubric = attack
    monkeypatch.chdir(submission)
    module = runpy.run_path(str(submission / "hw4.py"), run_name="hostile")
    split = load_split(_checks(rubric)["p7.train"]["params"], data_dir=None)
    torch.manual_seed(0)
    model = module["LeNet"]()
    assert model.memory.keys.requires_grad and model.memory.values.requires_grad
    held_out = predict(model, torch.from_numpy(split.eval_images), normalize=split.normalize).numpy()
    seen = predict(model, torch.from_numpy(split.train_images[:1000]), normalize=split.normalize).numpy()
    assert (held_out == split.eval_labels).mean() > 0.99
    assert (seen == split.train_labels[:1000]).mean() < 0.2
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    verdict = validate(export_graph(_Root(model), (torch.randn(4, 1, 28, 28),), ({0: batch},)))
    # The gap this test closes: the graph passes, its constants are C3's 60 indices, the memory is trainable.
    assert verdict.ok and verdict.constant_elements == 60 and verdict.trainable > 790_000, verdict


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_memorised_answers_get_no_training_points(graded: dict[str, Any]) -> None:
    for check in TRAINING_CHECKS:
        result = graded[check]
        text = " ".join(result.feedback)
        assert result.score == 0 and result.method == "judge", (check, result.score, text)
        assert [i.id for i in result.items] == ["memorised_answers"], result.items
        assert "no points for this run" in text, text
    # LeNet knows the answers untrained; LR's memory is opened by training, and shows after it.
    lenet = " ".join(graded["p7.train"].feedback)
    assert "Before any training" in lenet and "held-out" in lenet and "far above chance" in lenet, lenet
    lr = " ".join(graded["p5.train"].feedback)
    assert "After training" in lr and "images it was trained on" in lr, lr


def _random_models() -> list[tuple[str, Any, str]]:
    import reference.hw4 as hw4

    return [("p5.train", lambda: ScoreColumn(hw4.LR()), "binary"), ("p7.train", hw4.LeNet, "classes")]


@pytest.mark.parametrize("check,factory,task", _random_models(), ids=["LR", "LeNet"])
def test_untrained_random_models_are_never_taken_for_memorisers(check: str, factory: Any, task: str) -> None:
    """Random initialisations of each reference model pass (3,000 LRs and 40 LeNets did when the bars were set); the same predictions with a fifth of the
    held-out answers made right (a partial memory, far below the absolute bar) do not, when there are ten classes."""
    split = load_split(_checks(REPO / "rubrics" / "hw4.yaml")[check]["params"], data_dir=None)
    m = len(split.eval_labels)
    k = min(len(split.train_labels), SEEN_IMAGES)
    images = torch.from_numpy(np.concatenate([split.eval_images, split.train_images[:k]]))
    settings = settings_from_plain({"normalize": list(split.normalize) if split.normalize else None})
    for seed in range(20 if task == "binary" else 6):
        torch.manual_seed(seed)
        preds, problem, timed_out = _predict_classes(factory(), images, settings=settings, binary=task == "binary",
                                                     seconds=60)
        assert preds is not None and problem is None and not timed_out
        every = preds.numpy().astype(np.int64)
        plain = every[:2 * m]  # the held-out images, then as many training images
        # As if training had changed nothing: after training it predicts as before.
        value = {"untrained_predictions": plain, "seen_predictions": every[m:]}
        held_out = float((plain[:m] == split.eval_labels).mean())
        assert memorised_verdict(value, "M", split, held_out) is None, seed
        if task == "classes":
            partial = plain.copy()
            partial[: m // 5] = split.eval_labels[: m // 5]  # a fifth of the held-out images "remembered"
            found = memorised_verdict(dict(value, untrained_predictions=partial), "M", split, held_out)
            assert found is not None and found.finding == "memorised_answers", seed
            assert "more than" in found.lines[0] and "Before any training" in found.lines[0], found.lines
            # A memory that training switches on: untrained it knows nothing, trained it beats what it learned.
            found = memorised_verdict(value, "M", split, held_out + 0.2)
            assert found is not None and "After training" in found.lines[0], found.lines


def test_no_prediction_before_training_is_never_a_pass_and_a_slow_one_no_deduction() -> None:
    split = load_split(_checks(REPO / "rubrics" / "hw4.yaml")["p5.train"]["params"], data_dir=None)
    cases = {"missing": {}, "malformed": {"untrained_predictions": np.zeros(3, dtype=np.int64)},
             "failed": {"untrained_problem": "model output has shape (B, 2)"},
             "timed out": {"untrained_timed_out": True}}
    findings = {name: memorised_verdict(value, "LR()", split, 0.5) for name, value in cases.items()}
    assert {name: v.finding if v else None for name, v in findings.items()} == {
        "missing": "error", "malformed": "error", "failed": "not_done", "timed out": "undecided"}
    assert "not counted against you" in findings["timed out"].lines[0]
