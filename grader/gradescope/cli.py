"""The ``grader gradescope`` commands: ``build`` (on the instructor's machine) and ``run`` (in the container)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grader.errors import RubricError, RubricErrors, describe
from grader.gradescope import budget

EXIT_OK, EXIT_USAGE, EXIT_RUBRIC = 0, 2, 3


def cmd_build(args: argparse.Namespace) -> int:
    from grader.gradescope.build import build_zip

    from grader.course import Course

    output = Path(args.output or f"{args.assignment}_autograder.zip")
    try:
        course = Course.from_option(args.course)
        report = build_zip(args.assignment, output, timeout_s=args.timeout_s, memory_mb=args.memory_mb, course=course)
    except FileNotFoundError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (RubricError, RubricErrors) as exc:
        print(f"grader: the rubric cannot be used, no zip written:\n{describe(exc)}", file=sys.stderr)
        return EXIT_RUBRIC
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {report.output} ({len(report.members)} files, {report.bytes / 1024:.0f} KiB): upload it as the "
          "assignment's autograder (setup.sh and run_autograder are at its root)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from grader.gradescope.run import run

    return run(root=Path(args.root) if args.root else None, seed=args.seed, time_limit_s=args.time_limit_s,
               skip_training=args.skip_training)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``grader gradescope build|run`` on the main command line's subparsers."""
    gs = sub.add_parser("gradescope", help="package an autograder for Gradescope, or run inside one")
    cmds = gs.add_subparsers(dest="gradescope_command", required=True)

    build = cmds.add_parser("build", help="write the autograder zip for one assignment")
    build.add_argument("--assignment", required=True, help="assignment name (rubrics/NAME.yaml)")
    build.add_argument("-o", "--output", help="zip to write (default: NAME_autograder.zip)")
    build.add_argument("--course", help="course folder with rubrics/ and reference/ (default: $GRADER_COURSE, else "
                       "this repository's assignments)")
    build.add_argument("--timeout-s", type=float, default=budget.GRADESCOPE_TIMEOUT_S,
                       help="the autograder timeout set in Gradescope (default: its 600 s)")
    build.add_argument("--memory-mb", type=int, default=budget.GRADESCOPE_MEMORY_MB,
                       help="the container memory set in Gradescope (default: its 768 MB)")
    build.set_defaults(func=cmd_build)

    run = cmds.add_parser("run", help="grade $AUTOGRADER_ROOT/submission (what run_autograder calls)")
    run.add_argument("--root", help="the autograder root (default: $AUTOGRADER_ROOT, else /autograder)")
    run.add_argument("--seed", type=int, help="seed for generated inputs (default: random, printed)")
    run.add_argument("--time-limit-s", type=float,
                     help="the whole run's budget (default: $GRADER_TIME_LIMIT_S, else the rubric's "
                          "limits.total_time_s, else 600)")
    run.add_argument("--skip-training", action="store_true",
                     help="skip checks that train a model (for trying an image out; graded runs should not)")
    run.set_defaults(func=cmd_run)
