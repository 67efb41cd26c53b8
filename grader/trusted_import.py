"""Importing the instructor's own files (reference solutions, a course's check kinds) from their paths.

Trusted code, run in the parent or the judge, never in the sandbox child. One
loader for all of them, because the details matter: the module is placed in
``sys.modules`` *before* it runs, as a normal import does (a ``@dataclass``
in a reference looks its module up there while the class is being made), and
a reference's module name carries a digest of its path, so two courses may
both have a reference called ``hw1`` in one long-lived process.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def reference_module_name(path: str | Path, name: str) -> str:
    digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:10]
    return f"grader_reference_{name}__{digest}"


def import_file(module_name: str, path: str | Path) -> ModuleType:
    """Import `path` as `module_name`, once per process; a failed import leaves nothing behind."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, Path(path))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def load_reference(path: str | Path, name: str) -> ModuleType:
    """The reference module `name` from its file."""
    return import_file(reference_module_name(path, name), path)
