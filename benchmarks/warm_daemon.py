"""A grader daemon of the benchmarks' own (`grader daemon`, grader/daemon.py), in a folder of its own."""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRADER = str(ROOT / ".venv" / "bin" / "grader")


@contextlib.contextmanager
def warm_daemon(*warm_up: list[str]) -> Iterator[dict[str, str]]:
    """Start a daemon, run each `grader check` of `warm_up` through it untimed (its first check spawns its
    sandbox child the usual way and leaves a spare made for the same options: give it the timed checks'
    options, `--results` included), yield the environment that sends checks to it, stop it."""
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as home:
        env = {k: v for k, v in os.environ.items() if k != "GRADER_NO_DAEMON"}
        env["GRADER_DAEMON_DIR"] = home
        subprocess.run([GRADER, "daemon", "start", "--idle-minutes", "20"], env=env, check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        try:
            for args in warm_up:
                subprocess.run([GRADER, "check", *args, "-q"], env=env, check=True, cwd=ROOT)
            yield env
        finally:
            subprocess.run([GRADER, "daemon", "stop"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
