"""Which files of a submission folder the rubric accepts, and which one is used."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SubmissionFiles:
    code: Path | None
    answers: Path | None
    present: tuple[str, ...]  # every file name in the folder (top level), for messages


def find_files(folder: Path, code_names: list[str], answer_names: list[str]) -> SubmissionFiles:
    """Pick the first accepted code file and answers file, by the rubric's order of preference.

    Students upload from many systems: a case-insensitive match is accepted
    (``HW4.py``), and a single file one folder down (``hw4/hw4.py``, from a
    zipped folder) is found too.
    """
    present = tuple(sorted(p.name for p in folder.iterdir())) if folder.is_dir() else ()

    def pick(names: list[str]) -> Path | None:
        for name in names:
            exact = folder / name
            if exact.is_file():
                return exact
            for p in sorted(folder.iterdir()) if folder.is_dir() else []:
                if p.is_file() and p.name.lower() == name.lower():
                    return p
            nested = sorted(folder.glob(f"*/{name}"))
            if len(nested) == 1 and nested[0].is_file():
                return nested[0]
        return None

    return SubmissionFiles(code=pick(code_names), answers=pick(answer_names), present=present)
