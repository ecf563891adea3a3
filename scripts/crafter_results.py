"""The Crafter section of docs/RESULTS.md: arms of the guided PPO trainer, scored as Crafter does.

    .venv/bin/python scripts/crafter_results.py ppo=runs/crafter/ppo random_subgoals=runs/crafter/random

Each ``LABEL=RUN_DIR`` is one arm: a run of ``python -m twosome_jax.train --config
configs/crafter_*.yaml`` (all its seeds in one run directory, ``--num-seeds``). From the runs'
files only (``episodes.jsonl``, ``metrics.jsonl``, ``config.yaml``) it writes
``docs/results/crafter.md`` and ``docs/results/crafter.png`` (Crafter score and episode return
against env steps) and rebuilds docs/RESULTS.md (``scripts/results.py``'s assembly, with
``docs/results/crafter.notes.md`` after the section). The figures:

* the Crafter score of each seed (``envs_jax.crafter.score``: success rates over all training
  episodes that ended within the budget, shifted geometric mean), as mean ± std over seeds;
* each achievement's success rate, mean ± std over seeds;
* the mean episode return over the same episodes, and over those that ended in the last tenth
  of the budget;
* wall-clock minutes per 1M env steps of every seed, from ``metrics.jsonl``'s ``wall_time``
  (the first iteration, which compiles, excluded).

A run that has not reached its budget is reported at the env steps it has, and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from envs_jax.crafter import score  # noqa: E402
from envs_jax.crafter.constants import ACHIEVEMENTS  # noqa: E402
from results import assemble  # noqa: E402
from twosome_jax.metrics import read_metrics  # noqa: E402
from twosome_jax.plotting import plot_learning_curve  # noqa: E402

PUBLISHED = "PPO 4.6 ± 0.3 %, random 1.6 ± 0.0 % (Hafner 2021, Crafter's scoreboard: 1M steps, 64x64 pixels)"


def summarize_arm(run_dir: Path) -> dict:
    """Everything the section says about one arm, from its files."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    records = read_metrics(run_dir / "metrics.jsonl")
    if not records:
        raise SystemExit(f"error: {str(run_dir)!r} has no metrics yet")
    budget = int(cfg["total_timesteps"])
    reached = min(records[-1]["env_steps"], budget)
    episodes = score.read_episodes(run_dir / score.EPISODES_FILE)
    tables = score.episode_table(episodes, budget=reached)
    seeds = sorted(tables)
    rates = np.array([score.success_rates(tables[k]) for k in seeds])  # [K, 22]
    scores = [float(score.crafter_score(r)) for r in rates]
    late = 0.9 * reached
    returns = [float(np.mean([e["return"] for e in episodes if e["seed"] == k and e["env_step"] <= reached]))
               for k in seeds]
    late_returns = [float(np.mean([e["return"] for e in episodes
                                   if e["seed"] == k and late < e["env_step"] <= reached] or [np.nan]))
                    for k in seeds]
    timed = records[1:] if len(records) > 1 else records
    span_s = timed[-1]["wall_time"] - records[0]["wall_time"] if len(records) > 1 else float("nan")
    span_steps = timed[-1]["env_steps"] - records[0]["env_steps"] if len(records) > 1 else 0
    return {"instruction": cfg["instruction"], "seeds": len(seeds), "seed": cfg["seed"], "budget": budget,
            "env_steps": reached, "episodes": [len(tables[k]) for k in seeds],
            "score": score.mean_std(scores), "scores": scores, "rates_mean": np.nanmean(rates, axis=0),
            "rates_std": np.nanstd(rates, axis=0), "return": (np.mean(returns), np.std(returns)),
            "late_return": (np.nanmean(late_returns), np.nanstd(late_returns)),
            "minutes_per_1M": span_s / span_steps * 1e6 / 60 if span_steps else float("nan"),
            "num_envs": cfg["num_envs"], "num_steps": cfg["num_steps"]}


def section(arms: dict[str, tuple[Path, dict]]) -> str:
    pm = lambda m, s, f=".2f": f"{m:{f}} ± {s:{f}}"
    lines = ["## Crafter (RLAdapter's PPO agent, no adapter yet)", "",
             "The guided PPO trainer (`twosome_jax/guided_trainer.py`) on Craftax-Classic with symbolic "
             "observations, RLAdapter's PPO settings (`configs/crafter_ppo.yaml`, sources in the file). "
             "Arm `ppo` has no instruction input; arm `random_subgoals` gets three of RLAdapter's 31 sub-goals, "
             "drawn uniformly every 100 steps per env, as an all-MiniLM-L6-v2 sentence embedding added to the "
             "first hidden layer (`configs/crafter_random_subgoals.yaml`): the control for the extra input. "
             "Written by `scripts/crafter_results.py` from the runs' files; the score is recomputed by "
             "`python -m envs_jax.crafter.score RUN_DIR`.", "",
             "| arm | command | seeds | env steps per seed | episodes per seed | Crafter score (%) | per seed | "
             "episode return | return, last 10 % of steps | wall-clock min per 1M steps (all seeds at once) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, (run_dir, s) in arms.items():
        config = "configs/crafter_ppo.yaml" if s["instruction"] == "none" else "configs/crafter_random_subgoals.yaml"
        command = (f"`python -m twosome_jax.train --config {config} --num-seeds {s['seeds']} --seed {s['seed']} "
                   f"--run-dir {run_dir}`")
        steps = f"{s['env_steps']:,}" + ("" if s["env_steps"] >= s["budget"] else f" (of {s['budget']:,}: in progress)")
        lines.append(f"| {label} | {command} | {s['seeds']} | {steps} | {', '.join(map(str, s['episodes']))} | "
                     f"{pm(*s['score'])} | {', '.join(f'{v:.2f}' for v in s['scores'])} | {pm(*s['return'])} | "
                     f"{pm(*s['late_return'])} | {s['minutes_per_1M']:.1f} |")
    lines += ["", f"Published, not comparable: {PUBLISHED}. See the notes below.", "",
              "![Crafter learning curves](results/crafter.png)", "",
              "Success rate of each achievement (%, mean ± std over seeds, all training episodes within the "
              "steps above):", "",
              "| achievement | " + " | ".join(arms) + " |", "| --- |" + " --- |" * len(arms)]
    for i, name in enumerate(ACHIEVEMENTS):
        lines.append(f"| {name} | " + " | ".join(pm(s["rates_mean"][i], s["rates_std"][i], ".1f")
                                                 for _, s in arms.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arms", nargs="+", metavar="LABEL=RUN_DIR")
    args = parser.parse_args(argv)
    arms = {}
    for item in args.arms:
        label, sep, path = item.partition("=")
        run_dir = Path(path)
        if not sep or not (run_dir / "config.yaml").is_file():
            print(f"error: {item!r} is not LABEL=RUN_DIR with a run directory", file=sys.stderr)
            return 2
        arms[label] = (run_dir, summarize_arm(run_dir))
    text = section(arms)
    out = REPO / "docs" / "results"
    (out / "crafter.md").write_text(text)
    (first, _), *rest = arms.values()
    labels = list(arms)
    plot_learning_curve(first / "metrics.jsonl", out / "crafter.png", label=labels[0],
                        baselines={labels[i + 1]: d / "metrics.jsonl" for i, (d, _) in enumerate(rest)},
                        keys=("crafter_score", "mean_return"), title="Craftax-Classic (symbolic), guided PPO arms",
                        x_label="env steps (per seed)")
    assemble()
    print(text)
    print(json.dumps({label: {"score": s["score"], "scores": s["scores"]} for label, (_, s) in arms.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
