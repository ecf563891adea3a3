"""Produce docs/RESULTS.md: TWOSOME with SmolLM2-135M next to the paper's baselines.

    .venv/bin/python scripts/results.py --task tomato_salad --total-timesteps 20480 \\
        --set policy_learning_rate=1e-4 --set value_learning_rate=5e-4

trains (or, where a run directory already exists, resumes) three runs under runs/results/TASK/: ``twosome``
(SmolLM2 + LoRA), ``ppo-mlp`` (PPO on the vector observation) and ``saycan`` (the untrained
LLM), each with greedy and sampled evaluation every ``--eval-every`` iterations. Then it
writes a comparison plot and a section of docs/RESULTS.md from the runs' metrics.jsonl: the
env steps at which greedy success first reaches the threshold, the last evaluation, and the
wall time. Every number in that section comes from those files. A hand-written
``docs/results/TASK.notes.md``, where there is one, follows the task's section (what the runs'
budget was and why; the numbers it quotes name the command that printed them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = """# Results

Every table and figure below is written by `scripts/results.py` from the runs' `metrics.jsonl`
(one section per task; the command that started each run is quoted in it, and a run resumes
under the same command). TWOSOME runs use SmolLM2-135M-Instruct with the reference's settings
except the learning rates and critic warm-up of `configs/smollm2.yaml` (LLaMA-7B's 5e-7 does
not move SmolLM2's adapters measurably; that file lists the evidence). The baselines: `ppo-mlp`
is PPO on the vector observation with TWOSOME's update settings and budget, `ppo-ref` the
reference's PPO baseline as its own script runs it (`configs/TASK_ppo.yaml`: CleanRL's update,
128-step rollouts, the script's budget; in Overcooked the whole map in view and a subtask
reward of 0.1), and `saycan` the untrained LLM's scores. Where a `ppo-ref` run exists the plot's
env-step axis is logarithmic and the TWOSOME run's budget is marked.

Greedy success is exact from one episode: the environment and the greedy policy are
deterministic, so every greedy episode is the same episode. Sampled success is over
`eval_episodes` (100) episodes. Both are measured every `eval_every` iterations (each section
lists it per run: 5 iterations = 640 env steps where an evaluation is cheap). A greedy
policy fails by looping: some macro action that does nothing where the agent stands keeps the
highest probability; `python -m twosome_jax.evaluate RUN_DIR --trace` shows where.
"""
AGENTS = ("twosome", "ppo-mlp", "ppo-ref", "saycan")
COMMAND_FILE = "results_command.txt"  # the results.py invocation that started a run


def train(task: str, agent: str, run_dir: Path, args) -> None:
    if (run_dir / "config.yaml").exists():
        cmd = ["--resume", str(run_dir)]
    elif agent == "ppo-ref":
        reference = REPO / "configs" / f"{task}_ppo.yaml"
        if not reference.exists():
            print(f"no {reference.relative_to(REPO)}: no ppo-ref run for {task}", file=sys.stderr)
            return
        cmd = ["--config", str(REPO / "configs" / f"{task}.yaml"), "--config", str(reference), "--run-dir",
               str(run_dir), "--set", f"eval_every={args.eval_every}", "--set", f"eval_episodes={args.eval_episodes}",
               "--set", "checkpoint_every=10"]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / COMMAND_FILE).write_text(" ".join(["scripts/results.py", *sys.argv[1:]]) + "\n")
    else:
        cmd = ["--config", str(REPO / "configs" / f"{task}.yaml"), "--agent", agent, "--run-dir", str(run_dir),
               "--total-timesteps", str(args.total_timesteps), "--set", f"eval_every={args.eval_every}",
               "--set", f"eval_episodes={args.eval_episodes}", "--set", "checkpoint_every=2"]
        if agent not in ("ppo-mlp", "ppo-ref"):
            cmd += [x for kv in args.set for x in ("--set", kv)]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / COMMAND_FILE).write_text(" ".join(["scripts/results.py", *sys.argv[1:]]) + "\n")
    code = subprocess.run([sys.executable, "-m", "twosome_jax.train", "--no-progress", *cmd], cwd=REPO).returncode
    if code != 0:  # the train command printed its own error; a signal is named here
        why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        sys.exit(f"results: the {agent} run of {task} stopped ({why}); rerun the same command to resume it")


def summarize(run_dir: Path, threshold: float) -> dict:
    from twosome_jax.metrics import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")  # a half-written last line (a running run) is left out
    evals = [r for r in records if r.get("eval_success_greedy") is not None]
    first = next((r["env_steps"] for r in evals if r["eval_success_greedy"] >= threshold), None)
    last = evals[-1] if evals else {}
    # time in iterations (their steps / their steps_per_second): evaluations, compiles of a
    # resumed run and the gap after a kill are not counted
    seconds = sum((b["env_steps"] - a["env_steps"]) / b["steps_per_second"]
                  for a, b in zip([{"env_steps": 0}] + records, records))
    recent = evals[-10:]
    misses = [i for i, r in enumerate(evals) if r["eval_success_greedy"] < threshold]
    stable = None if not evals or (misses and misses[-1] == len(evals) - 1) else \
        evals[misses[-1] + 1 if misses else 0]["env_steps"]
    return {"iterations": records[-1]["iteration"], "env_steps": records[-1]["env_steps"],
            "train_minutes": seconds / 60, "steps_per_second": records[-1]["env_steps"] / seconds,
            "first_greedy": first, "stable_greedy": stable, "last_greedy": last.get("eval_success_greedy"),
            "last_sampled": last.get("eval_success_sampled"),
            "recent_greedy": f"{sum(r['eval_success_greedy'] >= threshold for r in recent)}/{len(recent)}"}


def _section_order(path: Path):
    """Tomato salad first, the other tasks, then the studies built on trained runs, then Crafter
    (RLAdapter's system)."""
    kind = 0 if path.stem == "tomato_salad" else 2 if path.stem.startswith("generalization_") else \
        3 if path.stem.startswith("nlp_") else 4 if path.stem.startswith("crafter") else 1
    return kind, path.name


def assemble() -> None:
    """docs/RESULTS.md from the sections in docs/results/ (each followed by its notes file)."""
    sections = []
    for path in sorted((REPO / "docs" / "results").glob("*.md"), key=_section_order):
        if not path.name.endswith(".notes.md"):
            notes = path.with_suffix(".notes.md")
            sections.append(path.read_text() + ("\n" + notes.read_text() if notes.exists() else ""))
    (REPO / "docs" / "RESULTS.md").write_text(HEADER + "\n" + "\n".join(sections))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="tomato_salad")
    parser.add_argument("--total-timesteps", type=int, default=20480)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides for the LLM agents (twosome, saycan)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from existing runs")
    parser.add_argument("--no-report", action="store_true",
                        help="only train or resume the runs; leave the report as it is (for a task whose other "
                             "runs are not on this machine yet)")
    args = parser.parse_args(argv)

    root = REPO / "runs" / "results" / args.task
    if not args.report_only:
        for agent in args.agents:
            train(args.task, agent, root / agent, args)
    if args.no_report:
        return 0
    runs = {a: root / a for a in AGENTS if (root / a / "metrics.jsonl").exists()}
    from twosome_jax.plotting import plot_learning_curve
    from twosome_jax.run import load_run_config

    figure = REPO / "docs" / "results" / f"{args.task}.png"
    main_run = runs.get("twosome") or next(iter(runs.values()))
    marks = ({"TWOSOME budget": load_run_config(runs["twosome"]).total_timesteps}
             if "twosome" in runs and "ppo-ref" in runs else None)
    plot_learning_curve(main_run / "metrics.jsonl", figure,
                        baselines={a: r / "metrics.jsonl" for a, r in runs.items() if r != main_run},
                        title=f"{args.task}: TWOSOME (SmolLM2-135M) vs baselines", smooth=5,
                        marks=marks, log_x=marks is not None)
    lines = [f"## {args.task}", "", "Produced by (each run resumes under the same command):", ""]
    for agent, run in runs.items():
        command = (run / COMMAND_FILE).read_text().strip() if (run / COMMAND_FILE).exists() else "(unknown)"
        every = load_run_config(run).eval_every
        lines.append(f"- {agent}: `.venv/bin/python {command}` (evaluated every {every} iterations)")
    lines += ["",
             f"![learning curves](results/{args.task}.png)", "",
             f"| agent | iterations | env steps | training time (min) | env steps/s | first env step with greedy "
             f"success >= {args.threshold} | greedy >= {args.threshold} at every evaluation from | "
             f"greedy >= {args.threshold} in the last 10 evaluations | "
             f"last greedy success | last sampled success |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for agent, run in runs.items():
        s = summarize(run, args.threshold)
        fmt = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
        lines.append(f"| {agent} | {s['iterations']} | {s['env_steps']} | {s['train_minutes']:.1f} | "
                     f"{s['steps_per_second']:.2f} | {fmt(s['first_greedy']) if s['first_greedy'] is not None else 'not reached'} | "
                     f"{fmt(s['stable_greedy']) if s['stable_greedy'] is not None else 'not reached'} | {s['recent_greedy']} | {fmt(s['last_greedy'])} | {fmt(s['last_sampled'])} |")
    section = "\n".join(lines) + "\n"
    (REPO / "docs" / "results" / f"{args.task}.md").write_text(section)
    assemble()
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
