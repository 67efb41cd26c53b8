"""Grade a submission against a kit: the public checks, the frozen reference, the kit's seed.

The student's code is loaded into the same sandbox as in real grading; only
the reference side differs (`grader.kit.freeze.FrozenReference`). A check
that needed a value the kit did not freeze reaches no verdict here: it is
reported as undecided (0 points in the self-test, with a sentence), never as
passed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grader.checks.base import Outcome, finish
from grader.errors import UsageError
from grader.kit.build import KIT_FORMAT
from grader.kit.freeze import FrozenReference, read_manifest
from grader.results import CheckResult, GradingRun
from grader.rubric.load import load_rubric
from grader.rubric.model import Rubric

SELF_TEST_NOTE = ("Self-test with the kit: public checks only, on fixed inputs. Your grade also includes hidden "
                  "checks ({hidden}) and other inputs.")


@dataclass
class Kit:
    folder: Path
    manifest: dict[str, Any]
    rubric: Rubric
    reference: FrozenReference

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])


def find_kit(path: str | os.PathLike[str] | None) -> Path:
    """The kit folder: `path`, else $GRADER_KIT, else the current folder or one above it holding kit.json."""
    if path is not None:
        return Path(path)
    if os.environ.get("GRADER_KIT"):
        return Path(os.environ["GRADER_KIT"])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "kit.json").is_file():
            return folder
    raise UsageError("no kit found: pass kit='path/to/kit', set GRADER_KIT, or run from inside the kit's folder")


def load_kit(folder: Path) -> Kit:
    manifest_path = folder / "kit.json"
    if not manifest_path.is_file():
        raise UsageError(f"{folder} is not a self-test kit (it has no kit.json); build one with `grader kit build`")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != KIT_FORMAT:
        raise UsageError(f"this grader reads kit format {KIT_FORMAT}; {folder} is format {manifest.get('format')!r}: "
                         "install the grader wheel that came with the kit")
    rubric = load_rubric(folder / "rubric" / f"{manifest['assignment']}.yaml", with_reference=False)
    reference = FrozenReference(read_manifest(folder / "fixtures"), folder / "fixtures", manifest["reference"])
    rubric.reference = reference  # type: ignore[assignment]
    return Kit(folder=folder, manifest=manifest, rubric=rubric, reference=reference)


def self_test(submission: Path, kit: Kit, *, only: list[str] | None = None, device: str = "cpu",
              isolation: str | None = None) -> GradingRun:
    """Grade `submission` with the kit's public checks (or only the ids in `only`)."""
    from grader.engine import grade_submission

    rubric = kit.rubric
    if only is not None:
        unknown = [i for i in only if i not in {c.id for c in rubric.checks}]
        if unknown:
            raise UsageError(f"the kit has no public check {', '.join(map(repr, unknown))} "
                             f"(its checks: {', '.join(c.id for c in rubric.checks)})")
        import dataclasses

        questions = [dataclasses.replace(q, checks=tuple(c for c in q.checks if c.id in only)) for q in rubric.questions]
        questions = [dataclasses.replace(q, points=sum(c.points for c in q.checks)) for q in questions if q.checks]
        rubric = dataclasses.replace(rubric, questions=questions, total_points=sum(q.points for q in questions))
    misses: dict[str, list[str]] = {}
    seen = [0]

    def on_result(result: CheckResult) -> None:
        new = kit.reference.misses[seen[0]:]
        seen[0] = len(kit.reference.misses)
        if new:
            misses[result.check_id] = new

    run = grade_submission(submission, rubric, seed=kit.seed, device=device, skip_training=True, isolation=isolation,
                           on_result=on_result)
    specs = {c.id: c for c in rubric.checks}
    for i, result in enumerate(run.results):
        if result.check_id in misses:
            # The replay raised inside the check: whatever the check made of that, it reached no verdict.
            run.results[i] = finish(specs[result.check_id], Outcome.undecided(
                "The self-test cannot judge this: your code led this check to " + misses[result.check_id][0]
                + ". The real grader will judge it with the reference solution.",
                review="kit replay miss: " + "; ".join(misses[result.check_id][:3])))
    hidden = f"{kit.manifest['hidden_count']} checks, {kit.manifest['hidden_points']:g} points"
    run.load_messages.insert(0, SELF_TEST_NOTE.format(hidden=hidden))
    built_with = str(kit.manifest.get("numpy", ""))
    if misses and built_with.split(".")[:2] != np.__version__.split(".")[:2]:
        run.load_messages.append(f"The kit was built with NumPy {built_with} and this is NumPy {np.__version__}: if its "
                                 "random inputs differ, the self-test cannot judge; install that NumPy version.")
    return run
