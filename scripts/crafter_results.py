"""The Crafter sections of docs/RESULTS.md: arms of the guided PPO and RLAdapter trainers, scored as Crafter does.

    .venv/bin/python scripts/crafter_results.py ppo=runs/crafter/ppo random_subgoals=runs/crafter/random
    .venv/bin/python scripts/crafter_results.py --name crafter_arms --command "bash scripts/crafter_arms.sh 20000" \\
        ppo=ROOT/ppo random_subgoals=ROOT/random_subgoals decision_only=ROOT/decision_only \\
        frozen_adapter=ROOT/frozen_adapter full=ROOT/full

Each ``LABEL=RUN_DIR`` is one arm: a run of ``python -m twosome_jax.train`` (all its seeds in one
run directory, ``--num-seeds``), of the guided PPO trainer (``configs/crafter_ppo.yaml``,
``configs/crafter_random_subgoals.yaml``) or of the RLAdapter trainer
(``configs/crafter_rladapter.yaml``). From the runs' files only (``config.yaml``,
``episodes.jsonl``, ``metrics.jsonl`` and an RLAdapter run's ``stage_K/summary.json``) it
writes ``OUT/NAME.md`` and ``OUT/NAME.png`` (Crafter score and episode return against env steps,
every arm; ``--out`` default docs/results, ``--name`` default crafter) and, when OUT is
docs/results, rebuilds docs/RESULTS.md (``scripts/results.py``'s assembly, with
``docs/results/NAME.notes.md`` after the section).

Without ``--command`` the section is the guided PPO arms' (its 1M-step runs were started one
by one, so each arm's command is rebuilt from its config); with ``--command CMD`` it is the
section of arms that CMD trained (``scripts/crafter_arms.sh``), cited as such. Both give, per arm:

* the Crafter score of each seed (``envs_jax.crafter.score``: success rates over all training
  episodes that ended within the budget, shifted geometric mean), as mean ± std over seeds;
* each achievement's success rate, mean ± std over seeds;
* the mean episode return over the same episodes, and over those that ended in the last tenth
  of the budget;
* wall-clock minutes per 1M env steps (all seeds at once), from ``metrics.jsonl``'s
  ``wall_time``: from the end of the first iteration (which compiles) to the last record, plus
  the closing of an RLAdapter stage that ended at the last record (its ``seconds.closing``).

The ``--command`` section adds what each arm is (its ``config.yaml``), its budget (an RLAdapter
run's ``total_timesteps`` counts one stage: the budget is ``stages`` times it), a table per
RLAdapter stage (comprehension score, SFT losses) and where the time goes: the query rounds'
parts (``query_*_seconds``), the rest of the iterations (env steps and PPO: each iteration's
time is ``num_envs * num_steps / steps_per_second``), the stage closings' SFT (``seconds.sft``)
and the rest of them (adapter export, summary), and what lies between iterations (logging, checkpoints, and the gap of a resume).

A run that has not reached its budget is reported at the env steps it has, and says so.
"""

from __future__ import annotations

import argparse
import json
import shlex
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
from twosome_jax.rladapter_config import TRAINER as RLADAPTER  # noqa: E402
from twosome_jax.rladapter_train import SUMMARY_FILE, stage_dir  # noqa: E402

PUBLISHED = "PPO 4.6 ± 0.3 %, random 1.6 ± 0.0 % (Hafner 2021, Crafter's scoreboard: 1M steps, 64x64 pixels)"
DEFAULT_OUT = REPO / "docs" / "results"
DECISION_MODELS = {"smollm2-135m-instruct": "a 135M decision model (SmolLM2-135M-Instruct scoring the 31 sub-goals)"}
QUERY_SHOWN = ("adapter", "decision")  # query parts with a column of their own


class ArmError(ValueError):
    """A LABEL=RUN_DIR argument that names no usable run."""


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def summarize_arm(run_dir: Path) -> dict:
    """Everything the sections say about one arm, from its files."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    records = read_metrics(run_dir / "metrics.jsonl")
    if not records:
        raise ArmError(f"{str(run_dir)!r} has no metrics yet; accepted: a run directory with at least one iteration")
    if not (run_dir / score.EPISODES_FILE).is_file():
        raise ArmError(f"{str(run_dir)!r} has no {score.EPISODES_FILE}; accepted: a run of the guided PPO "
                       "or RLAdapter trainer")
    rladapter = cfg.get("trainer") == RLADAPTER
    stages = int(cfg["stages"]) if rladapter else 1
    budget = stages * int(cfg["total_timesteps"])  # an RLAdapter run's total_timesteps counts one stage
    reached = min(records[-1]["env_steps"], budget)
    episodes = score.read_episodes(run_dir / score.EPISODES_FILE)
    tables = score.episode_table(episodes, budget=reached)
    seeds = range(int(cfg["num_seeds"]))
    rates = np.array([score.success_rates(tables.get(k, ())) for k in seeds])  # [K, 22]
    scores = [float(score.crafter_score(r)) for r in rates]
    late = 0.9 * reached
    returns = [_mean([e["return"] for e in episodes if e["seed"] == k and e["env_step"] <= reached]) for k in seeds]
    late_returns = [_mean([e["return"] for e in episodes if e["seed"] == k and late < e["env_step"] <= reached])
                    for k in seeds]
    summaries = [json.loads((stage_dir(run_dir, k) / SUMMARY_FILE).read_text()) for k in range(1, stages + 1)
                 if (stage_dir(run_dir, k) / SUMMARY_FILE).is_file()]
    time = time_split(records, cfg["num_envs"] * cfg["num_steps"], int(cfg["total_timesteps"]), summaries)
    return {"config": cfg, "instruction": cfg["instruction"], "rladapter": rladapter, "stages": stages,
            "seeds": len(seeds), "seed": cfg["seed"], "budget": budget, "env_steps": reached,
            "episodes": [len(tables.get(k, ())) for k in seeds],
            "score": score.mean_std(scores), "scores": scores, "rates_mean": np.nanmean(rates, axis=0),
            "rates_std": np.nanstd(rates, axis=0), "return": score.mean_std(returns),
            "late_return": score.mean_std(late_returns), "stage_summaries": summaries, "time": time,
            "minutes_per_1M": time["minutes_per_1M"]["total"]}


def time_split(records: list[dict], batch: int, stage_steps: int, summaries: list[dict]) -> dict:
    """Seconds of the run by part, from the end of the first iteration (which compiles) to the
    last record, plus the closing of a stage that ended at the last record; the closings' SFT
    (``sft``) apart from the rest of them (``closing``: export, summary). ``minutes_per_1M``:
    each part per 1M env steps (per seed, all seeds at once); NaN with a single record."""
    if len(records) < 2:
        nan = float("nan")
        return {"seconds": {}, "minutes_per_1M": {"total": nan}}
    timed, first, last = records[1:], records[0]["env_steps"], records[-1]["env_steps"]
    closing_in = closing_after = sft = 0.0
    for s in summaries:  # a stage is closed after the record of its last iteration
        end, seconds = s["stage"] * stage_steps, s.get("seconds", {})
        if first <= end <= last:
            sft += seconds.get("sft", 0.0)
        if first <= end < last:
            closing_in += seconds.get("closing", 0.0)
        elif end == last:
            closing_after += seconds.get("closing", 0.0)
    query = {}
    for r in timed:
        for key, v in r.items():
            if key.startswith("query_") and key.endswith("_seconds") and key != "query_seconds" and v is not None:
                part = key[len("query_"):-len("_seconds")]
                query[part] = query.get(part, 0.0) + v
    iterations = sum(batch / r["steps_per_second"] if r.get("steps_per_second") else float("nan") for r in timed)
    span = records[-1]["wall_time"] - records[0]["wall_time"]
    seconds = {**{part: query.get(part, 0.0) for part in QUERY_SHOWN},
               "other_query": sum(v for part, v in query.items() if part not in QUERY_SHOWN),
               "env_ppo": iterations - sum(query.values()), "sft": sft, "closing": closing_in + closing_after - sft,
               "between": span - iterations - closing_in}
    seconds["total"] = span + closing_after
    return {"seconds": seconds, "query_parts": sorted(query),
            "minutes_per_1M": {k: v / (last - first) * 1e6 / 60 for k, v in seconds.items()}}


def _yaml_value(v) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def describe(s: dict) -> str:
    """What an arm is, from its config."""
    cfg = s["config"]
    # the policy's instruction encoder, where it is not the pretrained one (RLAdapter quirk Q9)
    encoder = ("" if cfg.get("policy_encoder", "pretrained") == "pretrained" or cfg["instruction"] == "none" else
               f", its instruction encoder's linear layers random (`policy_encoder: {cfg['policy_encoder']}`)")
    if not s["rladapter"]:
        if cfg["instruction"] == "none":
            return "PPO, no instruction input (`instruction: none`)"
        return (f"PPO with {cfg['subgoals_per_instruction']} sub-goals drawn uniformly every "
                f"{cfg['instruction_interval']} steps per env (`instruction: {cfg['instruction']}`){encoder}")
    what = ("the decision model alone, an empty analysis" if cfg["adapter"] == "none" else
            "the adapter LM's analysis, fine-tuned after every stage" if cfg["adapter_sft"] else
            "the adapter LM's analysis, frozen")
    keys = ["instruction", "adapter", "adapter_sft", "stages", "sft_max_pairs", "policy_across_stages"]
    keys += ["sft_data"] * bool(cfg["adapter_sft"])
    return f"RLAdapter: {what} (" + ", ".join(f"`{k}: {_yaml_value(cfg[k])}`" for k in keys) + ")" + encoder


def _pm(m, s, f=".2f") -> str:
    return f"{m:{f}} ± {s:{f}}"


def _steps(s: dict) -> str:
    return f"{s['env_steps']:,}" + ("" if s["env_steps"] >= s["budget"] else f" (of {s['budget']:,}: in progress)")


def _success_table(arms: dict) -> list[str]:
    lines = ["Success rate of each achievement (%, mean ± std over seeds, all training episodes within the "
             "steps above):", "",
             "| achievement | " + " | ".join(arms) + " |", "| --- |" + " --- |" * len(arms)]
    for i, name in enumerate(ACHIEVEMENTS):
        lines.append(f"| {name} | " + " | ".join(_pm(s["rates_mean"][i], s["rates_std"][i], ".1f")
                                                 for _, s in arms.values()) + " |")
    return lines


def section(arms: dict[str, tuple[Path, dict]], name: str = "crafter") -> str:
    """The guided PPO arms' section, each arm's command rebuilt from its config."""
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
        lines.append(f"| {label} | {command} | {s['seeds']} | {_steps(s)} | {', '.join(map(str, s['episodes']))} | "
                     f"{_pm(*s['score'])} | {', '.join(f'{v:.2f}' for v in s['scores'])} | {_pm(*s['return'])} | "
                     f"{_pm(*s['late_return'])} | {s['minutes_per_1M']:.1f} |")
    lines += ["", f"Published, not comparable: {PUBLISHED}. See the notes below.", "",
              f"![Crafter learning curves](results/{name}.png)", ""]
    return "\n".join(lines + _success_table(arms)) + "\n"


def arms_section(arms: dict[str, tuple[Path, dict]], name: str, command: str, report: str) -> str:
    """The section of arms that ``command`` trained; ``report`` is the command that writes it."""
    rl = {label: s for label, (_, s) in arms.items() if s["rladapter"]}
    lines = ["## Crafter: guided PPO and RLAdapter arms at one budget", "",
             f"Trained by `{command}` (an arm whose run directory exists is resumed, so the same command "
             f"continues a killed invocation); written by `.venv/bin/python {report}` from the runs' files. "
             "Craftax-Classic with symbolic observations and RLAdapter's PPO settings (`configs/crafter_ppo.yaml`, "
             "`configs/crafter_rladapter.yaml`, sources in the files); the score is recomputed by "
             "`python -m envs_jax.crafter.score RUN_DIR`."]
    models = sorted({s["config"]["decision_model"] for s in rl.values()})
    if models:
        lines += ["", f"Arms {', '.join(f'`{a}`' for a in rl)} are the RLAdapter mechanism with "
                  + " and ".join(DECISION_MODELS.get(m, f"the decision model `{m}` (scoring the 31 sub-goals)")
                                 for m in models)
                  + ", not the paper's GPT-4; its numbers are not comparable with the paper's."]
    lines += ["", "| arm | what it is | budget (env steps per seed) | env steps per seed | seeds | episodes per seed | "
              "Crafter score (%) | per seed | episode return | return, last 10 % of steps | "
              "wall-clock min per 1M steps (all seeds at once) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, (_, s) in arms.items():
        budget = (f"{s['stages']} × {s['config']['total_timesteps']:,} = {s['budget']:,}" if s["rladapter"]
                  else f"{s['budget']:,}")
        lines.append(f"| {label} | {describe(s)} | {budget} | {_steps(s)} | {s['seeds']} (seed {s['seed']}) | "
                     f"{', '.join(map(str, s['episodes']))} | {_pm(*s['score'])} | "
                     f"{', '.join(f'{v:.2f}' for v in s['scores'])} | {_pm(*s['return'])} | "
                     f"{_pm(*s['late_return'])} | {s['minutes_per_1M']:.1f} |")
    lines += ["", f"![Crafter learning curves](results/{name}.png)", ""] + _success_table(arms)
    if rl:
        lines += ["", "Per RLAdapter stage (`stage_K/summary.json`; the comprehension score is mean ± std over "
                  "seeds of each seed's mean over the stage's queries; SFT losses of its first and last step, "
                  "and on the held-out pairs after it):", "",
                  "| arm | stage | env steps per seed | queries | comprehension score | per seed | SFT pairs "
                  "(train, eval) | SFT train loss, first → last step | SFT eval loss | SFT (min) | "
                  "rest of stage closing (min) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for label, s in rl.items():
            for t in s["stage_summaries"]:
                per_seed = t["comprehension_score_per_seed"]
                sft = t["sft"]
                losses = ("no SFT | no SFT | no SFT" if sft is None else
                          f"{sft['train_pairs']}, {sft['eval_pairs']} | {sft['train_loss_first']:.3f} → "
                          f"{sft['train_loss_last']:.3f} | "
                          + ("n/a" if sft["eval_loss"] is None else f"{sft['eval_loss']:.3f}"))
                seconds = t.get("seconds", {})
                closing = (f"{seconds.get('sft', 0.0) / 60:.1f} | "
                           f"{(seconds['closing'] - seconds.get('sft', 0.0)) / 60:.1f}"
                           if "closing" in seconds else "n/a | n/a")
                start, end = t["env_steps"]
                lines.append(f"| {label} | {t['stage']} of {s['stages']} | {start:,}-{end:,} | {t['queries']:,} | "
                             f"{_pm(*score.mean_std(per_seed), '.3f')} | "
                             f"{', '.join(f'{v:.3f}' for v in per_seed)} | {losses} | "
                             + closing + " |")
            if len(s["stage_summaries"]) < s["stages"]:
                lines.append(f"| {label} | {len(s['stage_summaries']) + 1} of {s['stages']} | not finished | "
                             "| | | | | | | |")
        parts = sorted({p for s in rl.values() for p in s["time"].get("query_parts", ()) if p not in QUERY_SHOWN})
        lines += ["", "Where the time goes (wall-clock minutes per 1M env steps, all seeds at once, and share of the "
                  "total; `metrics.jsonl` from the end of the first iteration, which compiles, to the last record, "
                  "and the stage closings in `stage_K/summary.json`). Query rounds: the adapter LM's analyses, the "
                  f"decision model's scoring of the sub-goals and the other parts ({', '.join(parts) or 'none'}); "
                  "env and PPO: the rest of each iteration (its `num_envs * num_steps / steps_per_second`); stage "
                  "closings: their SFT, and the rest (the adapter's export and the summary); between iterations: logging, episode files, "
                  "checkpoints and the gap of a resumed run.", "",
                  "| arm | adapter generation | decision scoring | other query parts | env and PPO | SFT | rest of "
                  "stage closing | between iterations | total |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for label, (_, s) in arms.items():
            per_1m, total = s["time"]["minutes_per_1M"], s["time"]["minutes_per_1M"]["total"]
            cells = [("-" if not s["rladapter"] and k in ("adapter", "decision", "other_query", "sft", "closing") else
                      f"{per_1m[k]:.1f} ({100 * per_1m[k] / total:.0f} %)") if k in per_1m else "n/a"
                     for k in ("adapter", "decision", "other_query", "env_ppo", "sft", "closing", "between")]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {total:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arms", nargs="+", metavar="LABEL=RUN_DIR")
    parser.add_argument("--name", default="crafter",
                        help="the section's files: OUT/NAME.md and OUT/NAME.png (default: %(default)s)")
    parser.add_argument("--command", default=None,
                        help="the command that trained the arms (e.g. 'bash scripts/crafter_arms.sh 20000'), "
                             "cited in the section; without it, the guided PPO arms' section")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="directory of the section's files (default: docs/results; docs/RESULTS.md is rebuilt "
                             "only from there)")
    args = parser.parse_args(argv)
    if not args.name or "/" in args.name or args.name.endswith(".notes"):
        parser.error(f"--name {args.name!r} is invalid; accepted: a file stem such as crafter_arms")
    arms = {}
    try:
        for item in args.arms:
            label, sep, path = item.partition("=")
            run_dir = Path(path)
            if not sep or not label or not (run_dir / "config.yaml").is_file():
                raise ArmError(f"{item!r} is not LABEL=RUN_DIR with a run directory (one holding config.yaml)")
            if label in arms:
                raise ArmError(f"arm label {label!r} is given twice; accepted: distinct labels")
            arms[label] = (run_dir, summarize_arm(run_dir))
            if args.command is None and arms[label][1]["rladapter"]:
                raise ArmError(f"arm {label!r} is an RLAdapter run; accepted without --command: guided PPO runs "
                               "only (give --command CMD, the command that trained the arms)")
    except ArmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command is None:
        text = section(arms, args.name)
        title = "Craftax-Classic (symbolic), guided PPO arms"
    else:
        report = shlex.join(["scripts/crafter_results.py", "--name", args.name, "--command", args.command, *args.arms])
        text = arms_section(arms, args.name, args.command, report)
        title = "Craftax-Classic (symbolic), guided PPO and RLAdapter arms"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text(text)
    (first, _), *rest = arms.values()
    labels = list(arms)
    plot_learning_curve(first / "metrics.jsonl", out / f"{args.name}.png", label=labels[0],
                        baselines={labels[i + 1]: d / "metrics.jsonl" for i, (d, _) in enumerate(rest)},
                        keys=("crafter_score", "mean_return"), title=title, x_label="env steps (per seed)")
    if out.resolve() == DEFAULT_OUT.resolve():
        assemble()
    else:
        print(f"docs/RESULTS.md left as it is: the section is in {out}, not docs/results", file=sys.stderr)
    print(text)
    print(json.dumps({label: {"score": s["score"], "scores": s["scores"]} for label, (_, s) in arms.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
