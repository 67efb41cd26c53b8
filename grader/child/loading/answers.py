"""Student answers as data: answers.yaml, or a notebook cell ``ANSWERS = {...}``.

Nothing here runs student code: YAML is read with ``safe_load`` and the
notebook dict with ``ast.literal_eval``. Nested mappings are flattened to
dotted keys (``q4: {c1: 156}`` becomes ``q4.c1``), the ids the rubric uses.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

MAX_ANSWERS_BYTES = 1 << 20
Scalar = str | int | float | bool | None


class AnswersError(ValueError):
    """The answers file cannot be read; the message says why and where."""


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.update(flatten(value, name))
            else:
                out[name] = _plain(value, name)
    return out


def _plain(value: Any, name: str) -> Any:
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, name) for v in value]
    # YAML may produce dates and the like: keep their text so the check can still explain.
    return str(value)


def read_answers_yaml(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    if len(raw) > MAX_ANSWERS_BYTES:
        raise AnswersError(f"{path.name} is {len(raw)} bytes; answers files are limited to {MAX_ANSWERS_BYTES} bytes")
    try:
        data = yaml.safe_load(raw.decode("utf-8", errors="replace"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AnswersError(f"{path.name} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AnswersError(f"{path.name} must be a mapping of question ids to answers (e.g. 'q2: 0.013'), not a {type(data).__name__}")
    return flatten(data)


def answers_from_cells(sources: list[str]) -> dict[str, Any] | None:
    """The last ``ANSWERS = {...}`` literal found in notebook cells, or None."""
    found = None
    for source in sources:
        if "ANSWERS" not in source or len(source) > MAX_ANSWERS_BYTES:
            continue
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ANSWERS" for t in stmt.targets):
                try:
                    value = ast.literal_eval(stmt.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    raise AnswersError(f"line {stmt.lineno}: ANSWERS must be a plain dict of literals (strings and numbers)") from None
                if isinstance(value, dict):
                    found = flatten(value)
    return found
