"""The unseen-task table (the paper's Figure 6): a trained run's adapters on tasks it never saw.

    .venv/bin/python scripts/generalization.py runs/results/food_preparation/twosome \\
        --tasks cheese hamburger apple_pie pizza washing_plate laundry entertainment

For each task: greedy and sampled success (over ``--episodes``) zero-shot (the run's model with
its adapters zeroed: the untrained policy) and with the trained adapters, each from
``twosome_jax.evaluate.evaluate_run``, the function behind ``python -m twosome_jax.evaluate
RUN_DIR --task TASK --episodes 100 --json [--zero-shot]``. Writes
``docs/results/generalization_<run task>.md``, which ``scripts/results.py`` includes in
docs/RESULTS.md after the task sections, and prints it.

Each evaluation is kept, as it finishes, in ``RUN_DIR/generalization/`` (one JSON file per task,
adapters and episode count), and the table is rewritten after each one, so a killed run keeps its
rows: run the same command again and it evaluates only what is missing. A kept result counts only
while it is of the run's latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--tasks", nargs="+", required=True, help="tasks to evaluate the run's adapters on")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args(argv)

    from envs_jax.registry import UnknownEnvironment, task_name
    from twosome_jax.atomic import write_atomic
    from twosome_jax.evaluate import evaluate_run
    from twosome_jax.run import RunError, load_run_config

    try:
        tasks = [task_name(t) for t in args.tasks]
        cfg = load_run_config(args.run_dir)
    except (UnknownEnvironment, RunError) as e:
        parser.error(str(e))
    latest = max((int(p.name) for p in (args.run_dir / "checkpoints").iterdir() if p.name.isdigit()), default=None)
    rows = []
    for task in tasks:
        cells = {}
        for zero_shot in (True, False):
            kept = args.run_dir / "generalization" / f"{task}-{'zero-shot' if zero_shot else 'trained'}-{args.episodes}.json"
            r = _kept(kept)
            if r is None or r.get("checkpoint") != latest:
                r = evaluate_run(args.run_dir, episodes=args.episodes, task=task, zero_shot=zero_shot)
                write_atomic(kept, lambda tmp: Path(tmp).write_text(json.dumps(r, indent=1) + "\n"))
            cells[zero_shot] = r
        rows.append((task, cells))
        write_table(args, cfg, tasks, rows)
    print(write_table(args, cfg, tasks, rows))
    return 0


def _kept(path: Path) -> dict | None:
    """A kept evaluation, or None where there is none (or it cannot be read: it is redone)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_table(args, cfg, tasks: list[str], rows: list) -> str:
    """The table of the rows evaluated so far, written to docs/results/generalization_<task>.md."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    checkpoint = rows[0][1][False]["checkpoint"]
    lines = [f"## Generalisation of the {cfg.task} adapters", "",
             f"`.venv/bin/python scripts/generalization.py {args.run_dir} --tasks {' '.join(tasks)} "
             f"--episodes {args.episodes}` ({date.today().isoformat()}, commit {commit}; checkpoint "
             f"{checkpoint} of the run, trained on {cfg.task} only). Sampled success over {args.episodes} "
             "episodes; greedy success of the greedy episode (the environments are deterministic). "
             "Zero-shot is the same model with its adapters zeroed.", "",
             "| task | zero-shot greedy | zero-shot sampled | trained greedy | trained sampled |",
             "| --- | --- | --- | --- | --- |"]
    for task, cells in rows:
        z, t = cells[True], cells[False]
        lines.append(f"| {task} | {z['success_rate_greedy']:.2f} | {z['success_rate_sampled']:.2f} | "
                     f"{t['success_rate_greedy']:.2f} | {t['success_rate_sampled']:.2f} |")
    missing = tasks[len(rows):]
    if missing:
        lines += ["", f"Not yet evaluated: {', '.join(missing)}."]
    text = "\n".join(lines) + "\n"
    (REPO / "docs" / "results" / f"generalization_{cfg.task}.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
