"""The program that runs inside the sandbox: set limits, load the submission once, answer requests.

Started by `grader.sandbox.client.Sandbox` as
``python -I -c BOOTSTRAP <request fd> <reply fd> <limits json>``. It applies
its own resource limits before anything else runs, imports torch before any
student code (so ops can keep untouched references), then serves requests
one at a time until the parent closes the pipe. Student prints go to stdout
and stderr, which the parent points at a size-limited file, never at the pipe.

No student code runs before the first request (the load): the parent relies
on that to move this process into its cgroup from outside (at the
unprivileged-uid level it has dropped root and cannot join by itself) and to
check that it is there before sending it. Nothing here may fork before then.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import sys
from typing import Any

from grader.rlimits import cap


def apply_limits(limits: dict[str, Any]) -> None:
    # A limit the platform refuses is reported by the parent as not applied.
    mb = 1 << 20
    if limits.get("memory_mb"):
        # RLIMIT_DATA counts heap and anonymous mappings, not the shared libraries
        # torch maps (RLIMIT_AS would refuse torch's import at any sane value).
        cap(resource.RLIMIT_DATA, int(limits["memory_mb"]) * mb)
    if limits.get("max_file_mb"):
        cap(resource.RLIMIT_FSIZE, int(limits["max_file_mb"]) * mb)
    if limits.get("cpu_s"):
        cap(resource.RLIMIT_CPU, int(limits["cpu_s"]))
    if limits.get("max_processes"):
        cap(resource.RLIMIT_NPROC, int(limits["max_processes"]))
    cap(resource.RLIMIT_CORE, 0)
    # An output flood past the file-size limit should fail the write, not kill the child.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    request_fd, reply_fd = int(argv[0]), int(argv[1])
    limits = json.loads(argv[2]) if len(argv) > 2 else {}
    apply_limits(limits)
    threads = limits.get("threads")
    import torch  # noqa: F401  (imported before student code: see ops)

    if threads:
        torch.set_num_threads(int(threads))
    from grader import protocol
    from grader.child import ops

    ops.load_operation_modules()  # before student code, like every import the child makes
    if limits.get("warm_export"):
        from grader.child.operations import export

        export.warm_up()  # grader code only, before the hello: the first real export is then cheap
    if limits.get("max_reply_mb"):
        ops.MAX_REPLY_BYTES = int(limits["max_reply_mb"]) << 20

    read_message, write_message = protocol.read_message, protocol.write_message
    ns = ops.Namespace()
    write_message(reply_fd, {"ok": True, "value": {"pid": os.getpid(), "uid": os.getuid()}})
    while True:
        try:
            request = read_message(request_fd)
        except protocol.PeerClosed:
            return
        try:
            reply = {"ok": True, "value": ops.dispatch(ns, request)}
        except ops.StudentError as exc:
            reply = {"ok": False, "kind": "student", "message": exc.summary, "where": exc.where}
        except ops.NotPlainData as exc:
            reply = {"ok": False, "kind": "not_plain", "message": str(exc)}
        except SystemExit as exc:
            reply = {"ok": False, "kind": "student", "message": f"the code called exit ({exc.code!r})", "where": None}
        except BaseException as exc:  # a grader-side fault inside the child: report, keep serving
            reply = {"ok": False, "kind": "internal", "message": f"{type(exc).__name__}: {exc}"}
        try:
            write_message(reply_fd, reply)
        except Exception as exc:  # e.g. the student's value could not be encoded
            write_message(reply_fd, {"ok": False, "kind": "not_plain", "message": f"the result could not be sent: {exc}"})


if __name__ == "__main__":
    main()
