"""Helpers for the hostile-submission suite: what each attack should do, grading it, what students see.

Every submission in submissions_example/hostile/ is the correct hw4 solution
plus one attack (its docstring says which). `ATTACKS` states, per attack, the
checks it must fail and a pattern of the sentence each must show; every other
check must score as the correct solution does. Most are graded in-process
with the real engine (`grade_submission`, then the Gradescope reporter), two
at a time; attacks on the grader's own process go through the real command
line (`grader check --results --json`) instead, started from a small wrapper
process whose command line names a decoy results file, so that an attack
reading its ancestors' /proc/PID/cmdline has a file to aim at besides the
real one.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

REPO = Path(__file__).resolve().parent.parent
HOSTILE = REPO / "submissions_example" / "hostile"
CORRECT = REPO / "submissions_example" / "hw4" / "correct"
REFERENCE = REPO / "reference" / "hw4.py"
RUBRIC = REPO / "rubrics" / "hw4.yaml"
SEED = 20240
# Training checks are skipped (--skip-training): no attack here is about training, and they
# take most of a full grading's time.
# The suite's rubric is hw4's with smaller limits, so that a hang, a memory
# bomb or a fork bomb costs seconds rather than the real rubric's 30 s, 4 GB
# and 256 processes: the same code paths, cheaper to run.
SUITE_LIMITS = {"timeout_s": 15, "memory_mb": 1536, "max_processes": 64}
# A process whose command line names a decoy results file, then runs the grader.
WRAPPER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[2:]))"
FORGED_MARKERS = ("forged by the submission", "1000")
MARKERS = [Path("/tmp/grader_hostile_pickle_marker"), Path("/tmp/grader_hostile_yaml_marker"),
           Path("/tmp/grader_hostile_pwned_marker")]
EXIT_SENTENCE = r"exited with code 0 \(does the code call sys\.exit\(\) or os\._exit\(\)\?\)"


@dataclass(frozen=True)
class Expect:
    """What grading one hostile submission must give."""

    # check id -> regex its output must match; "*" stands for every check that has points
    failed: dict[str, str] = field(default_factory=dict)
    output: str | None = None  # regex the top-level output must match
    levels: tuple[str, ...] = ("bubblewrap",)  # isolation levels it is graded at
    needs_pids_cgroup: tuple[str, ...] = ()  # levels at which only a pids cgroup contains the attack
    cli: bool = False  # graded through the command line (it attacks the grading process itself)
    # Graded with the rubric's model checks (module_structure, connectivity: judged by grader.judge on the
    # models the child exports): the attack is on the models, or could reach them (torch patched in the
    # child, the grader's files deleted, grader processes killed, a replaced child). The other attacks are
    # graded with those checks left out (`suite_course(models=False)`): a child that does not import
    # torch._dynamo nor warm up an export, which is most of a grading's start-up (tests/test_hostile.py).
    models: bool = False
    # Applied to the copied folder before grading: what git cannot carry (links, FIFOs).
    prepare: Callable[[Path], None] | None = None


def link_code_to_reference(submission: Path) -> None:
    """symlink_code: hw4.py becomes a link to the reference, plus a FIFO and a link to /etc/passwd."""
    (submission / "hw4.py").unlink()
    os.symlink(REFERENCE, submission / "hw4.py")
    os.mkfifo(submission / "notes")
    os.symlink("/etc/passwd", submission / "data.txt")


ATTACKS: dict[str, Expect] = {
    # At the process level only the cgroup stops the detached forger once grading is over.
    "fake_results": Expect(levels=("bubblewrap", "process"), cli=True, needs_pids_cgroup=("process",)),
    "exit_os_import": Expect(failed={"*": EXIT_SENTENCE}, output=EXIT_SENTENCE,
                             levels=("bubblewrap", "process")),
    "exit_sys_import": Expect(failed={"p3": r"SystemExit", "p5.LR": r"'LR' is not defined .*calls exit"},
                              output=r"the code calls exit \(0\) while loading", levels=("bubblewrap", "process"),
                              models=True),
    # The replaced child (warm export and all) then gives the model checks their usual results.
    "infinite_loop": Expect(failed={"p3": r"did not finish within the 15 s time limit"}, models=True),
    "memory_bomb": Expect(failed={"p3": r"(?i)out of memory|MemoryError"}),
    "fork_bomb": Expect(failed={"p3": r"left \d+ processes running when it returned \(a fork bomb\?\); they were all stopped"},
                        needs_pids_cgroup=("bubblewrap",)),
    "print_flood": Expect(),
    "monkeypatch": Expect(failed={"p3": r"differs from the expected value", "p5.logistic_loss": r"differs from the expected value"},
                          models=True),  # torch patched in the child that exports the models
    "always_equal": Expect(failed={"p1": r"object of type AlwaysEqual", "p3": r"differs from the expected value",
                                   "p5.logistic_loss": r"object of type AgreeableFloat"}),
    "snoop": Expect(failed={"p3": r"RuntimeError: found"}),
    "pickle_smuggle": Expect(output=r"answers\.yaml is not valid YAML"),
    "kill_parent": Expect(cli=True, models=True),  # the judge is a grader process too
    "delete_files": Expect(models=True),  # the grader package deleted before the models are exported
    "answers_injection": Expect(),
    "huge_array": Expect(failed={"p3": r"1,000,000,000 elements .*more than the 512 MB"}),
    "nan_inf": Expect(failed={"p5.loss_function": r"NaN or infinite", "p5.logistic_loss": r"NaN or infinite"}),
    # Attacks on the unprivileged-uid level: graded at that level by tests/test_uid_level.py, not here.
    "uid_read_reference": Expect(levels=()),
    "uid_daemon": Expect(levels=()),
    # Graded again by tests/test_report_hostile.py with p2 hidden (no visible total may reveal it) and through
    # the command line (no escape sequence may reach a report or the terminal).
    "hidden_leak": Expect(failed={"p2": r"differs from the expected value"}),
    "escape_sequences": Expect(failed={"p3": r"ValueError: .*All tests passed: 90 / 90"}),
    # Bounded decoding: a frame written straight on the reply pipe costs its own request, not the grader.
    "reply_bomb": Expect(failed={"*": r"not plain data: the reply's JSON part is 419,430,400 bytes, more than the limit"},
                         output=r"Loading the submission failed: sent back something that is not plain data",
                         levels=("bubblewrap", "process")),
    "deep_reply": Expect(failed={"p3": r"not plain data: the reply nests lists or dicts more than 64 levels deep"}),
    "wide_reply": Expect(failed={"p2": r"not plain data: the reply holds more than 500,000 JSON values"}),
    # Intake and bounded answers: an odd file or value costs only what needs it.
    "symlink_code": Expect(failed={"*": r"No code file to test: hw4\.py is a symbolic link; upload the file itself\."},
                           output=r"Not graded: data\.txt is a symbolic link.*\nNot graded: hw4\.py is a symbolic link.*"
                                  r"\nNot graded: notes is a FIFO", levels=("bubblewrap", "process"),
                           prepare=link_code_to_reference),
    "huge_integer": Expect(),
    "deep_yaml": Expect(output=r"Answers: answers\.yaml cannot be read: lists or mappings nested more than 32 deep at line 5"),
    "alias_bomb": Expect(output=r"Answers: answers\.yaml cannot be read: aliases \(\*name\) at line 9 expand to more than 50,000"),
    "huge_padding": Expect(failed={"p1": r"padding 15000, groups 1\) .*far larger than the expected convolution's",
                                   "p2": r"stride 20000, padding 20000, groups 1\) .*far larger than the expected "
                                         r"convolution's"}),
    # Models measured by the judge on their exported graphs (tests/test_judge.py grades these with training too).
    "lying_parameters": Expect(failed={"p5.LR": r"50,305 trainable parameters; expected 785",
                                       "p7.C3_layer.structure": r"2,416 trainable parameters; expected 1,516",
                                       "p7.C3_layer.connections": r"that is a full convolution",
                                       "p7.LeNet.structure": r"7,850 trainable parameters; expected 60,806",
                                       "p7.LeNet_full.structure": r"7,850 trainable parameters; expected 61,706"},
                               models=True),
    "stateful_probe": Expect(failed={"p7.C3_layer.connections": r"that is a full convolution",
                                     "p7.C3_layer.structure": r"2,416 trainable parameters; expected 1,516",
                                     "p7.LeNet.structure": r"61,706 trainable parameters; expected 60,806"},
                             models=True),
    "label_lookup": Expect(models=True),  # its attack is on the training checks, skipped here: see tests/test_judge.py
    # Memorised test answers in trainable parameters: an attack on the training checks alone, graded with
    # training (and its memory file written) by tests/test_hostile_memory.py, not here.
    "param_memory": Expect(levels=()),
}


@dataclass
class Graded:
    """One grading run of one submission at one isolation level, and what was seen around it."""

    name: str
    level: str
    returncode: int
    seconds: float
    results_path: Path
    results: dict
    record: dict
    stderr: str
    submission: Path  # the folder handed to the grader
    decoy_before: str
    decoy_after: str
    results_after_wait: bytes | None = None  # fake_results: the file again, 6 s after grading returned

    @property
    def scores(self) -> dict[str, tuple[float, float, str, str]]:
        """check id -> (score, max, status, output), from results.json."""
        out = {}
        for t in self.results["tests"]:
            out[t["name"].split(" ", 1)[0]] = (t["score"], t["max_score"], t["status"], t["output"])
        return out

    def visible_text(self) -> str:
        """Everything a student can be shown: the whole results file."""
        return self.results_path.read_text()


def suite_course(root: Path) -> Path:
    """rubrics/hw4.yaml (with SUITE_LIMITS) and reference/ under `root`; returns the rubric path."""
    data = yaml.safe_load(RUBRIC.read_text())
    data.setdefault("limits", {}).update(SUITE_LIMITS)
    (root / "rubrics").mkdir(parents=True)
    (root / "reference").mkdir()
    shutil.copy(REFERENCE.parent / "__init__.py", root / "reference" / "__init__.py")
    shutil.copy(REFERENCE, root / "reference" / "hw4.py")
    shutil.copytree(RUBRIC.parent / "hw4_tests", root / "rubrics" / "hw4_tests")  # p6.relu's unittest file
    rubric = root / "rubrics" / "hw4.yaml"
    rubric.write_text(yaml.safe_dump(data, sort_keys=False))
    return rubric


def without_model_checks(rubric: Path) -> Path:
    """The rubric at `rubric` less its judged checks (grader.engine.JUDGED_KINDS), written beside it.

    Each question keeps its other checks and the sum of their points; a question left with none is left
    out. Its child neither imports torch._dynamo nor warms up an export (the engine asks for those only
    when a judged check is in the rubric), and it runs no model check: about half of a grading's CPU."""
    from grader.engine import JUDGED_KINDS

    data = yaml.safe_load(rubric.read_text())
    questions = []
    for question in data["questions"]:
        kept = [check for check in question["checks"] if check["kind"] not in JUDGED_KINDS]
        if len(kept) < len(question["checks"]):
            question["points"] = sum(check["points"] for check in kept)
        if kept:
            questions.append({**question, "checks": kept})
    data["questions"] = questions
    light = rubric.with_name(rubric.stem + "_no_models.yaml")
    light.write_text(yaml.safe_dump(data, sort_keys=False))
    return light


def grade_in_process(name: str, level: str, *, workdir: Path, rubric, source: Path | None = None) -> Graded:
    """Grade one submission with the engine at `level` and write its results.json, as `grader check` does."""
    from grader.engine import grade_submission
    from grader.report import gradescope

    workdir.mkdir(parents=True)
    submission = workdir / "submission"
    shutil.copytree(source or HOSTILE / name, submission)
    if name in ATTACKS and ATTACKS[name].prepare:
        ATTACKS[name].prepare(submission)
    results = workdir / "results" / "results.json"
    started = time.monotonic()
    run = grade_submission(submission, rubric, seed=SEED, isolation=level, protect=[results.parent], skip_training=True)
    gradescope.write_results(run, results)
    seconds = time.monotonic() - started
    return Graded(name=name, level=level, returncode=0, seconds=seconds, results_path=results,
                  results=json.loads(results.read_text()), record=run.to_dict(), stderr="", submission=submission,
                  decoy_before="", decoy_after="")


def grade(name: str, level: str, *, workdir: Path, rubric: Path, source: Path | None = None,
          wait_after_s: float = 0.0) -> Graded:
    """Grade one submission with `grader check` at `level`, through the decoy-naming wrapper."""
    workdir.mkdir(parents=True)
    submission = workdir / "submission"
    shutil.copytree(source or HOSTILE / name, submission)
    if name in ATTACKS and ATTACKS[name].prepare:
        ATTACKS[name].prepare(submission)
    decoy = workdir / "decoy" / "results.json"
    decoy.parent.mkdir()
    decoy.write_text('{"decoy": true}')
    results, record = workdir / "results" / "results.json", workdir / "record.json"
    env = {k: v for k, v in os.environ.items() if k != "GRADER_ISOLATION"}
    env["GRADER_THREADS"] = "1"  # two gradings run side by side on two cores: no thread oversubscription
    cmd = [sys.executable, "-c", WRAPPER, str(decoy), sys.executable, "-m", "grader", "check", str(submission),
           "--rubric", str(rubric), "--seed", str(SEED), "--results", str(results), "--json", str(record), "-q",
           "--skip-training"]
    if level == "process":
        env["GRADER_ISOLATION"] = "process"  # the environment variable, not the flag: both paths get used
    else:
        cmd += ["--isolation", level]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - started
    graded = Graded(name=name, level=level, returncode=proc.returncode, seconds=seconds, results_path=results,
                    results=json.loads(results.read_text()) if results.exists() else {},
                    record=json.loads(record.read_text()) if record.exists() else {}, stderr=proc.stderr,
                    submission=submission, decoy_before='{"decoy": true}', decoy_after=decoy.read_text())
    if wait_after_s:
        time.sleep(wait_after_s)
        graded.results_after_wait = results.read_bytes()
    return graded


def forbidden_lines(allowed_text: str, *own_sources: str) -> list[str]:
    """Lines of the reference and the rubric that must never reach a student.

    Short lines (``return x``) and lines the correct solution's own results
    already show (check titles, for instance) or that the submission itself
    contains (``import torch.nn as nn``) are left out: they prove nothing.
    """
    lines = []
    for path in (REFERENCE, RUBRIC):
        for line in path.read_text().splitlines():
            text = line.strip()
            if len(text) >= 20 and text not in allowed_text and not any(text in s for s in own_sources):
                lines.append(text)
    return lines


def processes_named(comm: str) -> list[int]:
    """Pids of the processes whose /proc/PID/comm is `comm` (the fake_results forger renames itself)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def pids_cgroup_available() -> bool:
    """Whether the sandbox can put its child in a pids cgroup here (what contains a fork bomb as root)."""
    from grader.sandbox import cgroups

    group = cgroups.create(max_processes=8, memory_mb=None)
    if group is None:
        return False
    group.remove()
    return True
