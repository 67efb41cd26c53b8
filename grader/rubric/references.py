"""Names a rubric uses to point into the reference module: ``name`` or ``TABLE[key]``.

``reference: batchnorm_forward`` names a function; ``reference: ANSWERS_NUM[q2.dL_dw3]``
names one entry of a dict the reference computes (the key is written without
quotes, as the answer keys are). Resolving is the same for the meaning checks
when a rubric loads and for the checks when they run, so a name that loads
is a name that works.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Mapping

_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<key>[^\[\]]+)\])?$")


@dataclass
class ReferenceNameError(Exception):
    """A rubric names something the reference module does not have; worded for instructors."""

    problem: str
    suggestion: str | None = None

    def __str__(self) -> str:
        return self.problem + (f" (did you mean {self.suggestion!r}?)" if self.suggestion else "")


def _close(name: str, options: Any) -> str | None:
    close = difflib.get_close_matches(name, [str(o) for o in options], n=1, cutoff=0.6)
    return close[0] if close else None


def resolve_reference(module: ModuleType, text: str) -> Any:
    """The object ``text`` names in ``module``; raises ReferenceNameError saying what is missing."""
    match = _NAME.match(text.strip())
    if match is None:
        raise ReferenceNameError(f"{text!r} is not a reference name (write NAME or NAME[key], e.g. ANSWERS_NUM[q2.dL_dw3])")
    name, key = match["name"], match["key"]
    if not hasattr(module, name):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise ReferenceNameError(f"reference module {module.__name__.removeprefix('grader_reference_').split('__')[0]} has no {name!r}",
                                 _close(name, public))
    value = getattr(module, name)
    if key is None:
        return value
    key = key.strip()
    if not isinstance(value, Mapping):
        raise ReferenceNameError(f"{name} is a {type(value).__name__}, not a table: {name}[{key}] cannot be looked up")
    if key not in value:
        raise ReferenceNameError(f"{name} has no key {key!r}", _close(key, value.keys()))
    return value[key]
