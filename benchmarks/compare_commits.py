"""SmolLM2 training iterations of several commits, timed in turn in one run.

    .venv/bin/python benchmarks/compare_commits.py --revs 40865ad HEAD \
        --tasks tomato_salad lettuce_tomato_salad --rounds 3

For each task, one ``iteration_worker.py`` process per commit (its code checked out with
``git worktree`` under ``--worktrees``; the working tree itself for ``WORKTREE``) builds the
default trainer, 4 envs x 32 steps, and compiles its iteration. The workers then time one
iteration each in turn, ``--rounds`` times, so that the machine's load falls on every commit
alike; a waiting worker sleeps on its stdin. The table gives each commit's best and median
seconds per iteration, its ratio to the first commit's, and the peak resident memory during an
iteration. Every commit computes the same update from the same state: the table's policy
steps and losses show it. Results go to ``benchmarks/results/compare_DATE_COMMIT.json``
(``report.provenance``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from report import REPO, provenance  # noqa: E402

WORKER = Path(__file__).resolve().parent / "iteration_worker.py"


def checkout(rev: str, root: Path) -> tuple[str, Path]:
    """(short commit, directory holding its code); ``WORKTREE`` is the working tree."""
    if rev == "WORKTREE":
        return "worktree", REPO
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True)
    if sha.returncode:
        raise SystemExit(f"error: unknown revision {rev!r}")
    sha = sha.stdout.strip()
    path = root / sha
    if not (path / "twosome_jax").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), sha], cwd=REPO,
                       check=True, capture_output=True)
    return sha, path


class Worker:
    def __init__(self, code: Path, task: str, model: str):
        env = dict(os.environ, PYTHONPATH=str(code))
        self.proc = subprocess.Popen([sys.executable, str(WORKER), "--task", task, "--model", model],
                                     cwd=code, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"error: the worker stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def time(self) -> dict:
        self.proc.stdin.write("time\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--revs", nargs="+", default=["40865ad", "WORKTREE"])
    ap.add_argument("--tasks", nargs="+", default=["tomato_salad", "lettuce_tomato_salad"])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worktrees", type=Path, default=Path("/tmp/twosome-worktrees"))
    ap.add_argument("--json", type=Path, default=None, help="result file (default benchmarks/results/compare_DATE_COMMIT.json)")
    args = ap.parse_args()
    if args.rounds < 1:
        raise SystemExit(f"error: --rounds must be at least 1, got {args.rounds}")
    codes = [checkout(rev, args.worktrees) for rev in args.revs]
    out = {"revs": [c for c, _ in codes], "model": args.model, "rounds": args.rounds, "tasks": {}, **provenance()}
    rows = []
    for task in args.tasks:
        workers = []
        for name, code in codes:  # one at a time: each builds and compiles on the whole machine
            t = time.perf_counter()
            workers.append(Worker(code, task, args.model))
            workers[-1].ready["setup_s"] = round(time.perf_counter() - t, 1)
            print(f"{task} {name}: ready {workers[-1].ready}", file=sys.stderr, flush=True)
        timings = [[] for _ in workers]
        for r in range(args.rounds):
            order = range(len(workers)) if r % 2 == 0 else reversed(range(len(workers)))
            for i in order:
                timings[i].append(workers[i].time())
                print(f"{task} {codes[i][0]} round {r + 1}: {timings[i][-1]}", file=sys.stderr, flush=True)
        for w in workers:
            w.close()
        base = min(t["seconds"] for t in timings[0])
        out["tasks"][task] = {}
        for (name, _), w, ts in zip(codes, workers, timings):
            best = min(t["seconds"] for t in ts)
            out["tasks"][task][name] = {"ready": w.ready, "rounds": ts}
            rows.append((task, name, best, statistics.median(t["seconds"] for t in ts), base / best,
                         max(t["peak_rss_mb"] or 0 for t in ts), ts[0]["policy_steps"], ts[0]["pg_loss"],
                         ts[0]["value_loss"]))
    path = args.json or REPO / "benchmarks" / "results" / f"compare_{out['date_utc'][:10]}_{out['commit'][:7]}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"| task | commit | best s / iteration | median | speed-up vs {codes[0][0]} | peak RSS in an iteration (MiB) "
          "| policy steps | pg loss | value loss |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for task, name, best, med, ratio, rss, steps, pg, vl in rows:
        print(f"| {task} | {name} | {best:.1f} | {med:.1f} | {ratio:.2f}x | {rss:,.0f} | {steps:.0f} | {pg:.4g} | {vl:.4g} |")
    print(f"written {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
