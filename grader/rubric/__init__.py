"""Rubrics: YAML files validated by a JSON Schema, then by meaning checks against the check registry and the reference."""
from grader.rubric.load import find_rubric, load_rubric, rubric_dirs
from grader.rubric.model import CheckSpec, KnownMistake, Question, Rubric, RubricItem

__all__ = ["CheckSpec", "KnownMistake", "Question", "Rubric", "RubricItem", "find_rubric", "load_rubric", "rubric_dirs"]
