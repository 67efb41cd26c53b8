"""The operations the sandbox child performs on the student's namespace.

This module runs inside the child, next to student code, so it trusts nothing
the student defines and returns plain data only (see `protocol`). It keeps
its own references to the torch/numpy functions it uses, taken before any
student code runs, so that a submission monkeypatching them cannot change how
its own results are measured and reported.
"""
from __future__ import annotations

import ast
import signal
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from grader.protocol import GENERATOR_TAG
from grader.child.loading.answers import AnswersError, answers_from_cells, read_answers_yaml
from grader.child.loading.notebook import read_code_cells
from grader.child.loading.statements import LoadPlan, Statement, analyse_unit, plan_statements

# Captured before student code runs (see module docstring).
_Tensor = torch.Tensor
_as_subclass = torch.Tensor.as_subclass
_detach = torch.Tensor.detach
_cpu = torch.Tensor.cpu
_numpy = torch.Tensor.numpy
_contiguous = torch.Tensor.contiguous
_from_numpy = torch.from_numpy
_no_grad = torch.no_grad
_np_array = np.array
_np_asarray = np.asarray
_builtin_type = type
_numel = torch.Tensor.numel
_element_size = torch.Tensor.element_size
_Generator = torch.Generator

# The most a reply may hold (set by the child from its limits): a bigger result
# is refused here, before it is copied, instead of by the parent after.
MAX_REPLY_BYTES: int | None = None

# Statements run at load only because graded code needs them (see loading.statements)
# may be heavy: each gets STATEMENT_SECONDS, all together NEED_SECONDS unless the load request says.
STATEMENT_SECONDS = 5.0
NEED_SECONDS = 10.0
MAX_REPORTED_NAMES = 200


class LoadTimeout(BaseException):
    """A statement run at load took too long (a BaseException, so `except Exception` in student code lets it through)."""


def _statement_timeout(signum: int, frame: Any) -> None:
    raise LoadTimeout()



class StudentError(Exception):
    """Student code raised: carries a summary the parent shows as feedback."""

    def __init__(self, summary: str, where: str | None) -> None:
        super().__init__(summary)
        self.summary, self.where = summary, where


class NotPlainData(Exception):
    """The student returned something that cannot be sent as plain data."""


def student_error(exc: BaseException) -> StudentError:
    """Summarise an exception from student code: type, message and the student's own line."""
    where = None
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith("<student>") or frame.filename.startswith("student:"):
            where = f"{frame.filename.removeprefix('student:')}, line {frame.lineno}"
            break
    message = str(exc)
    if isinstance(exc, MemoryError) and not message:
        message = "ran out of memory (the sandbox's memory limit was reached)"
    if len(message) > 500:
        message = message[:500] + " [...]"
    return StudentError(f"{_builtin_type(exc).__name__}: {message}", where)


# --- plain-data conversion -------------------------------------------------------------


def to_plain(value: Any, depth: int = 0) -> Any:
    """Student value -> JSON scalars, strings, lists, dicts and numpy arrays (see protocol)."""
    if depth > 20:
        raise NotPlainData("the returned value is nested too deeply")
    t = _builtin_type(value)
    if value is None or t in (bool, int, float, str):
        return value
    if isinstance(value, _Tensor):
        # Subclasses may override anything: view through the base class before converting.
        base = _as_subclass(value, _Tensor)
        _check_size(_numel(base), _numel(base) * _element_size(base), "tensor")
        with _no_grad():
            arr = _numpy(_contiguous(_cpu(_detach(base))))
        return _np_array(arr, copy=True)
    if t is np.ndarray:
        if value.dtype.kind not in "biuf":
            raise NotPlainData(f"a numpy array of dtype {value.dtype} (numbers were expected)")
        _check_size(value.size, value.nbytes, "numpy array")
        return _np_array(value, copy=True)
    if t in (np.float32, np.float64, np.int32, np.int64, np.bool_):
        return value.item()
    if t in (list, tuple):
        return [to_plain(v, depth + 1) for v in value]
    if t is dict:
        out = {}
        for k, v in value.items():
            if _builtin_type(k) is not str:
                raise NotPlainData(f"a dict with a key of type {_builtin_type(k).__name__} (string keys were expected)")
            out[k] = to_plain(v, depth + 1)
        return out
    raise NotPlainData(f"an object of type {t.__name__}")


def _check_size(elements: int, nbytes: int, what: str) -> None:
    if MAX_REPLY_BYTES is not None and nbytes > MAX_REPLY_BYTES:
        raise NotPlainData(f"the result is a {what} of {elements:,} elements ({nbytes / 2**20:,.0f} MB), more than "
                           f"the {MAX_REPLY_BYTES >> 20} MB a result may take")


def from_plain(arg: Any) -> Any:
    """Request argument -> the value the student function receives (arrays become tensors)."""
    if isinstance(arg, np.ndarray):
        return _from_numpy(_np_array(arg, copy=True))
    if isinstance(arg, list):
        return [from_plain(a) for a in arg]
    if isinstance(arg, dict):
        if set(arg) == {GENERATOR_TAG} and _builtin_type(arg[GENERATOR_TAG]) is int:
            return _Generator().manual_seed(arg[GENERATOR_TAG])
        return {k: from_plain(v) for k, v in arg.items()}
    return arg


# --- the namespace -----------------------------------------------------------------------


class Namespace:
    """The student's loaded definitions, and the operations the parent may request on them."""

    def __init__(self) -> None:
        self.globals: dict[str, Any] = {"__name__": "student_submission", "__builtins__": __builtins__}
        self.loaded = False

    # load ---------------------------------------------------------------------------------

    def load(self, code_path: str | None, answers_path: str | None, mode: str, targets: list[str] | None = None,
             need_seconds: float = NEED_SECONDS) -> dict[str, Any]:
        """Run the submission's definitions, and the statements graded code needs (see `loading.statements`).

        targets: the names the rubric's checks use; None means every definition's (a safe superset).
        need_seconds: the time all needed statements together may take; each gets at most STATEMENT_SECONDS.
        """
        report: dict[str, Any] = {"errors": [], "skipped": [], "names": [], "answers": None, "answers_error": None,
                                  "needed_failed": [], "skipped_defines": {}}
        cell_sources: list[str] = []
        # The answers file is read before any student code runs: code that
        # deletes or rewrites files in its folder cannot take it away.
        if answers_path:
            try:
                report["answers"] = read_answers_yaml(Path(answers_path))
            except AnswersError as exc:
                report["answers_error"] = str(exc)
            except OSError as exc:
                report["answers_error"] = f"{Path(answers_path).name} could not be read: {exc.strerror or exc}"
        if code_path:
            path = Path(code_path)
            if path.suffix == ".ipynb":
                try:
                    cells = read_code_cells(path)
                except Exception as exc:  # nbformat raises several types for corrupt JSON
                    report["errors"].append(f"{path.name} is not a readable Jupyter notebook: {exc}")
                    cells = []
                units = [(f"{path.name} cell {c.index}", c.source) for c in cells]
                cell_sources = [c.source for c in cells]
            else:
                units = [(path.name, path.read_text(encoding="utf-8", errors="replace"))]
            statements = []
            for label, source in units:
                tree = self._parse_unit(label, source, report)
                if tree is not None:
                    statements += analyse_unit(label, source, tree)
            plan = plan_statements(statements, targets, mode=mode)
            self._run_plan(plan, mode, need_seconds, report)
        if report["answers"] is None and cell_sources:
            try:
                report["answers"] = answers_from_cells(cell_sources)
            except AnswersError as exc:
                report["answers_error"] = f"ANSWERS cell: {exc}"
        report["names"] = sorted(k for k in self.globals if not k.startswith("__"))
        self.loaded = True
        return report

    @staticmethod
    def _parse_unit(label: str, source: str, report: dict[str, Any]) -> ast.Module | None:
        try:
            return ast.parse(source, filename=label)
        except SyntaxError as exc:
            report["errors"].append(f"{label}, line {exc.lineno}: syntax error: {exc.msg}"
                                    + (f"\n    {exc.text.rstrip()}" if exc.text else ""))
        except (ValueError, RecursionError, MemoryError) as exc:
            report["errors"].append(f"{label}: cannot be parsed ({_builtin_type(exc).__name__})")
        return None

    def _run_plan(self, plan: LoadPlan, mode: str, need_seconds: float, report: dict[str, Any]) -> None:
        remaining = need_seconds  # spent only by needed statements, not by imports and definitions
        for stmt in plan.statements:
            if not stmt.run:
                report["skipped"].append(f"{stmt.where}: {stmt.text}")
                for name in sorted(stmt.binds)[:20]:
                    if len(report["skipped_defines"]) < MAX_REPORTED_NAMES:
                        report["skipped_defines"].setdefault(name, f"{stmt.where} (`{stmt.text}`)")
                continue
            limited = mode != "all" and not stmt.always  # a needed statement: it may be heavy
            seconds = min(STATEMENT_SECONDS, remaining) if limited else None
            if seconds is not None and seconds <= 0.05:
                error = f"not run: the {need_seconds:g} s that statements needed at load may take together had run out"
            else:
                started = time.monotonic()
                try:
                    error = self._exec_statement(stmt, seconds)
                except LoadTimeout:  # a repeat of the alarm in the instant before it was cleared
                    error = f"did not finish within {seconds:g} s, the limit for a statement run at load"
                if limited:
                    remaining -= time.monotonic() - started
            if error is None:
                continue
            report["errors"].append(f"{stmt.where}: {error}")
            if not stmt.always or stmt.reached_from:
                names = sorted(stmt.binds & plan.needed) if plan.needed else sorted(stmt.binds)
                if len(report["needed_failed"]) < MAX_REPORTED_NAMES:
                    report["needed_failed"].append({"names": names[:20], "where": stmt.where, "code": stmt.text,
                                                    "error": error, "targets": stmt.reached_from[:50]})

    def _exec_statement(self, stmt: Statement, seconds: float | None) -> str | None:
        """Run one statement (under a real-time limit when `seconds` is set); the error as a sentence, or None."""
        module = ast.Module(body=[stmt.node], type_ignores=[])
        try:
            code = compile(module, f"student:{stmt.unit}", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            return f"cannot be compiled ({_builtin_type(exc).__name__}: {exc})"
        previous = None
        try:
            if seconds is not None:
                previous = signal.signal(signal.SIGALRM, _statement_timeout)
                # Re-fires every half second: student code that catches the first
                # LoadTimeout (a bare except in a loop) is interrupted again.
                signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
            # Running student code is this process's purpose; it is the sandbox child.
            exec(code, self.globals)  # noqa: S102
            return None
        except LoadTimeout:
            return (f"did not finish within {seconds:g} s, the limit for a statement run at load "
                    f"(move heavy work such as training into a function or under if __name__ == \"__main__\":)")
        except SystemExit as exc:
            return f"the code calls exit ({exc.code!r}) while loading; remove it"
        except BaseException as exc:  # anything the student raises is feedback, not a crash
            return student_error(exc).summary
        finally:
            if seconds is not None:
                signal.setitimer(signal.ITIMER_REAL, 0, 0)
                signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)

    # operations ---------------------------------------------------------------------------

    def lookup(self, name: str) -> Any:
        if name not in self.globals:
            raise StudentError(f"NameError: '{name}' is not defined in the submission", None)
        return self.globals[name]

    def call(self, target: str, args: list[Any], kwargs: dict[str, Any] | None = None,
             grad_wrt: list[int] | None = None, grad_weights: list[Any] | None = None) -> dict[str, Any]:
        fn = self.lookup(target)
        call_args = [from_plain(a) for a in args]
        if grad_wrt:
            for i in grad_wrt:
                call_args[i] = _detach(call_args[i]).requires_grad_(True)
        started = time.perf_counter()
        try:
            out = fn(*call_args, **{k: from_plain(v) for k, v in (kwargs or {}).items()})
        except BaseException as exc:
            raise student_error(exc) from None
        reply: dict[str, Any] = {"value": to_plain(out), "seconds": time.perf_counter() - started}
        if grad_wrt:
            reply["grads"] = self._grads(out, [call_args[i] for i in grad_wrt], grad_weights or [])
        return reply

    def _grads(self, out: Any, inputs: list[Any], weights: list[Any]) -> list[Any] | str:
        """Gradient of sum(weight * output) w.r.t. the inputs: a random projection of the Jacobian."""
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        try:
            total = None
            for o, w in zip(outs, weights):
                if not isinstance(o, _Tensor) or not o.requires_grad:
                    continue
                term = (_as_subclass(o, _Tensor) * _from_numpy(_np_array(w, copy=True)).to(o.dtype)).sum()
                total = term if total is None else total + term
            if total is None:
                return "the returned tensor is not connected to the inputs (no gradient flows: was it detached, or computed with numpy?)"
            grads = torch.autograd.grad(total, inputs, allow_unused=True)
        except BaseException as exc:
            raise student_error(exc) from None
        return [None if g is None else to_plain(g) for g in grads]

    def instantiate(self, target: str, init: dict[str, Any]) -> Any:
        cls = self.lookup(target)
        try:
            return cls(**init)
        except BaseException as exc:
            raise student_error(exc) from None


# --- the operation registry ---------------------------------------------------------------
#
# An operation is a function (namespace, request) -> plain data. The built-in
# ones are below; further ones live in grader/child/operations/ (one module
# per area, e.g. training) and register themselves the same way when imported.

OPERATIONS: dict[str, Callable[[Namespace, dict[str, Any]], Any]] = {}


def operation(name: str) -> Callable[[Callable[[Namespace, dict[str, Any]], Any]], Callable[[Namespace, dict[str, Any]], Any]]:
    def register(fn: Callable[[Namespace, dict[str, Any]], Any]) -> Callable[[Namespace, dict[str, Any]], Any]:
        if name in OPERATIONS:
            raise ValueError(f"sandbox operation {name!r} registered twice")
        OPERATIONS[name] = fn
        return fn
    return register


operation("load")(lambda ns, r: ns.load(r.get("code_path"), r.get("answers_path"), r.get("mode", "definitions"),
                                        _names(r.get("targets")), _seconds(r.get("need_seconds"))))
operation("call")(lambda ns, r: ns.call(r["target"], r.get("args", []), r.get("kwargs"), r.get("grad_wrt"), r.get("grad_weights")))
operation("ping")(lambda ns, r: "pong")


def _names(value: Any) -> list[str] | None:
    """The load request's target names: a list of strings, or None (every definition's names are used)."""
    if not isinstance(value, list):
        return None
    return [v for v in value if _builtin_type(v) is str][:1000]


def _seconds(value: Any) -> float:
    if _builtin_type(value) in (int, float) and 0 < value < 3600:
        return float(value)
    return NEED_SECONDS


def load_operation_modules() -> None:
    """Import every module of grader.child.operations so their operations register."""
    import importlib
    import pkgutil

    from grader.child import operations

    for info in pkgutil.iter_modules(operations.__path__):
        importlib.import_module(f"grader.child.operations.{info.name}")


def dispatch(ns: Namespace, request: dict[str, Any]) -> Any:
    op = request.get("op")
    if op not in OPERATIONS:
        raise ValueError(f"unknown operation {op!r}")
    return OPERATIONS[op](ns, request)
