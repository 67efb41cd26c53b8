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
  ``batch_size``, ``epochs``, ``min_epochs`` (default: ``epochs``);
- ``max_seconds``: not a budget but the floor of a wall-clock safety stop
  (shared by the runs). Training always runs its epochs; the stop is
  ``max(max_seconds / runs, SAFETY_FACTOR x the measured CPU cost of the
  student's step x the steps)``. A run that still hits it stopped because
  of the machine, not the model: the check is *undecided* (0 for now,
  listed for review), never ``too_slow``;
- ``max_slowdown`` (default 20): ``too_slow`` only when a training step of
  the student's model costs more than this many times a step of the
  reference model, both timed in CPU time, in turns, in one process (the
  judge; for a model that cannot be exported, the student's step is timed
  in the sandbox and the reference's in the judge). The feedback gives both
  figures. Without a reference model there is no ``too_slow``;
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
cannot be built or trained), ``refused_graph`` (the judge would not run the
graph: a lookup), ``memorised_answers`` (before any training the model
already classifies the held-out images far better than chance, or better
than training images; or after training better than the training images it
learned from: it carries their answers; judged models only, see
`memorised_verdict`), ``wrong_output_shape``, ``diverged`` (NaN or
infinite loss), ``too_slow`` (budget used up before ``min_epochs``, or
predicting too slow), ``low_accuracy``.
A run that reached no verdict for the grader's reasons (safety stop, no
dataset, the reference failing) makes the check undecided or a grader
error, never a deduction.
"""
from __future__ import annotations

import math
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
from grader.judge.server import get_judge
from grader.rubric.model import CheckSpec
from grader.training.fitting import SEEN_IMAGES, TIMED_STEPS
from grader.training.harness import DEFAULT_BATCH_SIZE, TrainSettings
from grader.training.plan import (
    DataUnavailable,
    Split,
    call_text,
    job_identity,
    load_split,
    threshold_for,
    validate_params,
)

FINDINGS = ("not_done", "refused_graph", "memorised_answers", "wrong_output_shape", "diverged", "too_slow", "low_accuracy")
SEVERITY = {name: i for i, name in enumerate(("error", "timeout", *FINDINGS))}
# Seconds on top of the training and prediction budgets for a request: sending the
# images, building the model, a first slow step.
REQUEST_MARGIN_S = 30.0
SHAPE_PHRASES = ("model output has", "model returned a")
REFERENCE_SLACK = 10  # the reference's time limit, in multiples of the student's budget
SETTING_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs")
# The safety stop, in multiples of the CPU time the student's whole run needs at its measured step cost: CPU
# seconds become wall seconds on a busy machine: 13x more wall than CPU time was measured for a LeNet step with
# -j 2 on two cores shared with other test suites (load average 17).
SAFETY_FACTOR = 40.0
STEP_COST_TIMEOUT_S = 120.0  # warm-up and rounds of both models (a very slow one is cut off after one call)
UNDECIDED = "undecided"
GRADER_ERROR = "grader_error"


@dataclass
class RunOutcome:
    """One trained model's verdict, before the check combines its runs."""

    passed: bool
    finding: str | None
    lines: list[str]
    accuracy: float | None = None
    review: str | None = None  # for an undecided run: why an instructor should look


@dataclass
class StepFigures:
    """CPU seconds per training step of the student's and the reference's model, and where each was timed."""

    student: float
    reference: float
    where: str  # "judge" (both in the judge, in turns) | "sandbox" (the student's in the sandbox)
    batch_size: int
    threads: int

    @property
    def ratio(self) -> float:
        return self.student / self.reference


def _figure(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _severity(finding: str | None) -> int:
    return SEVERITY.get(finding or "", len(SEVERITY))


def _runs(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    runs = params["runs"]
    if runs:
        return [dict(r) for r in runs]
    return [{"init": params["init"], "args": params["args"], "loss": params["loss"]}]


def train_settings(params: Mapping[str, Any], split: Split, *, device: str, budget_s: float,
                   threads: int | None = None) -> dict[str, Any]:
    """The harness settings (plain data) for one run of this check; `threads` as the sandbox's limits say."""
    # Only what the rubric wrote: the declared defaults are the harness's own (TrainSettings), and the reference-run
    # cache key (these settings) stays the same for a rubric that leaves them out.
    given = getattr(params, "given", params.__contains__)
    settings: dict[str, Any] = {k: params[k] for k in SETTING_KEYS if given(k)}
    settings.update(max_seconds=float(budget_s), seed=int(params["seed"]), device=device,
                    normalize=list(split.normalize) if split.normalize else None, num_threads=threads)
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
            return Outcome.grader_error(f"The grader has no dataset for this check ({exc}). This is not your fault; "
                                        "the course staff will fix the setup.", review=f"no dataset: {exc}")
        runs = _runs(p)
        budget = float(p["max_seconds"]) / len(runs)
        self._judged: list[Judged] = []
        verdicts = [self._run_one(ctx, split, run, budget) for run in runs]
        worst = min(verdicts, key=lambda v: _severity(v.finding))
        lines = [line for v in sorted(verdicts, key=lambda v: _severity(v.finding)) for line in v.lines]
        if all(v.passed for v in verdicts):
            return self._method(Outcome(passed=True, feedback=lines))
        if worst.finding in (UNDECIDED, GRADER_ERROR):
            # No run failed because of the student's work; some reached no verdict for the grader's reasons.
            make = Outcome.undecided if any(v.finding == UNDECIDED for v in verdicts) else Outcome.grader_error
            return self._method(make(*lines, review="; ".join(v.review or v.finding or "" for v in verdicts
                                                              if v.finding in (UNDECIDED, GRADER_ERROR))))
        return self._method(Outcome(passed=False, feedback=lines, findings=[worst.finding or "error"]))

    def reference_runs(self, ctx: Context) -> list[Any]:
        """Compute (or read) every cached reference run this check compares with, as `run` would: the
        reference-run warm-up at image build (`grader.training.warm`) calls it so no submission pays for it."""
        p = self.params
        split = load_split(p, data_dir=ctx.data_dir)
        runs = _runs(p)
        budget = float(p["max_seconds"]) / len(runs)
        found = []
        for run in runs:
            if run.get("threshold", threshold_for(p, split.dataset)) is not None and "relative_to_reference" not in run:
                continue
            settings = train_settings(p, split, device=ctx.device, budget_s=budget)
            found.append(self._reference(ctx, split, run, settings, max(10.0, 0.25 * budget)))
        return found

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
        threads = ctx.sandbox.limits.threads if ctx.sandbox is not None else None
        settings = train_settings(p, split, device=ctx.device, budget_s=budget, threads=threads)
        epochs = float(p["epochs"])
        figures = self._step_figures(ctx, split, run, settings)
        if isinstance(figures, RunOutcome):
            return figures
        limit = float(p["max_slowdown"])
        if figures is not None and figures.ratio > limit:
            return RunOutcome(False, "too_slow", [
                f"A training step of {what} (a batch of {figures.batch_size} images) costs "
                f"{_ms(figures.student)} of CPU time against {_ms(figures.reference)} for the reference model, "
                f"timed the same way {_where(figures)}: {figures.ratio:.0f}x slower, and the limit is {limit:g}x. "
                "Make forward faster (vectorise: no Python loops over pixels, samples or channels; no repeated "
                "work)."])
        # The run trains all its epochs; the clock is only a safety stop, generous against the measured step.
        steps = max(1, int(len(split.train_labels)) // int(settings.get("batch_size", DEFAULT_BATCH_SIZE)))
        safety = budget
        if figures is not None:
            safety = max(budget, SAFETY_FACTOR * figures.student * math.ceil(epochs * steps))
        predict_s = max(10.0, 0.25 * safety)
        message = {"op": "train", "target": target, "init": init, "args": args,
                   "settings": dict(settings, max_seconds=safety),
                   "train_images": split.train_images, "train_labels": split.train_labels,
                   "eval_images": split.eval_images, "binary": binary, "loss_target": loss,
                   "predict_seconds": predict_s}
        from grader.training.waiting import budget_progress

        description = f"{self.spec.id}: {what}, {split.dataset}"
        with budget_progress(description, safety, enabled=ctx.progress):
            # Two prediction budgets: the judge also predicts before training (`memorised_verdict`).
            reply = self._train(ctx, split, run, message, safety + 2 * predict_s + REQUEST_MARGIN_S)
        if isinstance(reply, RunOutcome):
            return reply
        if not reply.ok:
            return self._reply_problem(reply, what, safety, figures)
        verdict = self._read_reply(reply.value, what, split, safety, epochs, figures)
        if isinstance(verdict, RunOutcome):
            return verdict
        accuracy, report = verdict
        if self._judged and self._judged[-1].method == "judge":
            known = memorised_verdict(reply.value, what, split, accuracy, figures)
            if known is not None:
                return known
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

    def _reply_problem(self, reply: Any, what: str, safety: float, figures: StepFigures | None) -> RunOutcome:
        if reply.kind == "timeout":
            return _stopped(f"Training {what} {reply.message} (the grader's safety stop is {safety:.0f} s)", figures)
        if reply.kind in ("student", "not_plain", "not_loaded"):
            return RunOutcome(False, "not_done", [f"{what} could not be trained: {reply.describe()}"])
        failed = reply_failure(reply, f"Training {what}")
        return RunOutcome(False, failed.findings[0], failed.feedback)

    def _read_reply(self, value: Any, what: str, split: Split, safety: float, epochs: float,
                    figures: StepFigures | None) -> tuple[float, dict[str, Any]] | RunOutcome:
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
            return _stopped(f"Training {what} reached the grader's {safety:.0f} s safety stop after {epochs_done:.2g} "
                            f"of {epochs:g} epoch(s) ({steps} step(s))", figures)
        if value.get("predict_timed_out"):
            return _stopped(f"{what} trained, but predicting {len(split.eval_labels):,} images took longer than "
                            f"{value.get('predict_seconds', 0):.0f} s", figures)
        if isinstance(value.get("problem"), str):
            problem = value["problem"]
            finding = "wrong_output_shape" if problem.startswith(SHAPE_PHRASES) else "not_done"
            return RunOutcome(False, finding, [f"{what} trained, but predicting failed: {problem}"])
        preds = value.get("predictions")
        m = len(split.eval_labels)
        if not isinstance(preds, np.ndarray) or preds.dtype.kind not in "iu" or preds.shape != (m,):
            return RunOutcome(False, "error", [f"Training {what} sent back predictions that are not {m} class indices."])
        return float((preds == split.eval_labels).mean()), report

    # the cost of a step ------------------------------------------------------------------------

    def _step_figures(self, ctx: Context, split: Split, run: dict[str, Any],
                      settings: dict[str, Any]) -> StepFigures | RunOutcome | None:
        """CPU seconds per step of the student's and the reference's model, timed in turns in the judge.

        None when there is nothing to compare with (no reference model, no
        sandbox, a model whose training fails at once: the run itself reports
        that); then no run can be ``too_slow``.
        """
        p = self.params
        if not self.spec.reference or ctx.sandbox is None or not callable(getattr(ctx.reference, self.spec.reference, None)):
            return None
        init, args = run.get("init") or {}, run.get("args") or []
        binary = p["classes"] is not None
        batch = int(settings.get("batch_size", DEFAULT_BATCH_SIZE))
        n = min(len(split.train_labels), batch * TIMED_STEPS)
        images, labels = split.train_images[:n], split.train_labels[:n]
        ref_loss = run.get("reference_loss") or run.get("loss")
        reference = {"path": str(ctx.rubric.reference_path), "name": ctx.rubric.reference_name,
                     "factory": self.spec.reference, "init": init, "args": args, "loss": ref_loss if binary else None}
        slowdown = float(p["max_slowdown"])
        job = {"job": "step_cost", "settings": settings, "train_images": images, "train_labels": labels,
               "binary": binary, "loss_name": run.get("loss") or "loss", "reference": reference,
               "max_slowdown": slowdown}
        shape = list(split.train_images.shape[1:])
        example = [4, 1, *shape] if len(shape) == 2 else [4, *shape]
        judged = judge_model(ctx, self.spec, job, target=self.spec.target or "", init=init, args=args,
                             seed=int(settings["seed"]), input_shape=example,
                             loss=run.get("loss") if binary else None, timeout=STEP_COST_TIMEOUT_S)
        if judged.method == "refused":
            return None  # the training request that follows is refused the same way and says why
        self._judged.append(judged)  # where the figures come from: a too_slow verdict says so
        if judged.method == "judge":
            if judged.reply is None or not judged.reply.ok or not isinstance(judged.reply.value, dict):
                return None  # the model fails to train at all: the training run reports how
            return self._figures(judged.reply.value, judged.reply.value, "judge")
        # Not exportable: the student's step in the sandbox (see the child's step_cost for why a faked
        # figure gains nothing), the reference's in the judge, with the same settings and threads.
        student = ctx.request(self.spec, {"op": "step_cost", "target": self.spec.target, "init": init, "args": args,
                                          "settings": settings, "train_images": images, "train_labels": labels,
                                          "binary": binary, "loss_target": run.get("loss")},
                              timeout=STEP_COST_TIMEOUT_S)
        if not student.ok or not isinstance(student.value, dict):
            return None
        ref = get_judge().request({**{k: v for k, v in job.items() if k != "max_slowdown"},
                                   "threads": settings.get("num_threads"), "memory_mb": ctx.sandbox.limits.memory_mb},
                                  timeout=STEP_COST_TIMEOUT_S)
        if not ref.ok or not isinstance(ref.value, dict):
            return None
        return self._figures(student.value, ref.value, "sandbox")

    @staticmethod
    def _figures(student: dict[str, Any], reference: dict[str, Any], where: str) -> StepFigures | RunOutcome | None:
        seconds_s, seconds_r = student.get("seconds"), reference.get("seconds")
        problems = reference.get("problems")
        if isinstance(problems, dict) and isinstance(problems.get("reference"), str):
            return RunOutcome(False, GRADER_ERROR, [
                "The grader could not time the reference model for comparison. This is not your fault; the course "
                "staff will look at it."], review=f"reference model failed in the step timing: {problems['reference']}")
        s = _figure(seconds_s.get("student")) if isinstance(seconds_s, dict) else None
        r = _figure(seconds_r.get("reference")) if isinstance(seconds_r, dict) else None
        if s is None or r is None:
            return None
        batch, threads = reference.get("batch_size"), reference.get("threads")
        return StepFigures(s, r, where, batch if isinstance(batch, int) else 0, threads if isinstance(threads, int) else 0)

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
            return RunOutcome(False, GRADER_ERROR, [f"The grader could not train the reference model for comparison "
                                                    f"({exc}). This is not your fault; the course staff will look at it."],
                              review=f"reference training failed: {exc}"), ""
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


# An untrained model that gets this far from chance towards perfect on the held-out images knows their answers:
# 3,000 randomly initialised LR models on hw4's 4-vs-9 task reach at most 75% (chance 50%, bar 87.5%), 30 random
# LeNets, ds5220 CNNs and a2 MLPs at most 17% of ten classes (bar 77.5%); a memorised test set gives 100%.
UNTRAINED_BAR = 0.75
# The same model on held-out and on training images: a random model does as well on both, up to sampling noise,
# and a trained one at least as well on the images it trained on; a model that carries the test set's answers
# does better on it. Allowed gap: this much plus 5 standard errors.
MEMORY_GAP = 0.05
MEMORY_GAP_SE = 5.0


def _chance(labels: np.ndarray) -> float:
    """The accuracy of the best constant guess: the largest class's share."""
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / counts.sum()) if counts.size else 0.0


def _gap_bar(a: float, n_a: int, b: float, n_b: int) -> float:
    """How much better on one set of images than on another a model may do by sampling noise alone."""
    se = math.sqrt(max(a * (1 - a), 1e-4) / max(n_a, 1) + max(b * (1 - b), 1e-4) / max(n_b, 1))
    return MEMORY_GAP + MEMORY_GAP_SE * se


def memorised_verdict(value: dict[str, Any], what: str, split: Split, accuracy: float,
                      figures: StepFigures | None = None) -> RunOutcome | None:
    """The judge's predictions before and after training, judged: None when the model knew nothing it should not.

    Whatever form a memorised answer key takes (a table in trainable parameters or in constants, images to
    match, a hash), the model carries it before it has seen a training image, and no untrained model classifies
    held-out images far better than chance, or better than it classifies training images. A key that training
    itself switches on shows after training: a model that learned does at least as well on the training images
    it learned from as on held-out ones. The judge sends the predictions for the evaluation images followed by
    as many training images before training, and for the first `SEEN_IMAGES` training images after it
    (`grader.judge.worker.train`); `accuracy` is the trained model's on the evaluation images.
    """
    m = len(split.eval_labels)
    train_labels, seen_labels = split.train_labels[:m], split.train_labels[:SEEN_IMAGES]
    n, k = len(train_labels), len(seen_labels)
    problem = value.get("untrained_problem")
    if isinstance(problem, str):
        return RunOutcome(False, "not_done", [f"{what} could not be evaluated before training: {problem}"])
    if value.get("untrained_timed_out") is True:
        return _stopped(f"Predicting {m + n:,} images with {what} before training took longer than the grader's "
                        "prediction budget", figures)
    preds, after = value.get("untrained_predictions"), value.get("seen_predictions")
    if not (isinstance(preds, np.ndarray) and preds.dtype.kind in "iu" and preds.shape == (m + n,)
            and isinstance(after, np.ndarray) and after.dtype.kind in "iu" and after.shape == (k,)):
        return RunOutcome(False, "error", [f"Training {what} sent back no predictions of training images, or none "
                                           "from before training."])
    held_out = float((preds[:m] == split.eval_labels).mean()) if m else 0.0
    seen = float((preds[m:] == train_labels).mean()) if n else 0.0
    learned = float((after == seen_labels).mean()) if k else 0.0
    chance = _chance(split.eval_labels)
    bar = chance + UNTRAINED_BAR * (1.0 - chance)
    before_gap, after_gap = _gap_bar(held_out, m, seen, n), _gap_bar(accuracy, m, learned, k)
    if held_out >= bar:
        found = (f"Before any training, {what} already classified {held_out:.1%} of the {m:,} held-out "
                 f"{split.dataset} images correctly: far above chance ({chance:.0%}; no untrained model reaches "
                 f"{bar:.1%}).")
    elif held_out - seen > before_gap:
        found = (f"Before any training, {what} already classified {held_out:.1%} of the {m:,} held-out "
                 f"{split.dataset} images correctly, {held_out - seen:.1%} more than {n:,} training images "
                 f"({seen:.1%}); an untrained model does as well on both, up to {before_gap:.1%}.")
    elif accuracy - learned > after_gap:
        found = (f"After training, {what} classified {accuracy:.1%} of the {m:,} held-out {split.dataset} images "
                 f"correctly but only {learned:.1%} of {k:,} images it was trained on, {accuracy - learned:.1%} "
                 f"less; a model that learned does at least as well on what it learned from (up to "
                 f"{after_gap:.1%} worse by chance).")
    else:
        return None
    return RunOutcome(False, "memorised_answers", [
        f"{found} A model cannot know those answers without learning them: this one carries them in its weights "
        "or constants (for example a memorised copy of the public test set), so its accuracy says nothing about "
        "what it learned. A model must get its answers from the training data, starting from a random "
        "initialisation; no points for this run."])


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _where(figures: StepFigures) -> str:
    if figures.where == "judge":
        return f"in one process, in turns ({figures.threads} thread(s))"
    return f"(yours in the sandbox, the reference's in the grader's judge process, {figures.threads} thread(s) each)"


def _stopped(what: str, figures: StepFigures | None) -> RunOutcome:
    """A run cut off by the grader's safety stop although its step cost is within the limit: no verdict."""
    measured = (f" A step of your model costs {_ms(figures.student)} of CPU time, {figures.ratio:.1f}x the "
                f"reference's {_ms(figures.reference)}, within the limit." if figures is not None else "")
    return RunOutcome(False, UNDECIDED, [
        f"{what}.{measured} The grader ran out of time, not your model: this is not counted against you, and the "
        "course staff will review this check."],
        review=f"training stopped by the grader's safety stop: {what}" + (
            f" (step cost {figures.ratio:.1f}x the reference's)" if figures else " (no step timing to compare)"))


class ReferenceFailed(Exception):
    """The reference model did not train under the check's budget: the rubric's problem."""

