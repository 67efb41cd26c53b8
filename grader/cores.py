"""How many threads the torch work of a grading may use: decided once, from the cores this grading really has.

Torch-free on purpose: the parent decides the thread count before it imports torch (the sandbox child is
started first, see `grader.engine.prestart`), and the child, the judge and the harness read the same rule.
"""
from __future__ import annotations

import math
import os


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs granted by a cgroup CPU quota (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`); None if unlimited/unknown."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:  # v2: "200000 100000" -> 2.0, "max 100000" -> None
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:  # v1: -1 means no quota
            quota_us = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period_us = int(f.read())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def default_num_threads() -> int:
    """Threads worth using: the CPUs we may run on, capped by a cgroup CPU quota.

    Affinity (unlike os.cpu_count) respects taskset; the quota matters in
    containers such as Gradescope's (0.5 vCPU by default), where more threads
    than granted CPUs leave OpenMP's spinning threads waiting for each other.

    The same happens when other processes compete for the cores (a process
    pool grading several submissions, a shared machine): measured here with
    LeNet-5 on a 2-core machine under load, 2 threads took 82-277 s per epoch
    against 16 s for 1 thread, and 10-14 s for 2 threads with
    OMP_WAIT_POLICY=PASSIVE. That variable must be in the environment before
    torch is imported, so it is the sandbox launcher's job, not this module's;
    a pool of W workers should pass num_threads = CPUs // W.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def grading_threads(jobs: int = 1) -> int:
    """Threads for the torch work of one grading: the one place that decides it (passed on explicitly, in the
    sandbox's `Limits` and in every judge job, never re-read elsewhere).

    GRADER_THREADS if the user set it; else the CPUs this process may use
    (affinity and cgroup CPU quota: `default_num_threads`) shared among the
    `jobs` submissions graded at the same time (`grader grade -j`). The
    machine's current load does not enter: with OpenMP's passive wait policy
    (grader/__init__.py) extra threads on a busy machine cost little, and the
    verdicts compare CPU time, which load does not stretch.
    """
    value = os.environ.get("GRADER_THREADS")
    if value and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return max(1, default_num_threads() // max(1, jobs))
