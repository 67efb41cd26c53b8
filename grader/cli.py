"""The ``grader`` command line.

Exit status: 0 when grading ran (whatever the score), 2 for a usage error,
3 for an unusable rubric. With ``--results``, a valid results file is written
even when grading itself fails.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console

from grader.errors import RubricError, RubricErrors, UsageError, describe
from grader.report.text import clean_text

EXIT_OK, EXIT_USAGE, EXIT_RUBRIC = 0, 2, 3


COURSE_HELP = ("course folder with rubrics/ and reference/ (default: $GRADER_COURSE, else this repository's "
               "assignments); see README 'Courses'")


def add_course_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--course", metavar="DIR", help=COURSE_HELP)


def _course(args: argparse.Namespace):
    """The course `--course` names (its extra check kinds registered), or None for the default lookup."""
    from grader.course import Course

    return Course.load(args.course) if getattr(args, "course", None) else None


def _rubric_path(args: argparse.Namespace, course, assignment: str | None) -> Path:
    """--rubric FILE, else ASSIGNMENT's rubric in the course (or the default rubric folders)."""
    from grader.rubric.load import find_rubric

    if args.rubric:
        return Path(args.rubric)
    if not assignment:
        raise UsageError("pass --assignment NAME (or --rubric FILE)")
    return find_rubric(assignment, course)


def _data_dir(args: argparse.Namespace, course) -> str | None:
    """--data-dir, else the course's own data/ folder when it has one."""
    if args.data_dir:
        return args.data_dir
    return str(course.data_dir) if course is not None and course.data_dir is not None else None


def _detect_assignment(folder: Path, course=None) -> str:
    """The assignment whose accepted file names the folder holds (hw4.py -> hw4)."""
    from grader.loading.files import find_files
    from grader.rubric.load import rubric_dirs

    matches = []
    for d in rubric_dirs(course):
        for path in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            try:
                data = yaml.safe_load(path.read_text())
                names = data["submission"]["code"]
            except (OSError, yaml.YAMLError, KeyError, TypeError):
                continue
            if find_files(folder, names, []).code is not None:
                matches.append(data.get("assignment", path.stem))
    matches = sorted(set(matches))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"cannot tell the assignment of {folder} from its file names; pass --assignment NAME")
    raise UsageError(f"{folder} matches several assignments ({', '.join(matches)}); pass --assignment NAME")


def _no_gpu_here() -> bool:
    """True when this machine has no GPU device node at all (NVIDIA's or ROCm's): then CUDA cannot be
    available, and `--device auto` is "cpu" without importing torch (3.5 s) before the sandbox starts."""
    dev = Path("/dev")
    return not (dev / "nvidiactl").exists() and not (dev / "kfd").exists() and not any(dev.glob("nvidia[0-9]*"))


def _device(choice: str) -> str:
    if choice == "auto":
        if _no_gpu_here():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA device is available here")
    return choice


def cmd_check(args: argparse.Namespace) -> int:
    if args.kit is not None:
        return cmd_check_kit(args)
    # Nothing imported before `prestart` may import torch: the sandbox child imports it meanwhile.
    from grader import daemon
    from grader.engine import grade_submission, prestart
    from grader.report import gradescope, terminal
    from grader.rubric.load import load_rubric

    console = Console(stderr=False)
    started = time.perf_counter()
    folder = Path(args.submission)
    results_path = Path(args.results) if args.results else None
    early = None
    try:
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a folder; pass the folder that holds the submission's files")
        course = _course(args)
        assignment = args.assignment or (None if args.rubric else _detect_assignment(folder, course))
        rubric_path = _rubric_path(args, course, assignment)
        device = _device(args.device)
        protect = [results_path.resolve().parent] if results_path else []
        if results_path:
            # A valid "did not finish" file first: should this process be killed (out of memory, a timeout from
            # outside), that file is what stays. The real results replace it atomically at the end.
            gradescope.write_not_finished(results_path)
        # The child starts importing torch now, while this process loads the rubric and imports it too.
        # In a grader daemon's worker, a child may be waiting for this check already (`daemon.take_spare`),
        # and one is made ready for the next check like this one.
        daemon.hint(rubric_path, device=device, isolation=args.isolation, data_dir=_data_dir(args, course),
                    protect=protect)
        spare = daemon.take_spare()
        early = prestart(folder, rubric_path, device=device, isolation=args.isolation,
                         data_dir=_data_dir(args, course), protect=protect, spare=spare)
        daemon.used_spare(spare, early)
        rubric = load_rubric(rubric_path, course=course)
    except UsageError as exc:
        if early is not None:
            early.close()
        print(f"grader: {exc}", file=sys.stderr)
        if results_path:
            gradescope.write_failure(results_path, str(exc))
        return EXIT_USAGE
    except (RubricError, RubricErrors) as exc:
        if early is not None:
            early.close()
        print(f"grader: the rubric cannot be used:\n{describe(exc)}", file=sys.stderr)
        if results_path:
            gradescope.write_failure(results_path, "the assignment's rubric is invalid.")
        return EXIT_RUBRIC
    except BaseException:
        if early is not None:
            early.close()
        raise
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    try:
        run = grade_submission(folder, rubric, seed=seed, device=device, skip_training=args.skip_training,
                               isolation=args.isolation, data_dir=_data_dir(args, rubric.course), protect=protect,
                               progress=sys.stderr.isatty(), early=early)
    except Exception as exc:  # the grader's own fault: still leave a valid results file
        print(clean_text(f"grader: internal error while grading {folder}: {type(exc).__name__}: {exc}"), file=sys.stderr)
        if results_path:
            gradescope.write_failure(results_path, f"internal error ({type(exc).__name__}).", time.perf_counter() - started)
        return EXIT_OK
    if results_path:
        gradescope.write_results(run, results_path)
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(run.to_dict(), indent=2))
    if not args.quiet:
        terminal.print_run(run, console, verbose=args.verbose, student=args.as_student)
        if results_path:
            console.print(f"results written to {results_path}", highlight=False)
    return EXIT_OK


def cmd_check_kit(args: argparse.Namespace) -> int:
    """`grader check FOLDER --kit DIR`: the student's self-test, public checks against the kit's frozen values."""
    from grader.kit.selftest import find_kit, load_kit, self_test
    from grader.report import terminal

    for option in ("rubric", "assignment", "seed", "results"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option} does not apply with --kit: the kit fixes the rubric, the inputs and the seed")
    folder = Path(args.submission)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; pass the folder that holds your files")
    try:
        kit = load_kit(find_kit(args.kit or None))
    except (RubricError, RubricErrors) as exc:
        print(f"grader: the kit's rubric cannot be used (rebuild the kit):\n{describe(exc)}", file=sys.stderr)
        return EXIT_RUBRIC
    run = self_test(folder, kit, device=_device(args.device), isolation=args.isolation)
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(run.to_dict(), indent=2))
    if not args.quiet:
        terminal.print_run(run, Console(), verbose=args.verbose, student=True)
    return EXIT_OK


def cmd_kit_build(args: argparse.Namespace) -> int:
    """`grader kit build`: the student self-test kit of one assignment."""
    from grader.kit.build import DEFAULT_SEED, build_kit

    try:
        course = _course(args)
        rubric_path = _rubric_path(args, course, args.assignment)
        report = build_kit(rubric_path, Path(args.out), seed=args.seed if args.seed is not None else DEFAULT_SEED,
                           wheel=Path(args.wheel) if args.wheel else None, archive=args.zip)
    except (RubricError, RubricErrors) as exc:
        print(f"grader: the rubric cannot be used:\n{describe(exc)}", file=sys.stderr)
        return EXIT_RUBRIC
    print(f"kit for {args.assignment or rubric_path.stem} written to {report.folder}: {len(report.public)} public checks "
          f"({', '.join(report.public)}), {report.hidden_count} hidden checks left out"
          + (f"; archive {report.archive}" if report.archive else ""))
    return EXIT_OK


def cmd_rubric_validate(args: argparse.Namespace) -> int:
    from grader.course import Course
    from grader.rubric.load import load_rubric, support_file_problems

    course = _course(args)
    paths = list(args.paths)
    if not paths:  # every rubric of the course
        course = course or Course.default()
        paths = [str(p) for p in sorted(course.rubrics_dir.glob("*.y*ml"))]
        if not paths:
            raise UsageError(f"{course.rubrics_dir} holds no rubric (NAME.yaml)")
    status = EXIT_OK
    for path in paths:
        try:
            rubric = load_rubric(Path(path), course=course)
            problems = support_file_problems(rubric)
            if problems:
                raise RubricErrors(problems)
        except (RubricError, RubricErrors) as exc:
            print(f"{path}: INVALID\n{describe(exc)}", file=sys.stderr)
            status = EXIT_RUBRIC
            continue
        print(f"{path}: ok ({rubric.assignment}: {len(rubric.questions)} questions, {len(rubric.checks)} checks, "
              f"{rubric.total_points:g} points)")
    return status


def cmd_grade(args: argparse.Namespace) -> int:
    """Batch: every sub-folder of FOLDER is one submission; per-student results plus a class table."""
    from grader.batch import grade_folder, submission_folders
    from grader.report.html import REPORT, write_report
    from grader.report.progress import batch_progress
    from grader.report.table import print_summary, review_summary, write_csv
    from grader.rubric.load import load_rubric

    root = Path(args.folder)
    if not root.is_dir() or not submission_folders(root):
        raise UsageError(f"{root} should be a folder holding one sub-folder per submission")
    if args.local_cluster is not None and args.local_cluster < 1:
        raise UsageError("--local-cluster needs a number of workers of at least 1")
    try:
        course = _course(args)
        rubric_path = _rubric_path(args, course, args.assignment)
        if course is not None and rubric_path.resolve().parent != course.rubrics_dir:
            # Each grading process finds the course from the rubric's place (grader.course.Course.for_rubric).
            raise UsageError(f"with --course, the rubric must sit in {course.rubrics_dir}")
        load_rubric(rubric_path, course=course)  # fail once, here, rather than in every worker
    except (RubricError, RubricErrors) as exc:
        print(f"grader: the rubric cannot be used:\n{describe(exc)}", file=sys.stderr)
        return EXIT_RUBRIC
    out = Path(args.out)
    seed, seed_note = _batch_seed(args.seed, out)
    console = Console(quiet=args.quiet)
    if seed_note:
        console.print(seed_note, highlight=False)
    with batch_progress(console, enabled=True, quiet=args.quiet) as progress:
        names, runs = grade_folder(root, rubric_path, out, jobs=args.jobs, seed=seed, device=_device(args.device),
                                   skip_training=args.skip_training, isolation=args.isolation, data_dir=_data_dir(args, course),
                                   regrade=args.regrade, scheduler=args.scheduler, local_cluster=args.local_cluster,
                                   on_plan=lambda plan: progress.planned(len(plan.to_grade), len(plan.reused)),
                                   on_done=progress.callback(_done_line))
    write_csv(runs, out / "grades.csv", names)
    report = write_report(runs, names, out / REPORT)
    print_summary(runs, names, console)
    console.print(f"per-submission results in {out}/<name>/results.json; class table in {out / 'grades.csv'}; "
                  f"class report in {report} (seed {seed})", highlight=False)
    console.print(review_summary(runs), highlight=False)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild the HTML class report from a grades folder (the records `grader grade` left), without regrading."""
    from grader.report.html import REPORT, load_records, write_report

    out = Path(args.folder)
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder; pass the --out folder of `grader grade` (default: grades/)")
    names, runs, problems = load_records(out)
    for problem in problems:
        print(clean_text(f"grader: skipped {problem}"), file=sys.stderr)
    if not runs:
        raise UsageError(f"{out} holds no grading records (<name>/record.json); run `grader grade` first")
    path = write_report(runs, names, Path(args.output) if args.output else out / REPORT)
    print(f"class report for {len(runs)} submission(s) written to {path}")
    return EXIT_OK
BATCH_FILE = "batch.json"


def _batch_seed(given: int | None, out: Path) -> tuple[int, str | None]:
    """The seed of a batch, and a note to print. Without --seed, a rerun into the same folder takes the seed
    its earlier run recorded there: the seed is part of every stored grading's key, so a fresh random one
    would regrade everything."""
    import json

    from grader.report.gradescope import write_atomic

    path = out / BATCH_FILE
    if given is None:
        try:
            stored = json.loads(path.read_text())["seed"]
            if isinstance(stored, int) and not isinstance(stored, bool):
                return stored, f"seed {stored}, from the earlier run recorded in {path} (pass --seed to change it)"
        except (OSError, ValueError, KeyError, TypeError):
            pass
    seed = given if given is not None else secrets.randbelow(2**31)
    write_atomic(path, {"seed": seed})
    return seed, None


def _done_line(name: str, run) -> str:
    flagged = run.to_review()
    return clean_text(f"{name}: {run.score:g}/{run.max_score:g}"
                      + (f" ({len(flagged)} check(s) to review)" if flagged else ""))


def cmd_rubric_kinds(args: argparse.Namespace) -> int:
    """The check kinds a rubric can name (with the course's own) and their options, from their declarations."""
    from grader.checks import REGISTRY
    from grader.course import Course
    from grader.rubric.kinds import describe_kinds
    from grader.rubric.load import suggest

    (_course(args) or Course.default()).register_check_kinds()  # the course's extra kinds, and the entry points'
    for name in args.kinds:
        if name not in REGISTRY:
            close = suggest(name, REGISTRY)
            raise UsageError(f"unknown check kind {name!r}" + (f" (did you mean {close!r}?)" if close else "")
                             + f"; known: {', '.join(sorted(REGISTRY))}")
    print(describe_kinds(REGISTRY, args.kinds or None))
    return EXIT_OK


def cmd_handout(args: argparse.Namespace) -> int:
    """Write the students' handout of one assignment (Markdown) from its rubric and reference stubs."""
    from grader.course import Course
    from grader.handout import handout_markdown
    from grader.rubric.load import load_rubric

    course = _course(args) or Course.default()
    try:
        rubric = load_rubric(course.rubric_path(args.assignment), course=course)
    except (RubricError, RubricErrors) as exc:
        print(f"grader: the rubric cannot be used:\n{describe(exc)}", file=sys.stderr)
        return EXIT_RUBRIC
    text = handout_markdown(rubric)
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    out = Path(args.output) if args.output else course.handout_path(rubric.assignment)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return EXIT_OK


def add_course_commands(sub: argparse._SubParsersAction, rubric: argparse._SubParsersAction) -> None:
    """``grader rubric kinds`` and ``grader handout`` (courses, options, handouts: README 'Courses')."""
    kinds = rubric.add_parser("kinds", help="list the check kinds and their options (types, defaults, what they do)")
    kinds.add_argument("kinds", nargs="*", help="only these kinds")
    add_course_option(kinds)
    kinds.set_defaults(func=cmd_rubric_kinds)

    handout = sub.add_parser("handout", help="write an assignment's handout for students (Markdown) from its rubric")
    handout.add_argument("--assignment", required=True, help="assignment name (rubrics/NAME.yaml in the course)")
    handout.add_argument("-o", "--output", help="file to write, - for stdout (default: the course's "
                         "docs/assignments/NAME.md)")
    add_course_option(handout)
    handout.set_defaults(func=cmd_handout)


def cmd_data_status(args: argparse.Namespace) -> int:
    from grader.data import status, status_table

    Console().print(status_table(status(args.data_dir)))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description="Autograder for deep-learning coursework.")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="grade one submission folder")
    check.add_argument("submission", help="folder with the student's files (e.g. hw4.py or hw4.ipynb, answers.yaml)")
    check.add_argument("--assignment", help="assignment name (default: guessed from the file names)")
    check.add_argument("--rubric", help="rubric file (default: rubrics/ASSIGNMENT.yaml)")
    add_course_option(check)
    check.add_argument("--results", help="write Gradescope results.json here")
    check.add_argument("--json", help="write the full grading record (all feedback) as JSON here")
    check.add_argument("--skip-training", action="store_true", help="skip checks that train a model")
    check.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    check.add_argument("--seed", type=int, help="seed for generated inputs (default: random, printed)")
    check.add_argument("--isolation", choices=["bubblewrap", "unprivileged-uid", "process"],
                       help="force an isolation level (default: the strongest that works here)")
    check.add_argument("--data-dir", help="folder with datasets (torchvision layout or IDX files)")
    check.add_argument("--verbose", "-v", action="store_true", help="show all feedback, also for passed checks")
    check.add_argument("--quiet", "-q", action="store_true", help="print nothing; just write the results")
    check.add_argument("--as-student", action="store_true",
                       help="print the report as a student sees it now: visible checks only, totals over them")
    check.add_argument("--kit", nargs="?", const="", default=None, metavar="DIR",
                       help="self-test with a student kit (built by `grader kit build`): its public checks only; "
                            "DIR defaults to $GRADER_KIT or the kit folder you are in")
    check.add_argument("--no-daemon", action="store_true",
                       help="check in this process even if a grader daemon runs (also GRADER_NO_DAEMON=1)")
    check.set_defaults(func=cmd_check)

    daemon = sub.add_parser("daemon", help="a warm background process that makes `grader check` start at once")
    daemon_sub = daemon.add_subparsers(dest="daemon_command", required=True)
    daemon_start = daemon_sub.add_parser("start", help="start this user's daemon (if none runs) and wait until it serves")
    daemon_start.add_argument("--idle-minutes", type=float, default=30.0,
                              help="leave after this long without a check (default: 30)")
    daemon_start.add_argument("--foreground", action="store_true", help="serve in this process (logs to stdout)")
    daemon_start.set_defaults(func=cmd_daemon)
    for name, text in (("stop", "stop this user's daemon"), ("status", "say whether a daemon serves, and what it did")):
        daemon_sub.add_parser(name, help=text).set_defaults(func=cmd_daemon)

    grade = sub.add_parser("grade", help="grade a folder of submissions (one sub-folder each) in parallel")
    grade.add_argument("folder", help="folder with one sub-folder per submission")
    grade.add_argument("--assignment", required=True, help="assignment name (rubrics/NAME.yaml)")
    grade.add_argument("--rubric", help="rubric file (default: rubrics/ASSIGNMENT.yaml)")
    add_course_option(grade)
    grade.add_argument("--out", default="grades", help="where per-submission results and grades.csv go (default: grades/)")
    grade.add_argument("--jobs", "-j", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                       help="submissions graded at once (default: half the CPUs)")
    grade.add_argument("--skip-training", action="store_true", help="skip checks that train a model")
    grade.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    grade.add_argument("--seed", type=int, help="seed for generated inputs (default: random, printed)")
    grade.add_argument("--isolation", choices=["bubblewrap", "unprivileged-uid", "process"])
    grade.add_argument("--data-dir", help="folder with datasets (torchvision layout or IDX files)")
    grade.add_argument("--regrade", action="store_true",
                       help="grade every submission again, also those unchanged since their stored grading")
    where = grade.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="grade on an existing Dask cluster (e.g. tcp://host:8786) whose workers have the grader "
                            "and the course installed; one task per submission")
    where.add_argument("--local-cluster", type=int, metavar="N",
                       help="grade on a Dask LocalCluster of N worker processes started here (to try Dask out)")
    grade.add_argument("--quiet", "-q", action="store_true", help="print nothing; just write the results and the table")
    grade.set_defaults(func=cmd_grade)

    report = sub.add_parser("report", help="rebuild the HTML class report from a grades folder, without regrading")
    report.add_argument("folder", help="the --out folder of `grader grade` (one <name>/record.json per submission)")
    report.add_argument("--output", "-o", help="where to write the page (default: FOLDER/report.html)")
    report.set_defaults(func=cmd_report)

    rubric = sub.add_parser("rubric", help="work with rubric files").add_subparsers(dest="rubric_command", required=True)
    validate = rubric.add_parser("validate", help="check rubric files against the schema and the reference")
    validate.add_argument("paths", nargs="*", help="rubric files (default: every rubric of the course)")
    add_course_option(validate)
    validate.set_defaults(func=cmd_rubric_validate)
    add_course_commands(sub, rubric)

    data = sub.add_parser("data", help="datasets for training checks").add_subparsers(dest="data_command", required=True)
    data_status = data.add_parser("status", help="which datasets this machine has, from where, with sizes (never downloads)")
    data_status.add_argument("--data-dir", help="also look in this folder (torchvision layout or IDX files)")
    data_status.set_defaults(func=cmd_data_status)

    kit = sub.add_parser("kit", help="student self-test kits").add_subparsers(dest="kit_command", required=True)
    kit_build = kit.add_parser("build", help="write a self-test kit: public checks, frozen fixtures, the grader wheel")
    kit_build.add_argument("--assignment", required=True, help="assignment name (rubrics/NAME.yaml)")
    kit_build.add_argument("--rubric", help="rubric file (default: rubrics/ASSIGNMENT.yaml)")
    kit_build.add_argument("-o", "--out", required=True, help="new folder for the kit")
    kit_build.add_argument("--zip", action="store_true", help="also write OUT.zip")
    kit_build.add_argument("--seed", type=int, help="seed of the kit's frozen inputs (default: a fixed one)")
    kit_build.add_argument("--wheel", help="use this grader wheel instead of building one with pip")
    add_course_option(kit_build)
    kit_build.set_defaults(func=cmd_kit_build)

    from grader.gradescope import cli as gradescope_cli

    gradescope_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `grader` command. Called without arguments (the console script, `python -m grader`) it leaves
    through `_leave`; called with a list (tests, other programs) it returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = _delegated(args) if argv is None else None
        if code is None:
            code = int(args.func(args))
    except UsageError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    if argv is None:
        _leave(code)
    return code


def _delegated(args: argparse.Namespace) -> int | None:
    """A `grader check` typed at a shell goes to this user's grader daemon when one of this grader runs
    (`grader.daemon`); None: it runs here."""
    if args.func is not cmd_check or args.no_daemon or args.kit is not None:
        return None
    from grader import daemon

    return daemon.delegate(sys.argv[1:])


def cmd_daemon(args: argparse.Namespace) -> int:
    from grader import daemon

    if args.daemon_command == "start":
        if args.foreground:
            return daemon.serve(args.idle_minutes)
        status = daemon.start(args.idle_minutes)
        print(f"grader daemon: pid {status['pid']} serves {status['socket']}; it leaves after "
              f"{status['idle_minutes']:g} idle minutes (grader daemon stop ends it now)")
        return EXIT_OK
    status = daemon.request(args.daemon_command)
    if status is None:
        print("grader daemon: none of this grader runs for this user")
        return 1 if args.daemon_command == "status" else EXIT_OK
    if args.daemon_command == "stop":
        print(f"grader daemon: pid {status['pid']} stops")
    else:
        print(f"grader daemon: pid {status['pid']} on {status['socket']}: {status['served']} check(s) served, "
              f"{status['spares_used']} on a sandbox child started ahead, {status['running']} running; spare child for: "
              f"{status['spare'] or 'none yet'}; leaves after {status['idle_minutes']:g} idle minutes")
    return EXIT_OK


def _leave(code: int) -> None:
    """End the process without the interpreter's teardown, once everything it owes is done.

    Tearing down a process that has imported torch and torch._dynamo (with sympy) takes 1.5-2 s of CPU
    here, spent freeing objects the exit frees anyway: a third of a quick `grader check`. What a normal
    exit does that matters is done first: other non-daemon threads are waited for, the atexit handlers
    run (multiprocessing's, which reaps children, and the sandbox's), and stdout and stderr are flushed.
    Every file the grader writes is closed (and renamed into place) before a command returns."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`grader ... | head`): nothing more to say
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
