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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `grader --help` and every command's parser read the constants below: keep them light
    from grader.rubric.model import Rubric

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
# Peak memory of run_autograder for the bundled assignments, measured in a clean Debian root with the CPU
# build of torch by scripts/gradescope_memory.py (the file says when, with what and how).
MEASURED_MEMORY = Path(__file__).resolve().parent / "measured_memory.json"
# Room left above a measured peak when recommending a container size: another torch version, another seed.
MEMORY_MARGIN = 1.15


@dataclass(frozen=True)
class Assessment:
    """What a rubric needs against what the container offers; `warnings` are sentences."""

    budget_s: float  # limits.total_time_s, or the container's timeout
    training_s: float  # sum of the training checks' max_seconds
    estimate_s: float  # training_s + OVERHEAD_S
    child_memory_mb: int
    container_memory_mb: int
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # measured figures, for the instructor's information


def training_seconds(rubric: Rubric) -> float:
    return sum(float(c.params.get("max_seconds", DEFAULT_TRAINING_S)) for c in rubric.checks if c.training)


def assess(rubric: Rubric, *, timeout_s: float = GRADESCOPE_TIMEOUT_S,
           memory_mb: int = GRADESCOPE_MEMORY_MB) -> Assessment:
    """Estimate the rubric's time and memory needs in a container with `timeout_s` and `memory_mb`."""
    name = rubric.assignment
    budget = float(rubric.limits.get("total_time_s", timeout_s))
    training = training_seconds(rubric)
    estimate = training + OVERHEAD_S
    from grader.sandbox.client import Limits

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
    notes = []
    measured = measured_memory(name)
    if measured is not None:
        note, warning = _judge_measured(name, measured, memory_mb)
        notes.append(note)
        warnings += [warning] if warning else []
    return Assessment(budget_s=budget, training_s=training, estimate_s=estimate, child_memory_mb=child_mb,
                      container_memory_mb=memory_mb, warnings=warnings, notes=notes)


def measured_memory(assignment: str, path: Path | None = None) -> dict[str, Any] | None:
    """The measured runs of `assignment` and how they were measured, or None (not a bundled one, no file)."""
    try:
        record = json.loads((path or MEASURED_MEMORY).read_text())
        runs = record["assignments"][assignment]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {**{k: v for k, v in record.items() if k != "assignments"}, "runs": runs}


def recommended_memory_mb(measured: dict[str, Any]) -> int:
    """The container memory to choose: the largest peak measured, plus a margin, rounded up to 256 MB."""
    peak = max(float(r["resident_mb"]) for r in measured["runs"])
    need = peak * MEMORY_MARGIN
    return int(-(-need // 256) * 256)


def _judge_measured(name: str, measured: dict[str, Any], memory_mb: int) -> tuple[str, str | None]:
    """(a note with the figures, a warning when the container chosen is smaller than they call for)."""
    runs = measured["runs"]

    def describe_run(r: dict[str, Any]) -> str:
        text = f"{r['resident_mb']} MB {'with' if r['training'] else 'without'} training"
        if r.get("oom_kills"):
            return (f"more than {r.get('limit_mb')} MB {'with' if r['training'] else 'without'} training (killed "
                    "for memory: grading did not finish)")
        if not r.get("limit_mb"):
            return text + " (no limit)"
        ok = not r.get("oom_kills") and r.get("score") == r.get("max_score")
        return text + f" (under {r['limit_mb']} MB: {'fits' if ok else 'killed for memory' if r.get('oom_kills') else 'wrong score'})"

    peak = max(r["resident_mb"] for r in runs)
    recommended = recommended_memory_mb(measured)
    note = (f"{name}: run_autograder's measured peak memory (all processes, resident): "
            f"{'; '.join(describe_run(r) for r in runs)} ({measured.get('environment', '?')}, "
            f"{measured.get('measured', '?')}, `{measured.get('command', '?')}`). "
            f"Container memory to choose: at least {recommended} MB.")
    if memory_mb < recommended:
        killed = [r for r in runs if r.get("oom_kills")]
        measured_text = (f"was killed for memory under {max(r.get('limit_mb') or 0 for r in killed)} MB"
                         if killed else f"was measured at up to {peak} MB")
        return note, (f"{name}: the container has {memory_mb} MB but run_autograder {measured_text}: choose at "
                      f"least {recommended} MB in the assignment's autograder settings and pass --memory-mb "
                      "with it.")
    return note, None


@dataclass(frozen=True)
class Deadlines:
    """Seconds after the start of grading: stop starting checks; then stop and write what is known."""

    soft_s: float  # no check starts after this (the engine's `deadline`)
    hard_s: float  # results so far are written and grading stops


def deadlines(rubric: Rubric, budget_s: float) -> Deadlines:
    """Leave room before the budget runs out for the longest single check, then for writing results."""
    from grader.sandbox.client import Limits

    timeout = float(rubric.limits.get("timeout_s", Limits().timeout_s))
    longest = max([timeout, *(float(c.timeout_s or 0) for c in rubric.checks),
                   *(float(c.params.get("max_seconds", DEFAULT_TRAINING_S)) + timeout
                     for c in rubric.checks if c.training)])
    hard = budget_s - min(10.0, budget_s / 10)
    soft = max(budget_s / 2, hard - longest)
    return Deadlines(soft_s=min(soft, hard), hard_s=hard)
