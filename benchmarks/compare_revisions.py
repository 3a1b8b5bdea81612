"""One command timed on two git revisions, side by side: did a change slow it down?

Checks both revisions out as throw-away worktrees, then runs the command in each, alternating base and head for
``--rounds`` rounds (so machine load hits both alike), with the worktree first on ``PYTHONPATH`` and this
repository's virtual environment; prints every wall time, the median per revision and head / base. ``{workdir}`` in
the command becomes a fresh empty folder per run, so nothing is reused between runs.

    .venv/bin/python benchmarks/compare_revisions.py --base 86a1f1d^1 --head 86a1f1d --rounds 2 -- \\
        python -m vega3d.cli demo --max-steps 1000 --workdir {workdir}

(That example is issue 14's "nothing here may slow the tiny demo by more than 10%": its merge against its
first parent.) A run that fails stops the benchmark with its last output lines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_worktree(revision: str, folder: Path) -> Path:
    """A detached worktree of ``revision`` at ``folder`` (removed by ``remove_worktree``)."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(folder), revision], check=True)
    return folder


def remove_worktree(folder: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], check=False)


def timed_run(command: list[str], tree: Path, workdir: Path) -> float:
    """Wall seconds of ``command`` run in ``tree`` with ``{workdir}`` filled in; raises with the output's tail."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    argv = [part.replace("{workdir}", str(workdir)) for part in command]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise SystemExit(f"{argv} failed in {tree} (exit {done.returncode}):\n{tail}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--head", default="HEAD", help="git revision to measure (default HEAD)")
    parser.add_argument("--rounds", type=int, default=2, help="base/head pairs to run")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command ({workdir}: a fresh folder)")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to time after --")

    times: dict[str, list[float]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory(prefix="bench-revisions-") as scratch:
        trees = {name: add_worktree(rev, Path(scratch) / name) for name, rev in (("base", args.base), ("head", args.head))}
        try:
            for round_index in range(args.rounds):
                order = ("base", "head") if round_index % 2 == 0 else ("head", "base")
                for name in order:
                    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-{round_index}-", dir=scratch))
                    seconds = timed_run(command, trees[name], workdir)
                    times[name].append(seconds)
                    print(f"round {round_index + 1} {name:4s} {seconds:8.1f} s", flush=True)
        finally:
            for tree in trees.values():
                remove_worktree(tree)
    base, head = statistics.median(times["base"]), statistics.median(times["head"])
    print(f"base {args.base}: median {base:.1f} s; head {args.head}: median {head:.1f} s; "
          f"head / base = {head / base:.3f} ({(head / base - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
