"""`grader kit build`: a self-contained student self-test kit for one assignment.

The kit folder holds:

- ``wheel/``: the grader itself as a wheel (``pip wheel --no-deps``);
- ``rubric/NAME.yaml``: the rubric restricted to its ``public: true`` checks;
- ``fixtures/``: what those checks ask of the reference, frozen as plain data
  (``calls.json`` and ``.npy`` files, see `grader.kit.freeze`), recorded by
  grading the reference solution itself with the kit's fixed seed;
- ``kit.json``: the kit's manifest (assignment, seed, public check ids, the
  points the hidden checks are worth);
- ``README.md``: the student's commands.

What never goes in: the reference module's source, any hidden check (its id,
its options, its inputs or values), datasets or labels. A public check's
expected values on its frozen inputs are in the kit by design; a value the
reference computes for a hidden check is never recorded, because only the
public checks run while the kit is recorded.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from grader.errors import UsageError
from grader.kit.freeze import RecordingReference, Store
from grader.course import REPO_ROOT
from grader.rubric.load import load_rubric
from grader.rubric.model import Rubric

KIT_FORMAT = 1
DEFAULT_SEED = 20260


@dataclasses.dataclass
class KitReport:
    folder: Path
    public: list[str]
    hidden_count: int
    archive: Path | None = None


def public_rubric_data(data: dict[str, Any]) -> dict[str, Any]:
    """The rubric's YAML data with only its public checks, question points and the total summed again."""
    out = copy.deepcopy(data)
    questions = []
    for q in out["questions"]:
        checks = [c for c in q["checks"] if c.get("public") is True]
        if checks:
            q["checks"] = checks
            q["points"] = sum(float(c["points"]) for c in checks)
            questions.append(q)
    out["questions"] = questions
    out.pop("total_points", None)
    return out


def _local_build_backend() -> bool:
    """Whether this interpreter can build the wheel itself: setuptools >= 64 (pyproject.toml) with a
    ``bdist_wheel`` command (its own from setuptools 70.1, else the ``wheel`` package's)."""
    import importlib.util
    from importlib.metadata import version

    try:
        if int(version("setuptools").split(".")[0]) < 64:
            return False
        return any(importlib.util.find_spec(name) is not None
                   for name in ("setuptools.command.bdist_wheel", "wheel"))
    except Exception:  # noqa: BLE001 - not installed or an odd version string: let pip fetch a backend
        return False


def build_wheel(out: Path, *, source: Path = REPO_ROOT) -> Path:
    """The grader as a wheel, built with pip (no dependencies bundled) from a clean copy of the package source.

    The copy holds only what the wheel is made of (pyproject.toml, README.md, grader/): a stale ``build/``
    folder in the checkout cannot slip old files in, and nothing beside the package (reference/) is near it.
    """
    if not (source / "pyproject.toml").is_file():
        raise UsageError(f"cannot build the grader wheel: {source} has no pyproject.toml (pass --wheel FILE)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="grader-wheel-") as tmp:
        clean = Path(tmp) / "src"
        clean.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copyfile(source / name, clean / name)
        shutil.copytree(source / "grader", clean / "grader", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check"]
        if _local_build_backend():
            command.append("--no-build-isolation")  # offline, and without a download of setuptools per build
        proc = subprocess.run([*command, str(clean), "-w", str(out)], capture_output=True, text=True)
    wheels = sorted(out.glob("grader-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise UsageError(f"pip could not build the grader wheel: {proc.stderr.strip()[-800:]}")
    return wheels[-1]


def _reference_as_submission(rubric: Rubric, folder: Path) -> Path:
    """A submission folder holding the reference module under the rubric's first .py file name."""
    names = [n for n in rubric.code_files if n.endswith(".py")]
    if not names:
        raise UsageError(f"the rubric accepts no .py file ({', '.join(rubric.code_files)}): "
                         "the kit records the reference as a .py submission")
    folder.mkdir(parents=True)
    shutil.copyfile(rubric.reference_path, folder / names[0])
    return folder


def build_kit(rubric_path: Path, out: Path, *, seed: int = DEFAULT_SEED, wheel: Path | None = None,
              archive: bool = False) -> KitReport:
    """Write the kit for the rubric at `rubric_path` into `out` (and `out`.zip when `archive`)."""
    from grader.engine import grade_submission

    rubric = load_rubric(rubric_path)
    data = yaml.safe_load(Path(rubric_path).read_text(encoding="utf-8"))
    public = [c for c in rubric.checks if c.public]
    if not public:
        raise UsageError(f"{rubric_path} marks no check `public: true`: the kit would be empty")
    training = [c.id for c in public if c.training]
    if training:
        raise UsageError(f"public training checks cannot be frozen into a kit yet ({', '.join(training)}): "
                         "mark them `public: false` (they stay in the real grade)")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty; pick a new folder for the kit")
    out.mkdir(parents=True, exist_ok=True)

    fixtures = out / "fixtures"
    recorder = RecordingReference(rubric.reference, Store(fixtures))  # type: ignore[arg-type]
    for spec in public:
        if spec.reference:
            recorder.companions.setdefault(spec.reference, [])
            recorder.companions[spec.reference] += [m.reference for m in spec.known_mistakes if m.reference]
    questions = [dataclasses.replace(q, checks=tuple(c for c in q.checks if c.public),
                                     points=sum(c.points for c in q.checks if c.public)) for q in rubric.questions]
    recording = dataclasses.replace(rubric, questions=[q for q in questions if q.checks],
                                    total_points=sum(c.points for c in public), reference=recorder)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="grader-kit-") as tmp:
        submission = _reference_as_submission(rubric, Path(tmp) / "reference")
        run = grade_submission(submission, recording, seed=seed, skip_training=True)
    failed = [f"{r.check_id}: {r.review or ' '.join(r.feedback[:2])}" for r in run.results
              if r.status != "passed" and not r.manual]
    if failed:
        shutil.rmtree(out, ignore_errors=True)
        raise UsageError("the reference solution does not pass its own public checks with frozen values, so the kit "
                         "would be wrong (a check whose reference is stateful or random cannot be frozen: mark it "
                         "`public: false`):\n  " + "\n  ".join(failed))
    fixtures.mkdir(parents=True, exist_ok=True)
    (fixtures / "calls.json").write_text(json.dumps(recorder.manifest(), indent=1, sort_keys=True), encoding="utf-8")

    (out / "rubric").mkdir()
    (out / "rubric" / f"{rubric.assignment}.yaml").write_text(
        yaml.safe_dump(public_rubric_data(data), sort_keys=False, allow_unicode=True), encoding="utf-8")
    hidden = [c for c in rubric.checks if not c.public]
    manifest = {"format": KIT_FORMAT, "assignment": rubric.assignment, "title": rubric.title, "seed": seed,
                "reference": rubric.reference_name, "public_checks": [c.id for c in public],
                "public_points": sum(c.points for c in public), "hidden_points": sum(c.points for c in hidden),
                "hidden_count": len(hidden),
                # the inputs are drawn again from the seed: a NumPy whose random streams differ would draw others
                "numpy": np.__version__}
    (out / "kit.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    wheel_dir = out / "wheel"
    if wheel is not None:
        wheel_dir.mkdir()
        shutil.copyfile(wheel, wheel_dir / wheel.name)
        wheel_name = wheel.name
    else:
        wheel_name = build_wheel(wheel_dir).name
    (out / "README.md").write_text(student_readme(manifest, wheel_name, rubric.code_files), encoding="utf-8")
    report = KitReport(folder=out, public=[c.id for c in public], hidden_count=len(hidden))
    if archive:
        report.archive = Path(shutil.make_archive(str(out), "zip", root_dir=out))
    return report


def student_readme(manifest: dict[str, Any], wheel_name: str, code_files: list[str]) -> str:
    first = next((c.split(".")[0] for c in code_files), manifest["assignment"])
    ids = ", ".join(f"`{i}`" for i in manifest["public_checks"])
    return f"""# Self-test kit: {manifest['title']}

This kit runs the **public** checks of {manifest['assignment']} on your own machine ({len(manifest['public_checks'])}
checks, {manifest['public_points']:g} points: {ids}). It holds no solution: each check compares your code
with values frozen from the reference solution on fixed inputs. Your grade also includes hidden checks
({manifest['hidden_count']} checks, {manifest['hidden_points']:g} points) and uses other inputs, so passing
here is no promise of full marks.

## Install (once)

    python -m venv kit-env && . kit-env/bin/activate
    pip install wheel/{wheel_name}

## Self-test a folder

    grader check my_hw/ --kit .

(`my_hw/` holds your {' or '.join(code_files)}.) Run it from this folder, or give the kit's path to `--kit`.

## Check one problem from a notebook

    from grader.kit import check
    check("{manifest['public_checks'][0]}")

runs that check on the notebook's current code (set `GRADER_KIT` to this folder, or pass
`check("{manifest['public_checks'][0]}", kit="path/to/kit")`). Your code runs in a sandbox, as when
it is graded; training checks are not in the kit.
"""

