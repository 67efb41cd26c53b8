"""Gradescope packaging and the in-container entry point.

`build` writes the autograder zip (`layout` says what goes in it, `budget`
whether the rubric fits the container); `run` is what ``run_autograder``
calls for each submission; `files/` holds setup.sh, run_autograder and the
CPU torch pins, shipped as they are (also by the repository's Dockerfile).
"""
