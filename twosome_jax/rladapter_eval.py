"""Evaluation of an RLAdapter run: its final policy under the language models' greedy guidance.

    python -m twosome_jax.evaluate RUN_DIR [--episodes E] [--seed S]   # a run of configs/crafter_rladapter.yaml

Training samples the guidance (the adapter LM's analysis at its temperature, the decision
model's 3 sub-goals drawn without replacement at temperature 1); evaluation takes the top 3 of
the decision model after the adapter's greedy analysis, as RLAdapter's evaluation does. From the
run's latest checkpoint (the PPO parameters of every seed and the adapter's LoRA) every seed
plays fresh worlds, ``num_envs`` at once, with a query round before each ``instruction_interval``
steps as in training, until each of its first ``E`` envs (default ``num_envs``) has ended one
episode; the policy's actions are sampled, as in training (Crafter's convention). Nothing is
learned and the run directory is not written. The report is per seed and mean ± std over seeds:
the Crafter score (``envs_jax.crafter.score``) and each achievement's success rate over those
episodes, their mean return and length, how often each sub-goal was picked for them, and the
episodes one by one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

_EVAL_KEYS = 3  # fold_in tag of the run key for evaluation (the rounds' 1 and the re-made policies' 2)


def evaluate_rladapter(run_dir, *, episodes: int | None = None, seed: int = 0, encoder=None,
                       max_steps: int | None = None) -> dict:
    """The report above, as a dict. ``episodes``: per seed, at most ``num_envs``; ``seed``: of
    the worlds and the policy's sampling (each seed of the run plays the same worlds);
    ``encoder``: as ``rladapter_train.train`` (a run trained with a given one needs it again);
    ``max_steps``: the env steps per env after which an episode still running is left out
    (default: the environment's episode limit, after which every episode has ended)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from envs_jax.crafter import score
    from twosome_jax import run as runlib
    from twosome_jax.guided_config import load_guided_config
    from twosome_jax.guided_trainer import collect, init
    from twosome_jax.rladapter_config import RLAdapterConfig
    from twosome_jax.rladapter_round import QueryRound
    from twosome_jax.rladapter_train import build, checkpoint_abstract, language_models, restore_lora

    run_dir = Path(run_dir)
    if not (run_dir / runlib.CONFIG_FILE).is_file():
        raise runlib.RunError(f"{str(run_dir)!r} is not a run directory: it has no {runlib.CONFIG_FILE}")
    cfg = load_guided_config(run_dir / runlib.CONFIG_FILE, base=RLAdapterConfig())
    K, N, H = cfg.num_seeds, cfg.num_envs, cfg.instruction_interval
    episodes = N if episodes is None else episodes
    if not 1 <= episodes <= N:
        raise runlib.RunError(f"--episodes {episodes} is out of range; accepted: 1 to the run's num_envs ({N})")
    env, sentences, encoder, table, trainer = build(cfg, encoder)
    model, _, adapter, decision = language_models(cfg)
    manager = runlib.checkpoint_manager(run_dir, keep=cfg.keep_checkpoints, create=False)
    step, ck = runlib.restore_checkpoint(manager, checkpoint_abstract(trainer, cfg, adapter))
    if adapter is not None:
        restore_lora(model, adapter, ck["lora"])
    rounds = QueryRound(encoder, adapter, decision, sentences, history_keep=cfg.history_keep, greedy=True)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), _EVAL_KEYS)
    state = init(trainer, key)
    state = state.replace(params=ck["ppo"].params)
    limit = max_steps if max_steps is not None else int(trainer.env_params.max_timesteps)

    first = {}  # (seed, env) -> the first episode that env ended
    picks = [Counter() for _ in range(K)]
    history, steps = None, 0
    while len(first) < K * episodes and steps < limit:
        result = rounds(jax.device_get(state.env_state), history if history is not None else np.zeros((K, N, 0)),
                        np.asarray(state.instruction) if history is not None else None, key, steps * N)
        for r in result.records:
            if r["env"] < episodes and (r["seed"], r["env"]) not in first:
                picks[r["seed"]].update(r["subgoals"])
        state = state.replace(instruction=jnp.asarray(result.rows))
        state, traj, ended = collect(trainer, table, state, H)
        history = np.moveaxis(np.asarray(jax.device_get(traj["action"])), 0, -1)
        ended = jax.device_get(ended)
        for t, k, i in zip(*np.nonzero(ended["done"])):
            if i < episodes and (k, i) not in first:
                first[(int(k), int(i))] = {"env": int(i), "achievements": ended["achievements"][t, k, i],
                                           "return": float(ended["ret"][t, k, i]),
                                           "length": int(ended["length"][t, k, i])}
        steps += H
    per_seed = []
    for k in range(K):
        eps = [first[(k, i)] for i in range(episodes) if (k, i) in first]
        rates = score.success_rates([e["achievements"] for e in eps])
        per_seed.append({"episodes": len(eps), "crafter_score": score.crafter_score(rates) if eps else float("nan"),
                         "success_rates": dict(zip(env.achievements, map(float, rates))),
                         "return": float(np.mean([e["return"] for e in eps])) if eps else float("nan"),
                         "length": float(np.mean([e["length"] for e in eps])) if eps else float("nan"),
                         "subgoals": dict(picks[k].most_common()),
                         "episodes_list": [{"env": e["env"], "return": e["return"], "length": e["length"],
                                            "achievements": [a for a, n in zip(env.achievements, e["achievements"])
                                                             if n > 0]} for e in eps]})
    scores = [s["crafter_score"] for s in per_seed]
    return {"run_dir": str(run_dir), "checkpoint": int(step), "env_steps": int(ck["ppo"].env_steps),
            "guidance": "greedy: the adapter's greedy analysis, the decision model's top 3", "seed": seed,
            "episodes_per_seed": episodes, "crafter_score": score.mean_std(scores), "per_seed": per_seed}


def handles(argv: list[str]) -> bool:
    """Whether a ``twosome_jax.evaluate`` command line names an RLAdapter run (its
    ``config.yaml`` says ``trainer: rladapter``)."""
    import os

    from twosome_jax.guided_config import is_guided_config
    from twosome_jax.rladapter_config import TRAINER

    return any(is_guided_config(os.path.join(a, "config.yaml"), TRAINER) for a in argv if not a.startswith("-"))


def print_report(report: dict, out=None) -> None:
    import sys

    out = out or sys.stdout
    mean, std = report["crafter_score"]
    print(f"{report['run_dir']}: checkpoint {report['checkpoint']} ({report['env_steps']:,} env steps per seed), "
          f"{report['guidance']}, {report['episodes_per_seed']} episode(s) per seed, world seed {report['seed']}",
          file=out)
    print(f"Crafter score {mean:.2f} ± {std:.2f} %", file=out)
    for k, s in enumerate(report["per_seed"]):
        unlocked = ", ".join(f"{a} {r:.0f}" for a, r in s["success_rates"].items() if r > 0) or "none"
        top = ", ".join(f"{g} {n}" for g, n in list(s["subgoals"].items())[:5])
        print(f"  seed {k}: score {s['crafter_score']:.2f} over {s['episodes']} episode(s), return {s['return']:.2f}, "
              f"length {s['length']:.0f}; unlocked (%): {unlocked}; most picked: {top}", file=out)


def main(argv: list[str]) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m twosome_jax.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes per seed, one per env (default: the run's num_envs)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the worlds and the policy's actions")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from twosome_jax.guided_config import ConfigError
    from twosome_jax.hub import FetchError
    from twosome_jax.model import ModelLoadError
    from twosome_jax.run import RunError

    try:
        report = evaluate_rladapter(args.run_dir, episodes=args.episodes, seed=args.seed)
    except (ConfigError, RunError, ModelLoadError, FetchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 0
