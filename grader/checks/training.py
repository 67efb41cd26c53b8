"""Kind ``training``: train the student's model with the grader's harness and grade the accuracy it reaches.

The child builds ``target(**init)`` (a class or a factory such as
``build_mlp``), trains it on the rubric's dataset subset with a fixed budget
and seed, and returns predictions for held-out images it gets without
labels; the accuracy is computed here. Params (see `grader.training.plan`
for the data ones):

- ``dataset`` (name or preference list), ``train_size``, ``eval_size``,
  ``seed``, ``normalize`` (``dataset`` | [mean, std] | null), ``classes``
  (two classes, or one pair per dataset: a binary task with labels -1/+1);
- ``optimizer`` (adam | sgd), ``lr``, ``momentum``, ``weight_decay``,
  ``batch_size``, ``epochs``, ``max_seconds`` (the budget of the whole
  check, shared by its runs), ``min_epochs`` (default: ``epochs``; a run
  stopped by the budget before that is ``too_slow``);
- ``threshold`` (one accuracy or one per dataset) or
  ``relative_to_reference: delta`` (the reference model, trained the same
  way here in the parent and cached, minus delta);
- ``runs``: a list of ``{init, args, loss, reference_loss, threshold}`` to
  train in turn (``LeNet()`` and ``LeNet(full_c3=True)``; ``LR`` with
  ``logistic_loss`` and with ``loss_function``); default one run with
  ``params.init``. ``loss`` names the student's elementwise loss ``loss(z, y)``
  for a binary task; the reference run uses the reference's function of the
  same name, or ``reference_loss``.

Findings, most severe first (only the most severe is reported, so a rubric
item for a mild one never hides a worse one): ``not_done`` (no model, it
cannot be built or trained), ``wrong_output_shape``, ``diverged`` (NaN or
infinite loss), ``too_slow`` (budget used up before ``min_epochs``, or
predicting too slow), ``low_accuracy``.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Mapping

import numpy as np
import torch

from grader.checks import register
from grader.checks.base import Check, Context, Outcome, reply_failure
from grader.checks.judged import Judged, judge_model, with_method
from grader.checks.options import NAME, POSITIVE, Option
from grader.checks.training_options import DATA_OPTIONS, optimiser_options
from grader.rubric.model import CheckSpec
from grader.training.harness import TrainSettings
from grader.training.plan import (
    DataUnavailable,
    Split,
    call_text,
    job_identity,
    load_split,
    num_threads,
    threshold_for,
    validate_params,
)

FINDINGS = ("not_done", "refused_graph", "wrong_output_shape", "diverged", "too_slow", "low_accuracy")
SEVERITY = {name: i for i, name in enumerate(("error", "timeout", *FINDINGS))}
# Seconds on top of the training and prediction budgets for a request: sending the
# images, building the model, a first slow step.
REQUEST_MARGIN_S = 30.0
SHAPE_PHRASES = ("model output has", "model returned a")
REFERENCE_SLACK = 10  # the reference's time limit, in multiples of the student's budget
SETTING_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs")


@dataclass
class RunOutcome:
    """One trained model's verdict, before the check combines its runs."""

    passed: bool
    finding: str | None
    lines: list[str]
    accuracy: float | None = None


def _severity(finding: str | None) -> int:
    return SEVERITY.get(finding or "", len(SEVERITY))


def _runs(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    runs = params["runs"]
    if runs:
        return [dict(r) for r in runs]
    return [{"init": params["init"], "args": params["args"], "loss": params["loss"]}]


def train_settings(params: Mapping[str, Any], split: Split, *, device: str, budget_s: float) -> dict[str, Any]:
    """The harness settings (plain data) for one run of this check."""
    # Only what the rubric wrote: the declared defaults are the harness's own (TrainSettings), and the reference-run
    # cache key (these settings) stays the same for a rubric that leaves them out.
    given = getattr(params, "given", params.__contains__)
    settings: dict[str, Any] = {k: params[k] for k in SETTING_KEYS if given(k)}
    settings.update(max_seconds=float(budget_s), seed=int(params["seed"]), device=device,
                    normalize=list(split.normalize) if split.normalize else None, num_threads=num_threads())
    if "batch_size" in settings:
        settings["batch_size"] = int(settings["batch_size"])
    return settings


@register
class TrainingCheck(Check):
    kind = "training"
    uses_evaluation_labels = True  # the child must never read the test labels (engine.protected_paths)
    findings = Check.findings + FINDINGS
    options = DATA_OPTIONS + optimiser_options(TrainSettings) + (
        Option("weight_decay", {"type": "number", "minimum": 0}, "weight decay", TrainSettings.weight_decay),
        Option("epochs", POSITIVE, "epochs of training (may be fractional)", TrainSettings.epochs),
        Option("min_epochs", POSITIVE, "epochs that must fit in the budget, or too_slow (default: epochs)"),
        Option("args", {"type": "array"}, "positional arguments the model is built with", []),
        Option("loss", NAME, "the student's elementwise loss(z, y) for a binary task"),
        Option("runs", {"type": "array", "minItems": 1, "items": {"type": "object", "additionalProperties": False,
                                                                   "properties": {
                   "init": {"type": "object"}, "args": {"type": "array"}, "loss": NAME, "reference_loss": NAME,
                   "threshold": {}, "relative_to_reference": {"type": "number"}}}},
               "models trained in turn: [{init, args, loss, reference_loss, threshold}] (default: one, from init)"),
    )

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec) + validate_params(spec.params)
        p = cls.params_of(spec)
        for i, run in enumerate(_runs(p)):
            if not isinstance(run.get("init", {}), dict) or not isinstance(run.get("args", []), list):
                problems.append((f"params.runs[{i}]", "init must be a mapping of keyword arguments and args a list"))
            if p["classes"] is not None and not run.get("loss"):
                problems.append((f"params.runs[{i}].loss", "a binary task (params.classes) needs the name of the "
                                                           "student's loss function, e.g. loss: logistic_loss"))
        if p["classes"] is None and any(r.get("loss") for r in _runs(p)):
            problems.append(("params.classes", "a student loss function is only used for a binary task: give params.classes"))
        return problems

    @classmethod
    def validate_with_reference(cls, spec: CheckSpec, reference: ModuleType) -> list[tuple[str, str]]:
        problems = []
        for i, run in enumerate(_runs(cls.params_of(spec))):
            name = run.get("reference_loss") or run.get("loss")
            if name and not callable(getattr(reference, name, None)):
                problems.append((f"params.runs[{i}]", f"the reference module has no loss function {name!r} "
                                                      "(set reference_loss to the reference's name for it)"))
        return problems

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        try:
            split = load_split(p, data_dir=ctx.data_dir)
        except DataUnavailable as exc:
            return Outcome.fail("error", f"The grader has no dataset for this check ({exc}). This is not your fault; "
                                "please tell the course staff.")
        runs = _runs(p)
        budget = float(p["max_seconds"]) / len(runs)
        self._judged: list[Judged] = []
        verdicts = [self._run_one(ctx, split, run, budget) for run in runs]
        worst = min(verdicts, key=lambda v: _severity(v.finding))
        lines = [line for v in sorted(verdicts, key=lambda v: _severity(v.finding)) for line in v.lines]
        if all(v.passed for v in verdicts):
            return self._method(Outcome(passed=True, feedback=lines))
        return self._method(Outcome(passed=False, feedback=lines, findings=[worst.finding or "error"]))

    def _method(self, outcome: Outcome) -> Outcome:
        """Say whether the models were trained by the judge on their exported graphs or in the sandbox."""
        sandboxed = [j for j in self._judged if j.method != "judge"]
        return with_method(outcome, sandboxed[0] if sandboxed else self._judged[0]) if self._judged else outcome

    def _train(self, ctx: Context, split: Split, run: dict[str, Any], message: dict[str, Any], timeout: float) -> Any:
        """Train in the judge when the model (and its loss) export; otherwise in the sandbox, as before."""
        shape = list(split.train_images.shape[1:])
        example = [4, 1, *shape] if len(shape) == 2 else [4, *shape]
        job = {"job": "train", **{k: message[k] for k in ("settings", "train_images", "train_labels", "eval_images",
                                                          "binary", "predict_seconds")},
               "loss_name": message["loss_target"] or "loss", "eval_labels": split.eval_labels}
        judged = judge_model(ctx, self.spec, job, target=message["target"], init=message["init"],
                             args=message["args"], seed=int(message["settings"]["seed"]), input_shape=example,
                             loss=message["loss_target"] if message["binary"] else None, timeout=timeout)
        self._judged.append(judged)
        if judged.method == "refused" and judged.outcome is not None:
            return RunOutcome(False, "refused_graph", judged.outcome.feedback)
        if judged.method == "judge":
            return judged.reply
        return ctx.request(self.spec, message, timeout=timeout)

    # one run ---------------------------------------------------------------------------------

    def _run_one(self, ctx: Context, split: Split, run: dict[str, Any], budget: float) -> RunOutcome:
        p = self.params
        target = self.spec.target or ""
        init, args = run.get("init") or {}, run.get("args") or []
        call = call_text(target, args, init)
        binary = p["classes"] is not None
        loss = run.get("loss")
        what = call + (f" with {loss}" if loss else "")
        settings = train_settings(p, split, device=ctx.device, budget_s=budget)
        predict_s = max(10.0, 0.25 * budget)
        message = {"op": "train", "target": target, "init": init, "args": args, "settings": settings,
                   "train_images": split.train_images, "train_labels": split.train_labels,
                   "eval_images": split.eval_images, "binary": binary, "loss_target": loss,
                   "predict_seconds": predict_s}
        epochs = float(p["epochs"])
        from grader.training.waiting import budget_progress

        description = f"{self.spec.id}: {what}, {split.dataset}"
        with budget_progress(description, budget, enabled=ctx.progress):
            reply = self._train(ctx, split, run, message, budget + predict_s + REQUEST_MARGIN_S)
        if isinstance(reply, RunOutcome):
            return reply
        if not reply.ok:
            return self._reply_problem(reply, what, budget)
        verdict = self._read_reply(reply.value, what, split, budget, epochs)
        if isinstance(verdict, RunOutcome):
            return verdict
        accuracy, report = verdict
        threshold, basis = self._threshold(ctx, split, run, settings, predict_s)
        if isinstance(threshold, RunOutcome):
            return threshold
        seconds = float(report["seconds"])
        done = f"{report['epochs_done']:.2g} epoch(s) in " + (f"{seconds:.1f} s" if seconds >= 0.1 else "under 0.1 s")
        got = (f"{what} reached {accuracy:.1%} accuracy on {len(split.eval_labels):,} held-out {split.dataset} images "
               f"after {done}")
        if accuracy + 1e-12 >= threshold:
            return RunOutcome(True, None, [f"{got}; needed {threshold:.1%}{basis}."], accuracy)
        chance = 1.0 / max(len(split.classes), 2)
        level = f" That is chance level ({chance:.0%}): the model did not learn at all." if accuracy < chance + 0.05 else ""
        arrive = "normalised (mean 0, std 1)" if split.normalize else "scaled to [0, 1]"
        return RunOutcome(False, "low_accuracy", [
            f"{got}: below the {threshold:.1%} needed{basis}.{level} Training ran, but the model learned too little: "
            f"check the architecture against the handout (layers, activations, what forward returns) and anything "
            f"that holds learning back (detached tensors, frozen or re-created layers, inputs scaled again although "
            f"the images arrive {arrive})."], accuracy)

    def _reply_problem(self, reply: Any, what: str, budget: float) -> RunOutcome:
        if reply.kind == "timeout":
            return RunOutcome(False, "too_slow", [
                f"Training {what} {reply.message}: the training budget is {budget:g} s. A step of your model takes "
                "far too long; make forward faster (no Python loops over pixels or samples)."])
        if reply.kind in ("student", "not_plain", "not_loaded"):
            return RunOutcome(False, "not_done", [f"{what} could not be trained: {reply.describe()}"])
        failed = reply_failure(reply, f"Training {what}")
        return RunOutcome(False, failed.findings[0], failed.feedback)

    def _read_reply(self, value: Any, what: str, split: Split, budget: float,
                    epochs: float) -> tuple[float, dict[str, Any]] | RunOutcome:
        """(accuracy, report) from the child's reply, or the verdict on what went wrong."""
        if not isinstance(value, dict) or not isinstance(value.get("report"), dict):
            return RunOutcome(False, "error", [f"Training {what} sent back a malformed reply."])
        report = value["report"]
        error, steps = report.get("error"), report.get("steps")
        epochs_done = report.get("epochs_done")
        if not isinstance(steps, int) or not isinstance(epochs_done, (int, float)):
            return RunOutcome(False, "error", [f"Training {what} sent back a malformed report."])
        if isinstance(error, str):
            finding = "wrong_output_shape" if error.startswith(SHAPE_PHRASES) else "not_done"
            binary = self.params["classes"] is not None
            hint = " For two classes the model must output one score per image: shape (B,) or (B, 1)." \
                if finding == "wrong_output_shape" and binary else ""
            return RunOutcome(False, finding, [f"Training {what} failed: {error}.{hint}"])
        if report.get("diverged"):
            last = report.get("final_loss")
            return RunOutcome(False, "diverged", [
                f"Training {what} diverged: the loss became NaN or infinite at step {steps + 1}"
                + (f" (last finite loss {last:.4g})" if isinstance(last, (int, float)) else "")
                + ". Look for log(0), division by zero or exp overflow in forward or the loss (use log_softmax / "
                "logsigmoid rather than log(softmax)), and for uninitialised or huge weights."])
        min_epochs = float(self.params["min_epochs"] or epochs)
        if report.get("timed_out") and epochs_done + 1e-9 < min_epochs:
            per_step = report.get("seconds", budget) / max(steps, 1)
            return RunOutcome(False, "too_slow", [
                f"Training {what} used up the {budget:g} s budget after {epochs_done:.2g} of {epochs:g} epoch(s) "
                f"({steps} step(s), {per_step:.2f} s per step); at least {min_epochs:g} epoch(s) are needed. "
                "Make forward faster (vectorise: no Python loops over pixels, samples or channels)."])
        if value.get("predict_timed_out"):
            return RunOutcome(False, "too_slow", [
                f"{what} trained, but predicting {len(split.eval_labels):,} images took longer than "
                f"{value.get('predict_seconds', 0):.0f} s. Make forward faster."])
        if isinstance(value.get("problem"), str):
            problem = value["problem"]
            finding = "wrong_output_shape" if problem.startswith(SHAPE_PHRASES) else "not_done"
            return RunOutcome(False, finding, [f"{what} trained, but predicting failed: {problem}"])
        preds = value.get("predictions")
        m = len(split.eval_labels)
        if not isinstance(preds, np.ndarray) or preds.dtype.kind not in "iu" or preds.shape != (m,):
            return RunOutcome(False, "error", [f"Training {what} sent back predictions that are not {m} class indices."])
        return float((preds == split.eval_labels).mean()), report

    # thresholds --------------------------------------------------------------------------------

    def _threshold(self, ctx: Context, split: Split, run: dict[str, Any], settings: dict[str, Any],
                   predict_s: float) -> tuple[float, str] | tuple[RunOutcome, str]:
        p = self.params
        absolute = run.get("threshold", threshold_for(p, split.dataset))
        if isinstance(absolute, dict):
            absolute = absolute[split.dataset]
        if absolute is not None and "relative_to_reference" not in run:
            return float(absolute), f" on {split.dataset}"
        delta = float(run.get("relative_to_reference", p["relative_to_reference"] or 0.0))
        try:
            ref = self._reference(ctx, split, run, settings, predict_s)
        except ReferenceFailed as exc:
            return RunOutcome(False, "error", [f"The grader could not train the reference model for comparison "
                                               f"({exc}). This is not your fault; please tell the course staff."]), ""
        return ref.accuracy - delta, f" (the reference model reaches {ref.accuracy:.1%} with the same budget, minus {delta:.1%})"

    def _reference(self, ctx: Context, split: Split, run: dict[str, Any], settings: dict[str, Any], predict_s: float):
        from grader.training.fitting import fit_and_predict, settings_from_plain
        from grader.training.reference_runs import ReferenceRun, reference_run
        from grader.training.waiting import budget_progress

        init, args = run.get("init") or {}, run.get("args") or []
        loss_name = run.get("reference_loss") or run.get("loss")
        factory = getattr(ctx.reference, self.spec.reference or "")
        loss = getattr(ctx.reference, loss_name) if loss_name else None
        plain = dict(settings, num_threads=None)  # threads change speed, not results: not part of the key
        job = {"kind": "train", "reference": self.spec.reference, "init": init, "args": args, "loss": loss_name,
               "settings": plain, **job_identity(split, self.params)}

        def compute() -> ReferenceRun:
            torch.manual_seed(int(settings["seed"]))
            model = factory(*args, **init)
            # The reference must train all its epochs, however busy the machine is now: a run cut short by
            # the clock would cache a lower accuracy for good. Its time limit is only a safety net.
            slack = dict(settings, max_seconds=REFERENCE_SLACK * float(settings["max_seconds"]))
            with budget_progress(f"{self.spec.id}: reference {call_text(self.spec.reference or '', args, init)} (cached after)",
                                 settings["max_seconds"], enabled=ctx.progress):
                result = fit_and_predict(model, torch.from_numpy(split.train_images), torch.from_numpy(split.train_labels),
                                         torch.from_numpy(split.eval_images), settings=settings_from_plain(slack),
                                         binary=self.params["classes"] is not None,
                                         loss=loss, loss_name=loss_name or "loss", predict_seconds=predict_s * REFERENCE_SLACK)
            rep = result.report
            if result.predictions is None or not rep.ok or rep.timed_out:
                raise ReferenceFailed(rep.error or result.problem or ("diverged" if rep.diverged else
                                      f"stopped after {rep.epochs_done:.2g} epochs, in {rep.seconds:.0f} s"))
            acc = float((result.predictions.numpy() == split.eval_labels).mean())
            return ReferenceRun(accuracy=acc, epochs_done=rep.epochs_done, seconds=rep.seconds, final_loss=rep.final_loss)

        return reference_run(job, compute, reference_source=ctx.rubric.reference_path.read_text(), device=ctx.device)


class ReferenceFailed(Exception):
    """The reference model did not train under the check's budget: the rubric's problem."""

