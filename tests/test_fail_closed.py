"""Issue 13, cause 4: a judgement a check cannot make is a failure with a sentence, never a silent pass.

The checks here are fed replies as a tampered or unusual child could send them (a stub stands in for the
sandbox: only the parent's judgement is under test), and rubrics that would leave a judgement untested are
refused when they load. The end-to-end cases (a training loop that calls model.forward, one that never runs
the model) are rows of tests/test_training_checks.py.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import pytest

from conftest import ROOT


class StubSandbox:
    """Answers each request with `answer(message)`; records the messages."""

    def __init__(self, answer: Callable[[dict[str, Any]], Any]) -> None:
        self.answer = answer
        self.messages: list[dict[str, Any]] = []

    def request(self, message: dict[str, Any], *, timeout: float) -> Any:
        from grader.sandbox.client import Reply

        self.messages.append(message)
        return Reply(ok=True, value=self.answer(message))


@pytest.fixture(scope="module")
def tricks():
    from grader.rubric.load import load_rubric

    return load_rubric(ROOT / "rubrics" / "tricks.yaml")


def _context(rubric, answer: Callable[[dict[str, Any]], Any]):
    from grader.checks.base import Context

    return Context(rubric=rubric, reference=_reference(rubric), sandbox=StubSandbox(answer),  # type: ignore[arg-type]
                   load=None, answers={}, seed=0)


def _reference(rubric):
    from grader.rubric.load import load_reference

    return load_reference(rubric.reference_path, rubric.reference)


def _spec(rubric, check_id: str):
    return next(c for c in rubric.checks if c.id == check_id)


def test_a_sequence_with_answers_missing_is_not_judged_on_the_ones_that_came_back(tricks):
    """zip() stopped at the shorter list: two right answers of ten used to pass the whole sequence."""
    from grader.checks import REGISTRY
    from grader.checks.base import finish

    spec = _spec(tricks, "sched.performance")
    reference = _reference(tricks)

    def answer(message: dict[str, Any]) -> dict[str, Any]:
        obj = getattr(reference, spec.reference)(**message["init"])
        return {"results": [obj.step(x) for x in message["inputs"][:2]]}  # right, but only two of them

    outcome = REGISTRY[spec.kind](spec).run(_context(tricks, answer))
    result = finish(spec, outcome)
    assert not outcome.passed and result.score == 0, outcome.feedback
    assert "gave 2 result(s) instead of 10, so the sequence could not be checked" in outcome.feedback[0]


def test_dropout_with_keep_prob_1_must_keep_every_unit(tricks):
    """keep_prob = 1 had no rate test (it is statistical only below 1): dropping units there passed."""
    from grader.checks import REGISTRY

    spec = dataclasses.replace(_spec(tricks, "dropout"), params={"keep_probs": [0.5, 1.0], "shape": [100, 100]})
    reference = _reference(tricks)
    import torch

    def answer(message: dict[str, Any]) -> dict[str, Any]:
        x, p, train, *extra = message["args"]
        from grader.protocol import GENERATOR_TAG

        gen = torch.Generator().manual_seed(int(extra[0][GENERATOR_TAG])) if extra else None  # None: a fresh mask
        y = reference.dropout_forward(torch.from_numpy(x), p, train, gen).numpy()
        if train and p == 1.0:
            y = y.copy()
            y[:, :10] = 0  # a tenth of the units dropped at keep_prob 1
        return {"value": y}

    outcome = REGISTRY[spec.kind](spec).run(_context(tricks, answer))
    assert not outcome.passed and outcome.findings == ["wrong_rate"], outcome.feedback
    assert "1,000 of 10,000 units were dropped; with keep_prob = 1 every unit is kept" in "\n".join(outcome.feedback)


@pytest.mark.parametrize("kind,params,phrase", [
    ("dropout", {"keep_probs": [1.0]}, "at least one keep probability must be below 1"),
    ("dropout", {"keep_probs": [0.0, 0.5]}, "keep probabilities in (0, 1]"),
    ("train_eval_modes", {"inits": [{"hidden_units": 8, "dropout": 0.0}], "input": [2, 784]},
     "at least one configuration needs dropout > 0"),
    ("train_eval_modes", {"inits": [{"p": 0.5}], "input": [2, 784]}, "at least one configuration needs dropout > 0"),
    ("module_structure", {"log_probabilities": True}, "log_probabilities needs params.input"),
    ("numeric", {"optional": True}, "an optional check is feedback only: give it points: 0"),
    ("training_loop", {"dataset": ["mnist-5k"], "threshold": 0.5, "epochs": 3, "min_epochs": 1},
     "at least 2 epochs are needed"),
])
def test_rubrics_that_would_leave_a_judgement_untested_are_refused(kind, params, phrase):
    from grader.checks import REGISTRY
    from grader.rubric.model import CheckSpec

    spec = CheckSpec(id="x", kind=kind, question="x", title="x", points=1, target="T", reference="T", params=params)
    problems = REGISTRY[kind].validate_spec(spec)
    assert any(phrase in message for _, message in problems), problems


def test_the_shipped_rubrics_pass_these_rules():
    from grader.rubric.load import load_rubric

    for name in ("a2", "tricks", "hw4", "ds5220"):
        load_rubric(ROOT / "rubrics" / f"{name}.yaml")


def test_the_recorder_sees_model_call_forward_call_and_deep_copies():
    """Both spellings of a forward pass are recorded; a deep copy computes with its own weights and is seen."""
    import copy

    import torch
    from torch import nn

    from grader.training.loops import ForwardRecorder

    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    recorder = ForwardRecorder(model)
    log = recorder.phase(keep_outputs=True)
    x = torch.randn(4, 2, 3)
    a, b = model(x), model.forward(x)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[1].weight.zero_()
        twin[1].bias.fill_(1.0)
    c = twin(x)
    assert log.sizes == [4, 4, 4]
    rows = log.concatenated()
    assert torch.equal(rows[:4], a.detach()) and torch.equal(rows[4:8], b.detach())
    assert torch.equal(c, torch.ones(4, 3)) and torch.equal(rows[8:], c)  # the copy's own weights
    assert list(model.state_dict()) == ["1.weight", "1.bias"] and model.to("cpu") is model and not model.eval().training
    recorder.remove()
    model(x)
    assert "forward" not in vars(model) and log.sizes == [4, 4, 4]  # removed: nothing more is recorded


@pytest.mark.parametrize("grads", [None, [], "missing"], ids=["none", "empty", "absent"])
def test_values_without_gradients_do_not_pass_a_gradient_check(tricks, grads):
    """A reply with the right values and no gradients (student code can write its own reply frame) used to
    pass: the gradient loop ran over zip(grad_wrt, ref_grads, grads or []), which is empty."""
    import torch

    from grader.checks import REGISTRY
    from grader.checks.base import finish

    spec = _spec(tricks, "act.relu")

    def answer(message: dict[str, Any]) -> dict[str, Any]:
        value = torch.relu(torch.from_numpy(message["args"][0])).numpy()
        return {"value": value} if grads == "missing" else {"value": value, "grads": grads}

    outcome = REGISTRY[spec.kind](spec).run(_context(tricks, answer))
    assert not outcome.passed and finish(spec, outcome).score == 0, outcome.feedback
    assert "could not obtain the gradients" in " ".join(outcome.feedback)
