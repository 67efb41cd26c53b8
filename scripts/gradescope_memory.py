"""Peak memory of Gradescope's run_autograder per bundled assignment, with and without training, in a clean root.

    sudo .venv/bin/python scripts/gradescope_memory.py [--limit-mb 768] [--assignments hw4 a2] [--write]

For each assignment (rubrics/*.yaml with a submissions_example/NAME/correct):
the zip from ``grader gradescope build`` goes into a clean Debian root
(scripts/clean_os.py), setup.sh runs there as Gradescope runs it (torch's CPU
wheel from GRADER_CLEAN_OS_WHEELS, default /opt/wheels), then run_autograder
grades the correct example twice (with training, then --skip-training), each
time inside a fresh memory cgroup limited to --limit-mb with no swap, all
processes counted (grader, sandbox child, judge). Reported per run:

* ``charged``: the cgroup's peak charge (memory.max_usage_in_bytes /
  memory.peak). It includes page cache (the torch libraries read from disk),
  which the kernel reclaims under the limit, so it says little by itself once
  it reaches the limit;
* ``resident``: the peak, sampled every 0.1 s, of the cgroup's anonymous plus
  mapped-file memory (memory.stat): what must fit, the figure to compare with
  the container's memory;
* ``oom kills`` and the score: a run fits when nothing was killed and the
  score is the one the same run gets without a limit (full marks for the
  correct example).

--write stores the figures in grader/gradescope/measured_memory.json, which
``grader gradescope build`` reads to state the memory to choose.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clean_os  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "grader" / "gradescope" / "measured_memory.json"


class Sampler(threading.Thread):
    """Polls a cgroup's memory.stat; `peak_mb` is the largest anonymous + mapped-file total seen."""

    def __init__(self, group: clean_os.MemoryCgroup) -> None:
        super().__init__(daemon=True)
        self.group, self.peak, self.stop = group, 0, threading.Event()

    def run(self) -> None:
        v2 = self.group.v2
        keys = ("anon", "file_mapped", "shmem") if v2 else ("total_rss", "total_mapped_file", "total_shmem")
        while not self.stop.is_set():
            try:
                stat = self.group.stat()
                self.peak = max(self.peak, sum(stat.get(k, 0) for k in keys))
            except OSError:
                pass
            self.stop.wait(0.1)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def build_zip(assignment: str, out: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "grader", "gradescope", "build", "--assignment", assignment,
                           "-o", str(out)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"gradescope build {assignment} failed:\n{proc.stderr}")


def measure(root: clean_os.CleanRoot, training: bool, limit_mb: int) -> dict:
    group = clean_os.memory_cgroup(limit_mb)
    sampler = Sampler(group)
    sampler.start()
    try:
        args = ["--seed", "1"] + ([] if training else ["--skip-training"])
        run = root.run_autograder(*args, cgroup_procs=[group.procs])
    finally:
        sampler.stop.set()
        sampler.join()
    results = root.results()
    out = {"training": training, "limit_mb": limit_mb, "charged_mb": round(group.peak_mb()),
           "resident_mb": round(sampler.peak_mb), "oom_kills": group.oom_kills(), "score": results["score"],
           "max_score": sum(t["max_score"] for t in results["tests"]), "seconds": round(run.seconds, 1),
           "exit": run.returncode}
    if run.returncode != 0 or "internal error" in run.stdout:
        out["tail"] = run.tail(15)
    group.remove()
    return out


def valid(fig: dict) -> bool:
    """A figure worth keeping: the run finished with results, or was killed for memory (then it does not fit)."""
    return fig["exit"] == 0 and (fig["oom_kills"] > 0 or fig["max_score"] > 0)


def table(record: dict) -> str:
    """The figures as a Markdown table (for docs/gradescope.md and the README)."""
    rows = ["| assignment | training | resident peak | charged peak | under the limit | score | seconds |",
            "|---|---|---|---|---|---|---|"]
    for name, runs in sorted(record["assignments"].items()):
        runs = [r for r in runs if valid(r)]
        for r in runs:
            if r["oom_kills"]:
                rows.append(f"| {name} | {'with' if r['training'] else 'without'} | more than {r['limit_mb']} MB "
                            f"(killed for memory) | {r['charged_mb']} MB | does not fit ({r['limit_mb']} MB) | "
                            f"grading did not finish | {r['seconds']:g} |")
                continue
            fits = "killed for memory" if r["oom_kills"] else ("fits" if r["score"] == r["max_score"] else "wrong score")
            rows.append(f"| {name} | {'with' if r['training'] else 'without'} | {r['resident_mb']} MB | "
                        f"{r['charged_mb']} MB | {fits} ({r['limit_mb']} MB) | {r['score']:g} / {r['max_score']:g} | "
                        f"{r['seconds']:g} |")
    return "\n".join(rows) + f"\n\n{record['environment']}; measured {record['measured']}."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit-mb", type=int, default=768,
                    help="the container memory to measure under (768; 0: no limit, the peak a run needs)")
    ap.add_argument("--assignments", nargs="*", help="default: every rubric with a correct example")
    ap.add_argument("--write", action="store_true", help=f"store the figures in {MEASURED.relative_to(ROOT)}")
    ap.add_argument("--root", help="reuse a clean root kept from an earlier run (its /autograder is replaced)")
    ap.add_argument("--training", choices=("both", "with", "without"), default="both")
    ap.add_argument("--table", action="store_true", help="print the stored figures as a Markdown table and stop")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(MEASURED.read_text())))
        return 0
    wheels = Path(os.environ.get("GRADER_CLEAN_OS_WHEELS") or clean_os.DEFAULT_WHEELS)
    names = args.assignments or sorted(p.stem for p in (ROOT / "rubrics").glob("*.yaml")
                                       if (ROOT / "submissions_example" / p.stem / "correct").is_dir())
    try:
        clean_os.preflight()
        root = (clean_os.CleanRoot.attach(Path(args.root), wheels=wheels) if args.root
                else clean_os.CleanRoot(wheels=wheels))
    except clean_os.CleanOSUnavailable as exc:
        print(f"cannot measure: {exc}", file=sys.stderr)
        return 1
    figures: dict[str, list[dict]] = {}
    torch_version = ""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                zip_path = Path(tmp) / f"{name}.zip"
                build_zip(name, zip_path)
                source = root.autograder / "source"
                if source.exists():  # the next assignment: a fresh source/, setup.sh again (pip has it all)
                    subprocess.run(["rm", "-rf", str(source), str(root.autograder / "results")], check=True)
                root.install_zip(zip_path)
                setup = root.setup(torch_wheels=wheels)
                if setup.returncode != 0:
                    print(f"{name}: setup.sh failed:\n{setup.tail()}", file=sys.stderr)
                    return 1
                torch_version = setup.stdout.strip().splitlines()[-1]
                root.put_submission(ROOT / "submissions_example" / name / "correct")
                figures[name] = []
                for training in {"both": (True, False), "with": (True,), "without": (False,)}[args.training]:
                    fig = measure(root, training, args.limit_mb)
                    print(json.dumps({"assignment": name, **fig}), flush=True)
                    if valid(fig):
                        figures[name].append(fig)
                    else:
                        print(f"{name}: run ended without results and was not killed for memory (stopped from "
                              "outside?): not a figure, not stored", file=sys.stderr)
    finally:
        if not args.root:
            root.remove()
    record = {"command": "sudo .venv/bin/python scripts/gradescope_memory.py --write",
              "measured": time.strftime("%Y-%m-%d", time.gmtime()), "limit_mb": args.limit_mb,
              "environment": f"clean Debian {clean_os.SUITE} root, {torch_version.removeprefix('setup: ready (').removesuffix(')')}, "
                             f"{platform.machine()}, GRADER_THREADS=1",
              "assignments": figures}
    print(json.dumps(record, indent=1))
    if args.write:
        old = json.loads(MEASURED.read_text()) if MEASURED.exists() else {"assignments": {}}
        merged = old.get("assignments", {})
        for name, runs in figures.items():  # a new run replaces the one with the same training and limit
            keep = [r for r in merged.get(name, []) if not any(
                (r["training"], r["limit_mb"]) == (n["training"], n["limit_mb"]) for n in runs)]
            merged[name] = sorted(keep + runs, key=lambda r: (not r["training"], r["limit_mb"] or 0))
        record["assignments"] = merged
        MEASURED.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
