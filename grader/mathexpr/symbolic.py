"""Symbolic check that a difference is zero, in a worker process with a time limit.

``sympy.simplify`` has no timeout and can run for minutes (or exhaust memory)
on innocent-looking input, so it runs in a forked child that the parent kills
when the time is up. The child only receives sympy objects that our own
whitelist parser built; nothing typed by a student is executed there. The
child sends back a small JSON message (status, method, detail) rather than a
pickle, so the parent never unpickles anything.

The job starts in the background (``start``) so the caller can run the
numeric spot-check while sympy works, then collect the outcome (``result``).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import time
from dataclasses import dataclass
from typing import Literal

import sympy

SymbolicStatus = Literal["zero", "nonzero", "nonzero-constant", "timeout", "error"]
SymbolicMethod = Literal["identical", "expand", "simplify"]

# Extra address space the child may use beyond what it inherits. The parent
# may have torch loaded (large virtual size), so the limit is relative.
_CHILD_EXTRA_MEMORY = 2 * 1024**3


@dataclass(frozen=True)
class SymbolicOutcome:
    """What sympy concluded about ``student - reference``.

    status: "zero" (proved equal), "nonzero-constant" (the difference is a
    nonzero number: proved different), "nonzero" (sympy could not reduce it
    to 0; not a proof either way), "timeout" or "error".
    method: the step that proved zero (or last tried). seconds: wall time.
    """

    status: SymbolicStatus
    method: SymbolicMethod | None
    detail: str
    seconds: float


def _limit_memory() -> None:
    """Best effort: cap the child's address space (Linux only)."""
    try:
        import resource

        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[0])
        current = pages * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        wanted = current + _CHILD_EXTRA_MEMORY
        if hard == resource.RLIM_INFINITY or wanted <= hard:
            resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    except (OSError, ValueError, ImportError):
        pass  # not Linux or not permitted: the time limit still applies


def _steps(difference: sympy.Expr, noncommutative: bool) -> tuple[SymbolicStatus, SymbolicMethod, str]:
    """The actual sympy work, cheapest step first. Runs in the child."""
    if sympy.expand(difference) == 0:
        return "zero", "expand", ""
    if noncommutative:
        # simplify() knows little about non-commutative products and may
        # reorder or mangle them; expand() is exact for polynomial identities.
        return "nonzero", "expand", "expand() did not reduce the difference to 0"
    simplified = sympy.simplify(difference)
    if simplified == 0:
        return "zero", "simplify", ""
    # sigmoid/tanh identities often only close once everything is in exp().
    if sympy.simplify(difference.rewrite(sympy.exp)) == 0:
        return "zero", "simplify", "after rewriting in terms of exp"
    if simplified.is_number and simplified.is_zero is False:
        return "nonzero-constant", "simplify", str(simplified)[:200]
    return "nonzero", "simplify", "simplify() did not reduce the difference to 0"


def _child(conn: multiprocessing.connection.Connection, difference: sympy.Expr, noncommutative: bool) -> None:
    try:
        _limit_memory()
        status, method, detail = _steps(difference, noncommutative)
        message = {"status": status, "method": method, "detail": detail}
    except BaseException as exc:  # noqa: BLE001 - anything that goes wrong is reported, not raised
        message = {"status": "error", "method": None, "detail": f"{type(exc).__name__}: {str(exc)[:200]}"}
    try:
        conn.send_bytes(json.dumps(message).encode("utf-8"))
    finally:
        conn.close()


def _context() -> multiprocessing.context.BaseContext:
    # fork starts in milliseconds and needs no pickling of the arguments; the
    # child only runs sympy, so the usual fork-with-threads caveats (torch's
    # thread pools) do not bite, and a deadlocked child is killed on timeout.
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


class SymbolicJob:
    """A running (or already finished) symbolic check of one difference."""

    def __init__(self, difference: sympy.Expr, *, timeout_s: float) -> None:
        self._start = time.monotonic()
        self._timeout_s = timeout_s
        self._outcome: SymbolicOutcome | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        if difference == 0:
            # Equal after sympy's automatic canonicalisation: no worker needed.
            self._outcome = SymbolicOutcome("zero", "identical", "", 0.0)
            return
        noncommutative = not difference.is_commutative
        ctx = _context()
        receiver, sender = ctx.Pipe(duplex=False)
        try:
            process = ctx.Process(target=_child, args=(sender, difference, noncommutative), daemon=True)
            process.start()
        except (OSError, AssertionError, ValueError) as exc:
            # AssertionError: daemonic processes may not have children.
            receiver.close()
            self._outcome = SymbolicOutcome("error", None, f"could not start the sympy worker: {exc}", 0.0)
            return
        finally:
            sender.close()  # the parent keeps only the reading end
        self._process = process
        self._conn = receiver

    def result(self) -> SymbolicOutcome:
        """Wait (until the deadline) for the outcome; kill the worker if late."""
        if self._outcome is not None:
            return self._outcome
        conn, process = self._conn, self._process
        if conn is None or process is None:  # pragma: no cover - set together in __init__
            raise RuntimeError("symbolic job has neither a result nor a worker")
        remaining = max(0.0, self._timeout_s - (time.monotonic() - self._start))
        try:
            if conn.poll(remaining):
                message = json.loads(conn.recv_bytes(maxlength=1 << 16).decode("utf-8"))
                status = message["status"]
                self._outcome = SymbolicOutcome(status, message["method"], message["detail"], self._elapsed())
            else:
                self._outcome = SymbolicOutcome(
                    "timeout", None, f"sympy did not finish within {self._timeout_s:g} s", self._elapsed()
                )
        except (EOFError, OSError, ValueError, KeyError) as exc:
            # EOF: the child died without answering (memory limit, signal).
            self._outcome = SymbolicOutcome("error", None, f"sympy worker failed: {type(exc).__name__}", self._elapsed())
        finally:
            self.close()
        return self._outcome

    def close(self) -> None:
        """Stop the worker if it is still running and release the pipe."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=5.0)
            if not self._process.is_alive():
                self._process.close()  # frees its resources now, not at GC
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _elapsed(self) -> float:
        return time.monotonic() - self._start


def prove_zero(difference: sympy.Expr, *, timeout_s: float) -> SymbolicOutcome:
    """Run the symbolic check and wait for it (at most ``timeout_s`` seconds)."""
    return SymbolicJob(difference, timeout_s=timeout_s).result()
