"""Train one model on a labelled set and predict an unlabelled one: the job a training check asks for.

The same function runs in two places: in the sandbox child on the student's
model (`grader.child.operations.training`), and in the trusted parent on
the reference model when a threshold is relative to it
(`grader.training.reference_runs`). Both sides therefore train with exactly
the same harness, settings, data and seed; only the model differs.

Like the harness, it never raises because of the model: what went wrong ends
up in the returned `FitResult`. Two task shapes:

- multi-class: the model outputs (B, n_classes) scores, the loss is
  cross-entropy (log-probabilities are fine too: log_softmax is idempotent),
  the prediction is the argmax;
- binary (hw4 p5): labels are -1/+1, the model outputs one score per image,
  (B,) or (B, 1), the loss is a function ``loss(z, y)`` applied elementwise
  and averaged, and the prediction is the sign of the score.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from grader.training.harness import STUDENT_ERRORS, StudentModelError, TrainReport, TrainSettings, predict_logits, train_model

# Images predicted per forward pass; the prediction budget is checked between chunks.
PREDICT_CHUNK = 1000
# Training images (the first of the training split) a judged model predicts after training, to compare its
# accuracy on what it learned from with its accuracy on the held-out images (`grader.judge.worker.train`).
SEEN_IMAGES = 1000  # as many as a typical evaluation set; more cost prediction time in every judged run


@dataclass
class FitResult:
    """What `fit_and_predict` found: the training report, then the predictions or why there are none."""

    report: TrainReport
    predictions: Tensor | None = None  # (M,) int64: class index, or -1/+1 for a binary task
    problem: str | None = None  # predicting failed: a sentence for the student
    predict_timed_out: bool = False
    predict_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    # Predictions of the model as it arrived, before any training, for the `untrained` images (when asked):
    # a model that already classifies held-out images knows their answers without having learned them.
    untrained_predictions: Tensor | None = None
    untrained_problem: str | None = None  # predicting before training failed (the student's model)
    untrained_timed_out: bool = False  # predicting before training ran out of time (no verdict)


class ScoreColumn(nn.Module):
    """Presents a binary classifier's scores as a (B, 1) column, whether it returns (B,) or (B, 1).

    The harness checks outputs against (B, n_classes); with n_classes=1 a
    (B, 1) column passes and anything else (e.g. (B, 2)) is reported as a
    wrong shape. The wrapped model's parameters are this module's.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Any:  # (B, 1, 28, 28) -> (B, 1)
        out = self.model(x)
        if isinstance(out, Tensor) and out.ndim == 1:
            out = out.unsqueeze(1)  # (B,) -> (B, 1)
        return out


def elementwise_mean_loss(loss: Callable[..., Any], name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """``loss(z, y)`` for one score column and -1/+1 labels, averaged over the batch."""

    def criterion(out: Tensor, target: Tensor) -> Tensor:
        z = out[:, 0]  # (B,)
        value = loss(z, target.to(z.dtype))  # (B,) elementwise, or already a scalar
        if not isinstance(value, Tensor):
            raise TypeError(f"{name}(z, y) returned a {type(value).__name__}; a tensor of losses was expected")
        return value.mean() if value.ndim > 0 else value

    return criterion


def settings_from_plain(data: dict[str, Any]) -> TrainSettings:
    """TrainSettings from a request's plain dict; unknown keys are the grader's mistake."""
    known = {f.name for f in fields(TrainSettings)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
    data = dict(data)
    if data.get("normalize") is not None:
        data["normalize"] = tuple(float(v) for v in data["normalize"])
    return TrainSettings(**data)


def settings_to_kwargs(settings: TrainSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(TrainSettings)}


def _harness_call(model: nn.Module, settings: TrainSettings, *, binary: bool, loss: Callable[..., Any] | None,
                  loss_name: str) -> tuple[nn.Module, dict[str, Any]]:
    """The model as the harness trains it and the keyword arguments of `train_model`: one place for both the
    fit and the step timing, so they run exactly the same step."""
    kwargs = settings_to_kwargs(settings)
    if binary:
        if loss is None:
            raise ValueError("a binary task needs the elementwise loss function")
        model = ScoreColumn(model)
        kwargs.update(loss="callable", n_classes=1, loss_fn=elementwise_mean_loss(loss, loss_name))
    return model, kwargs


def _predict_classes(model: nn.Module, x: Tensor, *, settings: TrainSettings, binary: bool,
                     seconds: float) -> tuple[Tensor | None, str | None, bool]:
    """(predictions, problem, timed out) for uint8 images x: class indices, or -1/+1 for a binary task."""
    started = time.perf_counter()
    chunks: list[Tensor] = []
    try:
        for i in range(0, x.shape[0], PREDICT_CHUNK):
            if i and time.perf_counter() - started > seconds:
                return None, None, True
            scores = predict_logits(model, x[i:i + PREDICT_CHUNK], device=settings.device,
                                    normalize=settings.normalize, n_classes=1 if binary else settings.n_classes,
                                    num_threads=settings.num_threads)  # (chunk, n_classes)
            if binary:
                chunks.append(torch.where(scores[:, 0] > 0, 1, -1).to(torch.int64))  # sign; a score of 0 is -1
            else:
                chunks.append(scores.argmax(dim=1))  # (chunk,)
    except StudentModelError as exc:
        return None, exc.message, False
    except STUDENT_ERRORS as exc:  # e.g. the student's eval() override
        return None, f"predicting raised {type(exc).__name__}: {exc}", False
    return (torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.int64)), None, False


def fit_and_predict(model: nn.Module, train_x: Tensor, train_y: Tensor, eval_x: Tensor, *,
                    settings: TrainSettings, binary: bool = False,
                    loss: Callable[..., Any] | None = None, loss_name: str = "loss",
                    predict_seconds: float = 30.0, untrained: Tensor | None = None) -> FitResult:
    """Train `model` on (train_x, train_y) with the harness, then predict eval_x (uint8, labels never given).

    For a binary task pass `binary=True` and the elementwise `loss(z, y)`;
    labels are -1/+1 and predictions the sign of the score. Prediction stops
    with `predict_timed_out` when it takes longer than `predict_seconds`.
    With `untrained` (uint8 images), the model first predicts those as it
    arrived, before any training (`FitResult.untrained_predictions`): in eval
    mode, without gradients, so the training that follows is unchanged.
    """
    model, kwargs = _harness_call(model, settings, binary=binary, loss=loss, loss_name=loss_name)
    before: tuple[Tensor | None, str | None, bool] | None = None
    if untrained is not None:
        before = _predict_classes(model, untrained, settings=settings, binary=binary, seconds=predict_seconds)
    report = train_model(model, train_x, train_y, **kwargs)
    result = FitResult(report=report)
    if before is not None:
        result.untrained_predictions, result.untrained_problem, result.untrained_timed_out = before
    if not report.ok or report.steps == 0:
        return result
    started = time.perf_counter()
    preds, result.problem, result.predict_timed_out = _predict_classes(model, eval_x, settings=settings,
                                                                      binary=binary, seconds=predict_seconds)
    result.predict_seconds = time.perf_counter() - started
    if result.problem is None and not result.predict_timed_out:
        result.predictions = preds
    return result


# --------------------------------------------------------------------------- step cost

#: Steps per timed call, and timed calls per model (after one warm-up call each): the least is kept, the
#: figure least disturbed by anything else on the machine (a step's work itself does not vary).
TIMED_STEPS = 2
TIMED_ROUNDS = 2
#: Wall-clock cap of one timed call: at least one step always runs, so a very slow model still gets a figure.
TIMED_CALL_MAX_S = 20.0


@dataclass
class StepCost:
    """CPU seconds per training step of each timed model, measured interleaved in one process.

    CPU time of this process (all its threads), not wall time: a busy machine
    stretches the wall clock of both models, not the CPU work of a step. The
    models are timed in turns (A, B, A, B, ...), so a change in the machine's
    speed during the measurement affects both alike.
    """

    seconds: dict[str, float] = field(default_factory=dict)  # name -> least CPU s per step over the rounds
    problems: dict[str, str] = field(default_factory=dict)  # name -> why it has no figure (its training failed)
    steps: int = 0  # steps per timed call
    batch_size: int = 0
    threads: int = 0
    samples: dict[str, list[float]] = field(default_factory=dict)  # name -> CPU s per step of each timed call

    def to_plain(self) -> dict[str, Any]:
        return {"seconds": dict(self.seconds), "problems": dict(self.problems), "steps": self.steps,
                "batch_size": self.batch_size, "threads": self.threads,
                "samples": {k: list(v) for k, v in self.samples.items()}}


def step_cpu_seconds(models: dict[str, tuple[nn.Module, Callable[..., Any] | None]], train_x: Tensor,
                     train_y: Tensor, *, settings: TrainSettings, binary: bool = False, loss_name: str = "loss",
                     steps: int = TIMED_STEPS, rounds: int = TIMED_ROUNDS,
                     conclusive: tuple[str, str, float] | None = None) -> StepCost:
    """Time a few training steps of each model (throwaway instances: they are trained) with the harness's step.

    `models` maps a name to (model, elementwise loss or None). Each model gets
    one warm-up call (first-call costs: memory layout, kernel selection), then
    `rounds` calls of `steps` steps in turns. `conclusive=(slow, fast, ratio)`
    ends the rounds early once `slow` already costs more than `ratio` times
    `fast`, so a very slow model is not timed longer than needed.
    """
    batch = min(settings.batch_size, int(train_y.shape[0]))
    n = min(int(train_y.shape[0]), batch * steps)
    x, y = train_x[:n], train_y[:n]
    timing = dataclasses.replace(settings, epochs=1.0, max_seconds=TIMED_CALL_MAX_S, log_every=max(1, steps))
    cost = StepCost(steps=max(1, n // batch), batch_size=batch)
    calls = {}
    for name, (model, loss) in models.items():
        calls[name] = _harness_call(model, timing, binary=binary, loss=loss, loss_name=loss_name)
    samples: dict[str, list[float]] = {name: [] for name in models}  # warm-up included at index 0
    finished: set[str] = set()
    for round_ in range(rounds + 1):  # round 0 is the warm-up: it pays first-call costs, never a figure
        for name, (model, kwargs) in calls.items():
            if name in cost.problems or name in finished:
                continue
            started = time.process_time()
            report = train_model(model, x, y, **kwargs)
            used = time.process_time() - started
            cost.threads = report.num_threads
            if not report.ok or report.steps == 0:
                cost.problems[name] = report.error or "the loss was not finite"
                continue
            samples[name].append(used / report.steps)
            if round_ > 0 and report.timed_out:  # a call filled the cap: one figure is enough for so slow a model
                finished.add(name)
        if conclusive is not None and round_ > 0:
            slow, fast, ratio = conclusive
            timed_slow, timed_fast = samples.get(slow, [])[1:], samples.get(fast, [])[1:]
            if timed_slow and timed_fast and min(timed_slow) > ratio * min(timed_fast):
                break
        if set(calls) <= finished | set(cost.problems):
            break
    cost.samples = samples
    for name, values in samples.items():
        if len(values) > 1 and name not in cost.problems:
            cost.seconds[name] = float(min(values[1:]))
    return cost
