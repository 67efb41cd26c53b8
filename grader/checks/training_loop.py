"""Kind ``training_loop``: run the student's own ``train_one_epoch`` / ``test_one_epoch`` and check their contracts.

The child builds the student's model (``target``), hands it with real
DataLoaders and an optimizer to the student's loops for a few epochs
(`grader.training.loops`), and records what the model really saw and
output. Here, in the parent, every claim the loops make is checked against
those records:

- ``train_one_epoch`` returns ``(losses, counter, num_correct)`` and
  ``num_correct`` equals a recount of the predictions made during the epoch;
- ``test_one_epoch`` returns ``(test_loss, num_correct)`` on a validation
  split (held out from the training images): ``num_correct`` equals a
  recount and ``test_loss`` is the mean negative log-likelihood over the
  validation set (recomputed from the model's outputs);
- training lowers the loss (validation loss, recomputed, or the training
  losses the loop logged);
- the trained model's accuracy on the real test images, which the child gets
  without labels, reaches the threshold (absolute, or relative to the
  reference loops and model, trained the same way and cached).

Params: ``train_function``, ``test_function`` (the student's names, default
``train_one_epoch`` / ``test_one_epoch``; the reference's are the same unless
``reference_train_function`` / ``reference_test_function`` say), the data params of
`grader.training.plan` (plus ``val_size``), and ``optimizer``, ``lr``,
``momentum``, ``batch_size``, ``test_batch_size``, ``epochs``,
``log_interval``, ``max_seconds``, ``min_epochs``, ``loss_rtol``, ``max_slowdown``.

``max_seconds`` is a safety stop, not a budget: the loops run their epochs,
and only when the stop cuts them short is their speed judged, in CPU time
per epoch against one epoch of the reference loops timed in the judge:
``too_slow`` beyond ``max_slowdown`` (default 20) times, with both figures;
otherwise the check is undecided (0 until reviewed), never a deduction.

Findings: ``not_done`` (the loops or the model cannot run; reported alone),
``wrong_return``, ``wrong_num_correct``, ``wrong_test_loss``,
``loss_not_decreasing``, ``too_slow``, ``low_accuracy``. Each is an
independent mistake, so all that apply are reported: give each a rubric item.

The checks fail closed: when the records cannot show what a claim must be
judged against (the model the loop was given was never called, its outputs
are not (batch, classes) scores, or the calls do not line up with the
loader's batches), the claim's finding is reported with a sentence saying
what the grader could not see and why. A claim is never accepted because it
could not be checked. A percentage returned for a count gets a hint, and the
accuracy of a model that the student's loops feed flattened images is
measured the same way (``input_layout`` in the reply), with a note.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Mapping

import numpy as np
import torch

from grader.checks import register
from grader.checks.base import Check, Context, Outcome, reply_failure
from grader.checks.options import NAME, NONNEG, POS_INT, Option
from grader.checks.training_options import DATA_OPTIONS, optimiser_options
from grader.judge.server import get_judge
from grader.rubric.model import CheckSpec
from grader.training.loops import LoopSettings
from grader.training.plan import (
    DataUnavailable,
    Split,
    job_identity,
    load_split,
    threshold_for,
    validate_params,
)

FINDINGS = ("not_done", "wrong_return", "wrong_num_correct", "wrong_test_loss", "loss_not_decreasing", "too_slow",
            "low_accuracy")
LOOP_KEYS = ("optimizer", "lr", "momentum", "batch_size", "test_batch_size", "epochs", "log_interval")
REQUEST_MARGIN_S = 30.0
MAX_CALLS_PER_BATCH = 3
LOSS_DROP = 1e-3  # relative drop that counts as "the loss went down" (not float noise)  # a loop may call the model more than once per batch (e.g. again for the prediction)


# --- reading what the student returned ---------------------------------------------------------


def as_number(value: Any) -> float | None:
    """A plain number, a one-element array (a returned tensor), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value.reshape(()))
    return None


def as_count(value: Any) -> int | None:
    number = as_number(value)
    if number is None or not math.isfinite(number) or number != int(number):
        return None
    return int(number)


def describe_value(value: Any) -> str:
    if isinstance(value, dict) and "not_plain" in value:
        return f"something that is not plain data ({value['not_plain']})"
    if isinstance(value, np.ndarray):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, list):
        return f"a sequence of {len(value)} value(s)"
    return repr(value)


def looks_like_percentage(number: float, recount: int, total: int) -> bool:
    """True when `number` is 100 * recount / total, to within rounding to a whole percent."""
    percent = 100.0 * recount / total
    return math.isfinite(number) and 0 <= number <= 100 and abs(number - percent) <= 0.5 + 1e-9


def count_problem(what: str, got: Any, recount: int, total: int) -> str | None:
    """None if `got` is the recount; else a sentence with expected versus actual."""
    count = as_count(got)
    if count == recount:
        return None
    number = as_number(got)
    if count is None and number is not None and 0 <= number <= 1 and recount > 1:
        return (f"{what} is {number:.4g}, which looks like an accuracy; it should be the number of correct "
                f"predictions ({recount:,} of {total:,} here).")
    if number is not None and total > 0 and total != 100 and looks_like_percentage(number, recount, total):
        return (f"{what} should be a count of correct predictions ({recount:,} of {total:,} here), not a "
                f"percentage ({number:.4g}%): return the number of correct predictions, not 100 * correct / total.")
    if count is None:
        return f"{what} should be an integer count of correct predictions; got {describe_value(got)}."
    return (f"{what} is {count:,}, but the model's predictions during that pass were right {recount:,} times "
            f"out of {total:,}. Count with (output.argmax(dim=1) == labels).sum() on every batch and add the counts up.")


# --- recounting from the records -----------------------------------------------------------------


@dataclass
class Seen:
    """The model's outputs aligned with the labels of the batches it was called on."""

    per_call: list[np.ndarray]  # for each of k calls per batch: (n,) predictions or (n, C) outputs
    labels: np.ndarray  # (n,)
    total: int  # samples the loader fetched


def align(log: dict[str, Any], fetched: np.ndarray, labels: np.ndarray, batch_size: int) -> Seen | None:
    """Group the recorded calls k per loader batch (k = 1..3), or each batch over consecutive smaller calls;
    None when they fit no such pattern (the caller then fails the judgement, saying why)."""
    sizes = log.get("sizes")
    rows = log.get("rows")
    if not isinstance(sizes, list) or not sizes or not isinstance(rows, np.ndarray) or 0 in sizes:
        return None
    if not isinstance(fetched, np.ndarray) or len(fetched) == 0 or sum(sizes) != len(rows):
        return None
    batches = [fetched[i:i + batch_size] for i in range(0, len(fetched), batch_size)]
    starts = np.cumsum([0] + sizes)
    for k in range(1, MAX_CALLS_PER_BATCH + 1):
        if len(sizes) % k or len(sizes) // k > len(batches):
            continue
        groups = len(sizes) // k
        if all(sizes[g * k + j] == len(batches[g]) for g in range(groups) for j in range(k)):
            per_call = [np.concatenate([rows[starts[g * k + j]:starts[g * k + j + 1]] for g in range(groups)])
                        for j in range(k)]
            seen = np.concatenate(batches[:groups])
            if seen.max(initial=-1) >= len(labels):
                return None
            return Seen(per_call=per_call, labels=labels[seen], total=len(fetched))
    # Each batch split over consecutive calls (micro-batches, or one image at a time): one pass, in order.
    i, groups = 0, 0
    for batch in batches:
        filled = 0
        while i < len(sizes) and filled < len(batch):
            filled, i = filled + sizes[i], i + 1
        if filled != len(batch):
            return None
        groups += 1
        if i == len(sizes):
            break
    if i != len(sizes):
        return None
    seen = np.concatenate(batches[:groups])
    if seen.max(initial=-1) >= len(labels):
        return None
    return Seen(per_call=[rows], labels=labels[seen], total=len(fetched))


def why_unseen(log: Any, fetched: Any, batch_size: int, loader: str) -> str:
    """Why the recorded calls of one phase cannot be matched to the loader's batches: a reason to show the student."""
    sizes = log.get("sizes") if isinstance(log, dict) else None
    n_fetched = len(fetched) if isinstance(fetched, np.ndarray) else 0
    if not isinstance(sizes, list) or not sizes:
        if n_fetched == 0:
            return f"no batch was taken from {loader} and the model it was given was never called"
        return (f"the model it was given was never called while {n_fetched:,} images were taken from {loader}; "
                "call that model (model(data) or model.forward(data)), not another one, on every batch")
    if 0 in sizes:
        return (f"{sizes.count(0)} of its {len(sizes)} call(s) returned something other than one (batch, classes) "
                "tensor of scores")
    if n_fetched == 0:
        return f"the model was called {len(sizes)} time(s) but no batch was taken from {loader}"
    shown = ", ".join(str(n) for n in sorted(set(sizes))[:4])
    return (f"its {len(sizes)} call(s) on batches of {shown} image(s) do not line up with the "
            f"{math.ceil(n_fetched / batch_size)} batch(es) taken from {loader}; call the model once on each batch "
            "as the loader gives it")


def mean_losses(outputs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(mean NLL of the outputs read as log-probabilities, mean cross-entropy of the outputs read as logits)."""
    out = torch.from_numpy(outputs.astype(np.float64))  # (n, C)
    y = torch.from_numpy(labels)
    nll = float(torch.nn.functional.nll_loss(out, y))
    ce = float(torch.nn.functional.cross_entropy(out, y))
    return nll, ce


def test_loss_problem(got: Any, nll: float, ce: float, n: int, batches: int, batch_size: int, rtol: float) -> str | None:
    value = as_number(got)
    if value is None:
        return f"test_loss should be a number (the mean loss); got {describe_value(got)}."

    def close(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-6)

    if close(value, nll) or close(value, ce):
        return None
    hints = [(nll * n, "the sum over the validation images: divide by len(test_loader.dataset)"),
             (nll * n / batches, "the sum over all images divided by the number of batches: divide by len(test_loader.dataset) instead"),
             (nll / batch_size, "the sum of the per-batch mean losses divided by the number of images: "
                                "use reduction='sum' per batch, or average the batch means over the batches")]
    for wrong, why in hints:
        if close(value, wrong):
            return f"test_loss is {value:.5g}, but the mean negative log-likelihood is {nll:.5g}: it looks like {why}."
    return (f"test_loss is {value:.5g}, but the mean negative log-likelihood of the model's outputs over the "
            f"{n:,} validation images is {nll:.5g}.")


@dataclass
class Verdict:
    """Findings with one sentence per topic: a mistake repeated every epoch is told once."""

    findings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    topics: set[str] = field(default_factory=set)

    def add(self, finding: str, sentence: str, *, topic: str | None = None) -> None:
        if finding not in self.findings:
            self.findings.append(finding)
        topic = topic or finding
        if topic not in self.topics:
            self.topics.add(topic)
            self.problems.append(sentence)


@register
class TrainingLoopCheck(Check):
    kind = "training_loop"
    uses_evaluation_labels = True  # the child must never read the test labels (engine.protected_paths)
    findings = Check.findings + FINDINGS
    options = DATA_OPTIONS + optimiser_options(LoopSettings) + (
        Option("epochs", {"type": "integer", "minimum": 2}, "epochs the student's loops run (2 at least)",
               LoopSettings.epochs),
        Option("min_epochs", {"type": "integer", "minimum": 2}, "epochs that must fit in the budget, or too_slow "
               "(default: epochs)"),
        Option("test_batch_size", POS_INT, "batch size of the validation loader", LoopSettings.test_batch_size),
        Option("log_interval", POS_INT, "log_interval handed to the student's train function",
               LoopSettings.log_interval),
        Option("val_size", POS_INT, "validation images held out of the training split for test_function", 500),
        Option("loss_rtol", NONNEG, "relative tolerance on the recomputed test loss", 1e-3),
        Option("train_function", NAME, "the student's training loop", "train_one_epoch"),
        Option("test_function", NAME, "the student's evaluation loop", "test_one_epoch"),
        Option("reference_train_function", NAME, "the reference's training loop (default: train_function)"),
        Option("reference_test_function", NAME, "the reference's evaluation loop (default: test_function)"),
    )

    @classmethod
    def validate_spec(cls, spec: CheckSpec) -> list[tuple[str, str]]:
        problems = super().validate_spec(spec) + validate_params(spec.params)
        p = cls.params_of(spec)
        if int(p["epochs"]) < 2:
            problems.append(("params.epochs", "at least 2 epochs are needed to see the loss go down"))
        if p["min_epochs"] is not None and int(p["min_epochs"]) < 2:
            problems.append(("params.min_epochs", "at least 2 epochs are needed to see the loss go down"))
        return problems

    @classmethod
    def validate_with_reference(cls, spec: CheckSpec, reference: ModuleType) -> list[tuple[str, str]]:
        return [("params", f"the reference module has no function {n!r} to compare with "
                           "(params.reference_train_function / reference_test_function name the reference's)")
                for n in _reference_names(cls.params_of(spec)) if not callable(getattr(reference, n, None))]

    def reference_runs(self, ctx: Context) -> list[Any]:
        """The cached reference run this check compares with, computed now if missing (`grader.training.warm`)."""
        p = self.params
        if p["relative_to_reference"] is None:
            return []
        split = load_split(p, data_dir=ctx.data_dir, with_validation=True)
        return [self._reference(ctx, split, self._settings(ctx, float(p["max_seconds"])))]

    def _names(self) -> tuple[str, str]:
        p = self.params
        return p["train_function"], p["test_function"]

    def _settings(self, ctx: Context, budget: float) -> dict[str, Any]:
        p = self.params
        # The rubric's own values; the declared defaults are LoopSettings' (the cache key of reference runs is unchanged).
        s: dict[str, Any] = {k: p[k] for k in LOOP_KEYS if p.given(k)}
        s.update(seed=int(p["seed"]), device=ctx.device, max_seconds=budget)
        return s

    def run(self, ctx: Context) -> Outcome:
        p = self.params
        try:
            split = load_split(p, data_dir=ctx.data_dir, with_validation=True)
        except DataUnavailable as exc:
            # The course setup's problem, not the student's: no deduction, and listed for the staff.
            return Outcome.grader_error(f"The grader has no dataset for this check ({exc}). This is not your fault; "
                                        "the course staff will fix the setup.", review=f"no dataset: {exc}")
        budget = float(p["max_seconds"])
        settings = self._settings(ctx, budget)
        train_name, test_name = self._names()
        model_call = f"{self.spec.target}()"
        message = {"op": "train_loop", "target": self.spec.target, "init": p["init"], "settings": settings,
                   "normalize": list(split.normalize) if split.normalize else None,
                   "train_images": split.train_images, "train_labels": split.train_labels,
                   "val_images": split.val_images, "val_labels": split.val_labels, "eval_images": split.eval_images,
                   "train_function": train_name, "test_function": test_name}
        from grader.training.waiting import budget_progress

        epochs = int(p["epochs"])
        with budget_progress(f"{self.spec.id}: your loops on {model_call}, {split.dataset}", budget, enabled=ctx.progress):
            reply = ctx.request(self.spec, message, timeout=budget * 1.5 + REQUEST_MARGIN_S)
        if not reply.ok:
            if reply.kind == "timeout":
                # No epoch figure came back to compare with the reference's: no verdict on speed (see _too_slow).
                return Outcome.undecided(
                    f"Running {train_name}/{test_name} {reply.message} (the grader's safety stop is {budget:g} s for "
                    f"{epochs} epochs), so the grader could not compare its speed with the reference loops. This is "
                    "not counted against you for now; the course staff will review it. (If an epoch is very slow, "
                    "look for a loop over single images or an extra pass over the data inside the batch loop.)",
                    review=f"loops stopped by the request's time limit: {reply.message}")
            if reply.kind in ("student", "not_plain", "not_loaded"):
                return Outcome.fail("not_done", f"Running {train_name} and {test_name} with {model_call} failed: "
                                    f"{reply.describe()}")
            return reply_failure(reply, f"Running {train_name}/{test_name}")
        value = reply.value
        if not isinstance(value, dict) or not isinstance(value.get("epochs"), list):
            return Outcome.fail("error", "The sandbox sent back a malformed reply for the training loops.")
        slow = None
        if value.get("timed_out") and len(value["epochs"]) < int(p["min_epochs"] or epochs):
            slow = self._too_slow(ctx, split, settings, value)
            if isinstance(slow, Outcome):
                return slow
        verdict = self._judge(value, split, settings, slow)
        if verdict.findings == ["not_done"]:
            return Outcome(passed=False, findings=["not_done"], feedback=verdict.problems)
        accuracy_line = self._accuracy(ctx, value, split, settings, verdict)
        feedback = verdict.problems + verdict.notes + ([accuracy_line] if accuracy_line else [])
        if verdict.findings:
            return Outcome(passed=False, findings=verdict.findings, feedback=feedback)
        return Outcome(passed=True, feedback=feedback)

    # contracts ---------------------------------------------------------------------------------

    def _too_slow(self, ctx: Context, split: Split, settings: dict[str, Any], value: dict[str, Any]) -> str | Outcome:
        """The loops stopped at the safety stop: ``too_slow`` (a sentence) only when an epoch of them costs more
        than ``max_slowdown`` times an epoch of the reference loops, in CPU time; otherwise no verdict.

        The student's figure is measured in the sandbox, next to their code, so
        it could be faked; it is only used against them: a faked low figure
        leaves the check undecided (0 until reviewed), never passed. The
        reference's epoch is timed now, in the judge, with the same data,
        settings and thread count.
        """
        p = self.params
        epochs = value["epochs"]
        limit = float(p["max_slowdown"])
        wanted = int(p["epochs"])
        stopped = (f"Only {len(epochs)} of {wanted} epochs of your loops ran before the grader's "
                   f"{settings['max_seconds']:g} s safety stop")
        figures = [e.get("cpu_seconds") for e in epochs]
        student = min((f for f in figures if isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0),
                      default=None)
        reference = None
        if student is not None and self.spec.reference and ctx.sandbox is not None:
            train_name, test_name = _reference_names(p)
            job = {"job": "loop_epoch_cost", "settings": dict(settings, epochs=1),
                   "normalize": list(split.normalize) if split.normalize else None,
                   "train_images": split.train_images, "train_labels": split.train_labels,
                   "val_images": split.val_images, "val_labels": split.val_labels,
                   "reference": {"path": str(ctx.rubric.reference_path), "name": ctx.rubric.reference_name,
                                 "factory": self.spec.reference, "init": p["init"],
                                 "train_function": train_name, "test_function": test_name},
                   "threads": ctx.sandbox.limits.threads, "memory_mb": ctx.sandbox.limits.memory_mb}
            reply = get_judge().request(job, timeout=settings["max_seconds"] + REQUEST_MARGIN_S)
            if reply.ok and isinstance(reply.value, dict):
                if isinstance(reply.value.get("problem"), str):
                    return Outcome.grader_error("The grader could not time the reference loops for comparison. This "
                                                "is not your fault; the course staff will look at it.",
                                                review=f"reference loops failed: {reply.value['problem']}")
                cpu = reply.value.get("cpu_seconds")
                reference = float(cpu) if isinstance(cpu, (int, float)) and cpu > 0 else None
        if student is not None and reference is not None and student > limit * reference:
            return (f"{stopped}: an epoch of them costs {student:.3g} s of CPU time against {reference:.3g} s for the "
                    f"reference loops on the same data ({student / reference:.0f}x slower; the limit is {limit:g}x). "
                    "Is there a loop over single images, or an extra pass over the data inside the batch loop?")
        compared = (f" An epoch of them costs {student:.3g} s of CPU time against {reference:.3g} s for the reference "
                    f"loops, within the {limit:g}x allowed." if student is not None and reference is not None else "")
        return Outcome.undecided(f"{stopped}.{compared} The grader ran out of time, not your loops: this is not counted "
                                 "against you, and the course staff will review this check.",
                                 review=f"loops stopped by the safety stop after {len(epochs)} epoch(s)"
                                        + ("" if compared else " (no CPU figures to compare)"))

    def _judge(self, value: dict[str, Any], split: Split, settings: dict[str, Any], slow: str | None) -> Verdict:
        p = self.params
        v = Verdict()
        train_name, test_name = self._names()
        epochs = value["epochs"]
        wanted = int(p["epochs"])
        batch_size = int(p["batch_size"])
        test_batch = int(p["test_batch_size"])
        rtol = float(p["loss_rtol"])
        min_epochs = int(p["min_epochs"] or wanted)
        if slow is not None:
            v.add("too_slow", slow)
        if not epochs:
            v.add("not_done", f"No epoch of {train_name}/{test_name} completed.")
            return v
        val_losses: list[float] = []
        train_logged: list[list[float]] = []
        recounted_train = recounted_test = True
        for e in epochs:
            n = e["epoch"]
            # train_one_epoch -> (losses, counter, num_correct)
            ret = e.get("train_returned")
            if not isinstance(ret, list) or len(ret) != 3:
                v.add("wrong_return", f"{train_name} should return (losses, counter, num_correct); in epoch {n} it "
                                      f"returned {describe_value(ret)}.", topic="train_return")
            else:
                losses, counter, num_correct = ret
                # A 1-D tensor of losses or counts is as good as a list of them.
                losses, counter = (x.tolist() if isinstance(x, np.ndarray) and x.ndim == 1 else x for x in (losses, counter))
                logged = [as_number(x) for x in losses] if isinstance(losses, list) else None
                if logged is None or any(x is None for x in logged):
                    v.add("wrong_return", f"losses (the first value {train_name} returns) should be a list of numbers, "
                                          f"e.g. loss.item() every log_interval batches; got {describe_value(losses)}.",
                          topic="train_losses")
                elif not isinstance(counter, list) or len(counter) != len(logged):
                    v.add("wrong_return", f"counter should be a list as long as losses ({len(logged)} in epoch {n}); "
                                          f"got {describe_value(counter)}.", topic="train_counter")
                else:
                    train_logged.append([x for x in logged if x is not None])
                seen = align(e.get("train_calls", {}), e.get("train_fetched"), split.train_labels, batch_size)
                if seen is None:
                    # Fail closed: a count the grader cannot recount is not accepted on trust.
                    recounted_train = False
                    why = why_unseen(e.get("train_calls"), e.get("train_fetched"), batch_size, "train_loader")
                    v.add("wrong_num_correct", f"The grader could not see the model's outputs during {train_name} "
                                               f"(epoch {n}), so num_correct cannot be verified: {why}.", topic="train_count")
                else:
                    recounts = [int((calls == seen.labels).sum()) for calls in seen.per_call]
                    problems = [count_problem(f"num_correct from {train_name} (epoch {n})", num_correct, r, len(seen.labels))
                                for r in recounts]
                    if all(problems):
                        v.add("wrong_num_correct", problems[0], topic="train_count")  # type: ignore[arg-type]
            # test_one_epoch -> (test_loss, num_correct)
            ret = e.get("test_returned")
            seen = align(e.get("test_calls", {}), e.get("test_fetched"), split.val_labels, test_batch)
            if seen is not None and seen.per_call[0].ndim == 2:
                nll, ce = mean_losses(seen.per_call[0], seen.labels)
                val_losses.append(ce)
            else:
                seen, nll = None, float("nan")
                recounted_test = False
            if not isinstance(ret, list) or len(ret) != 2:
                v.add("wrong_return", f"{test_name} should return (test_loss, num_correct); in epoch {n} it "
                                      f"returned {describe_value(ret)}.", topic="test_return")
            elif seen is None:
                # Fail closed: neither claim can be checked without the outputs, so neither is accepted.
                why = why_unseen(e.get("test_calls"), e.get("test_fetched"), test_batch, "test_loader")
                v.add("wrong_test_loss", f"The grader could not see the model's outputs during {test_name} (epoch {n}), "
                                         f"so test_loss cannot be verified: {why}.", topic="test_loss")
                v.add("wrong_num_correct", f"The grader could not see the model's outputs during {test_name} "
                                           f"(epoch {n}), so num_correct cannot be verified: {why}.", topic="test_count")
            else:
                test_loss, num_correct = ret
                n_val = len(split.val_labels)
                if len(seen.labels) != n_val:
                    v.add("wrong_test_loss", f"{test_name} ran the model on {len(seen.labels):,} of the {n_val:,} "
                                             "validation images; evaluate every batch of test_loader.", topic="test_loss")
                else:
                    problem = test_loss_problem(test_loss, nll, ce, n_val, math.ceil(n_val / test_batch), test_batch, rtol)
                    if problem:
                        v.add("wrong_test_loss", f"Epoch {n}: {problem}", topic="test_loss")
                recount = int((seen.per_call[0].argmax(axis=1) == seen.labels).sum())
                problem = count_problem(f"num_correct from {test_name} (epoch {n})", num_correct, recount, len(seen.labels))
                if problem:
                    v.add("wrong_num_correct", problem, topic="test_count")
        if recounted_train and not v.topics & {"train_count", "train_return"}:
            v.notes.append(f"num_correct from {train_name} matched a recount in all {len(epochs)} epochs.")
        if recounted_test and val_losses and not v.topics & {"test_count", "test_loss", "test_return"}:
            v.notes.append(f"{test_name} returned the mean loss and the right num_correct in all {len(epochs)} epochs.")
        # The validation loss is recomputed here from the model's outputs, so it is preferred to the
        # losses the loop logged (which are the student's claim, and noisy batch by batch).
        decreased = None
        if len(val_losses) >= 2:
            decreased = val_losses[-1] < val_losses[0] * (1 - LOSS_DROP)
            trend = f"validation loss {val_losses[0]:.4f} after epoch 1, {val_losses[-1]:.4f} after epoch {len(val_losses)}"
        elif len(train_logged) >= 2 and train_logged[0] and train_logged[-1]:
            first, last = train_logged[0][0], float(np.mean(train_logged[-1]))
            decreased = last < first * (1 - LOSS_DROP)
            trend = f"logged training loss {first:.4f} at the start, {last:.4f} on average in the last epoch"
        if decreased is False:
            v.add("loss_not_decreasing", f"Training did not lower the loss ({trend}). Does {train_name} call "
                                         "optimizer.zero_grad(), loss.backward() and optimizer.step() for every batch?")
        elif decreased:
            v.notes.insert(0, f"The loss went down: {trend}.")
        elif "too_slow" not in v.findings:  # fewer than 2 epochs is already told (and deducted) as too slow
            # Fail closed: no loss the grader could compare across epochs, so the drop is not taken on trust.
            v.add("loss_not_decreasing", f"The grader could not tell whether training lowers the loss: the model's "
                                         f"outputs during {test_name} could not be seen and {train_name} logged no "
                                         "losses in two epochs (return loss.item() every log_interval batches).")
        return v

    # accuracy ----------------------------------------------------------------------------------

    def _accuracy(self, ctx: Context, value: dict[str, Any], split: Split, settings: dict[str, Any], v: Verdict) -> str:
        preds = value.get("predictions")
        m = len(split.eval_labels)
        if isinstance(value.get("problem"), str):
            v.add("not_done", f"The trained {self.spec.target} could not predict the test images: {value['problem']}")
            return ""
        if not isinstance(preds, np.ndarray) or preds.dtype.kind not in "iu" or preds.shape != (m,):
            v.add("error", "The sandbox sent back predictions that are not one class index per test image.")
            return ""
        accuracy = float((preds == split.eval_labels).mean())
        threshold = threshold_for(self.params, split.dataset)
        basis = f" on {split.dataset}"
        if threshold is None:
            delta = float(self.params["relative_to_reference"])
            try:
                ref = self._reference(ctx, split, settings)
            except Exception as exc:  # the reference loops are the course's code: say so
                v.add("error", f"The grader could not train the reference for comparison ({type(exc).__name__}: {exc}). "
                               "This is not your fault; please tell the course staff.")
                return ""
            threshold = ref.accuracy - delta
            basis = f" (the reference loops and model reach {ref.accuracy:.1%} with the same data and budget, minus {delta:.1%})"
        epochs = len(value["epochs"])
        layout = value.get("input_layout")
        fed = ""
        if isinstance(layout, list) and 0 < len(layout) <= 4 and all(type(d) is int and 0 < d <= 10**6 for d in layout):
            fed = (f" (fed the images reshaped to (N, {', '.join(map(str, layout))}), as your {self._names()[1]} does: "
                   "the model does not take them as the loader gives them)")
        line = (f"After {epochs} epoch(s) with your loops, {self.spec.target} reached {accuracy:.1%} accuracy on "
                f"{m:,} held-out {split.dataset} test images{fed}; needed {threshold:.1%}{basis}.")
        if accuracy + 1e-12 < threshold:
            v.add("low_accuracy", line + " The loops run, but the model learns too little: check that every batch of "
                                         "the loader gets a training step, and compare the model's forward with the "
                                         "handout (the images arrive already normalised).")
            return ""
        return line

    def _reference(self, ctx: Context, split: Split, settings: dict[str, Any]):
        from grader.training.harness import predict
        from grader.training.loops import LoopSettings, normalised_images, run_loops
        from grader.training.reference_runs import ReferenceRun, reference_run
        from grader.training.waiting import budget_progress

        p = self.params
        train_name, test_name = _reference_names(p)
        job = {"kind": "train_loop", "reference": self.spec.reference, "init": p["init"],
               "functions": [train_name, test_name], "settings": settings, **job_identity(split, p)}

        def compute() -> ReferenceRun:
            # All epochs, however busy the machine (see grader.checks.training): the clock is only a safety net.
            s = LoopSettings.from_plain(dict(settings, max_seconds=10 * float(settings["max_seconds"])))
            torch.manual_seed(s.seed)
            model = getattr(ctx.reference, self.spec.reference or "")(**p["init"])
            data = [torch.from_numpy(a) for a in (split.train_images, split.train_labels, split.val_images, split.val_labels)]
            with budget_progress(f"{self.spec.id}: reference loops (cached after)", s.max_seconds,
                                 enabled=ctx.progress):
                run = run_loops(model, getattr(ctx.reference, train_name), getattr(ctx.reference, test_name),
                                (normalised_images(data[0], split.normalize), data[1]),
                                (normalised_images(data[2], split.normalize), data[3]), s)
                preds = predict(model, torch.from_numpy(split.eval_images), device=s.device, normalize=split.normalize)
            if run.timed_out:
                raise RuntimeError(f"the reference loops ran {len(run.epochs)} of {s.epochs} epochs in {run.seconds:.0f} s")
            acc = float((preds.numpy() == split.eval_labels).mean())
            return ReferenceRun(accuracy=acc, epochs_done=float(len(run.epochs)), seconds=run.seconds, final_loss=None)

        return reference_run(job, compute, reference_source=ctx.rubric.reference_path.read_text(), device=ctx.device)


def _reference_names(params: Mapping[str, Any]) -> tuple[str, str]:
    """The reference's loop functions: named like the student's unless the rubric says otherwise."""
    return (params["reference_train_function"] or params["train_function"],
            params["reference_test_function"] or params["test_function"])
