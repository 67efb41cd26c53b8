"""Does a rubric fit in a Gradescope container? Time and memory, estimated before upload.

Gradescope's defaults: 768 MB of memory, half a vCPU, a 10-minute timeout
(raisable to 40 minutes in the assignment's settings, as is the container
size). A rubric states its own budget in ``limits``: ``total_time_s`` (the
whole run; default: Gradescope's timeout) and ``memory_mb`` (the sandbox
child's limit). `assess` estimates what the rubric needs and says, in
sentences for the instructor, what does not fit; `grader gradescope build`
prints these as warnings. The same numbers set the run's deadlines
(`deadlines`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from grader.rubric.model import Rubric
from grader.sandbox.client import Limits

GRADESCOPE_TIMEOUT_S = 600.0  # default autograder timeout
GRADESCOPE_MAX_TIMEOUT_S = 2400.0  # the most the settings allow
GRADESCOPE_MEMORY_MB = 768
DEFAULT_TRAINING_S = 60.0  # a training check's params.max_seconds when it does not say
OVERHEAD_S = 20.0  # starting Python and torch twice, loading, the non-training checks
# The grading process itself (Python, torch CPU build, numpy, sympy imported):
# an estimate; it is not available to the sandbox child within the container.
GRADER_PROCESS_MB = 350
# The largest result the sandbox may send back in the container, unless the
# rubric says otherwise (limits.max_reply_mb): the grader reads a reply into its
# own memory, and the default 512 MB cannot be spared out of 768.
GRADESCOPE_MAX_REPLY_MB = 128


@dataclass(frozen=True)
class Assessment:
    """What a rubric needs against what the container offers; `warnings` are sentences."""

    budget_s: float  # limits.total_time_s, or the container's timeout
    training_s: float  # sum of the training checks' max_seconds
    estimate_s: float  # training_s + OVERHEAD_S
    child_memory_mb: int
    container_memory_mb: int
    warnings: list[str] = field(default_factory=list)


def training_seconds(rubric: Rubric) -> float:
    return sum(float(c.params.get("max_seconds", DEFAULT_TRAINING_S)) for c in rubric.checks if c.training)


def assess(rubric: Rubric, *, timeout_s: float = GRADESCOPE_TIMEOUT_S,
           memory_mb: int = GRADESCOPE_MEMORY_MB) -> Assessment:
    """Estimate the rubric's time and memory needs in a container with `timeout_s` and `memory_mb`."""
    name = rubric.assignment
    budget = float(rubric.limits.get("total_time_s", timeout_s))
    training = training_seconds(rubric)
    estimate = training + OVERHEAD_S
    child_mb = int(rubric.limits.get("memory_mb", Limits().memory_mb))
    warnings = []
    if budget > GRADESCOPE_MAX_TIMEOUT_S:
        warnings.append(f"{name}: limits.total_time_s is {budget:g} s, more than the {GRADESCOPE_MAX_TIMEOUT_S / 60:g} "
                        "minutes Gradescope allows at most; lower it.")
    elif budget > timeout_s:
        warnings.append(f"{name}: limits.total_time_s is {budget:g} s, more than the autograder timeout of "
                        f"{timeout_s:g} s (Gradescope's default is {GRADESCOPE_TIMEOUT_S / 60:g} minutes): raise the "
                        "timeout in the assignment's autograder settings to match, or Gradescope stops the run "
                        "before the grader's own deadline (pass --timeout-s once you have).")
    if estimate > min(budget, timeout_s):
        n = sum(1 for c in rubric.checks if c.training)
        warnings.append(f"{name}: the {n} training check(s) may take {training:g} s (the sum of their max_seconds) "
                        f"plus about {OVERHEAD_S:g} s of overhead, more than the {min(budget, timeout_s):g} s "
                        "available: lower their max_seconds, or raise the timeout (Gradescope settings and "
                        "limits.total_time_s). Checks still pending at the deadline are reported as not run.")
    room = memory_mb - GRADER_PROCESS_MB
    if child_mb > room:
        warnings.append(f"{name}: limits.memory_mb lets student code use {child_mb} MB, but the container has "
                        f"{memory_mb} MB in all and the grader itself takes about {GRADER_PROCESS_MB} MB: a "
                        "submission that uses much memory would be stopped by the container's out-of-memory "
                        "killer rather than by the grader's limit with a clear message. Set limits.memory_mb to "
                        f"at most {room}, or choose a larger container in Gradescope's settings and pass "
                        "--memory-mb with its size.")
    return Assessment(budget_s=budget, training_s=training, estimate_s=estimate, child_memory_mb=child_mb,
                      container_memory_mb=memory_mb, warnings=warnings)


@dataclass(frozen=True)
class Deadlines:
    """Seconds after the start of grading: stop starting checks; then stop and write what is known."""

    soft_s: float  # no check starts after this (the engine's `deadline`)
    hard_s: float  # results so far are written and grading stops


def deadlines(rubric: Rubric, budget_s: float) -> Deadlines:
    """Leave room before the budget runs out for the longest single check, then for writing results."""
    timeout = float(rubric.limits.get("timeout_s", Limits().timeout_s))
    longest = max([timeout, *(float(c.timeout_s or 0) for c in rubric.checks),
                   *(float(c.params.get("max_seconds", DEFAULT_TRAINING_S)) + timeout
                     for c in rubric.checks if c.training)])
    hard = budget_s - min(10.0, budget_s / 10)
    soft = max(budget_s / 2, hard - longest)
    return Deadlines(soft_s=min(soft, hard), hard_s=hard)
