"""METEOR through pycocoevalcap's own jar, under a deadline.

pycocoevalcap's ``Meteor`` talks to its Java process while holding a lock and never releases it when the
process dies mid-call (a huge answer is enough to kill it); its ``__del__`` then waits on that lock forever,
so an evaluation hangs silently. This module speaks the same stdio protocol to the same jar (``SCORE`` lines,
then one ``EVAL`` line: identical scores) but does the exchange in a worker thread joined with a timeout: a
dead, stuck or missing JVM becomes a :class:`MeteorError` naming the cause, and the process is always killed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence

DEFAULT_TIMEOUT_S = 600.0


class MeteorError(RuntimeError):
    """METEOR's Java process failed, died or ran past its deadline."""


def _jar_dir() -> str:
    import pycocoevalcap.meteor.meteor as module

    return os.path.dirname(os.path.abspath(module.__file__))


def _command(java: str) -> list[str]:
    from pycocoevalcap.meteor.meteor import METEOR_JAR

    return [java, "-jar", "-Xmx2G", METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"]


def _exchange(process: subprocess.Popen, gts: Mapping[str, Sequence[str]], res: Mapping[str, Sequence[str]],
              out: dict) -> None:
    """The pycocoevalcap protocol: one SCORE line per item (read its stats), then EVAL with all stats."""
    try:
        stats = []
        for key in gts:
            hypothesis = res[key][0].replace("|||", "").replace("  ", " ")
            line = " ||| ".join(("SCORE", " ||| ".join(gts[key]), hypothesis))
            process.stdin.write(f"{line}\n".encode())
            process.stdin.flush()
            stats.append(process.stdout.readline().decode().strip())
        process.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        process.stdin.flush()
        out["items"] = [float(process.stdout.readline().strip()) for _ in gts]
        out["score"] = float(process.stdout.readline().strip())
    except (OSError, ValueError) as error:  # broken pipe, or an empty line from a dead process
        out["error"] = error


def meteor_score(gts: Mapping[str, Sequence[str]], res: Mapping[str, Sequence[str]],
                 timeout_s: float = DEFAULT_TIMEOUT_S, java: str = "java") -> tuple[float, list[float]]:
    """Corpus METEOR and per-item scores (fractions), like ``Meteor().compute_score(gts, res)``.

    Raises MeteorError when Java is missing, its process dies, or the whole call exceeds ``timeout_s``.
    """
    if list(gts) != list(res):
        raise ValueError("METEOR needs the same ids, in the same order, for references and candidates")
    if shutil.which(java) is None:
        raise MeteorError(f"METEOR needs Java: `{java}` is not on PATH (install a JRE, or pass --no-meteor)")
    process = subprocess.Popen(_command(java), cwd=_jar_dir(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    out: dict = {}
    worker = threading.Thread(target=_exchange, args=(process, gts, res, out), daemon=True, name="meteor")
    worker.start()
    worker.join(timeout_s)
    finished = not worker.is_alive()
    process.kill()
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        stderr = b""
    worker.join(10)
    tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
    if not finished:
        raise MeteorError(f"METEOR (Java) gave no result within {timeout_s:g} s for {len(gts)} items; it was "
                          "stopped. Check the JVM's memory, or evaluate with --no-meteor")
    if "error" in out:
        raise MeteorError(f"METEOR's Java process failed (exit {process.returncode}) after {type(out['error']).__name__}"
                          f": {out['error']}; its stderr: {' | '.join(tail) or '(empty)'}")
    return out["score"], out["items"]
