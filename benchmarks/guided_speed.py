"""Env + policy + update steps/s of the guided PPO trainer (Crafter, symbolic observations).

    python benchmarks/guided_speed.py [--config configs/crafter_ppo.yaml] [--num-seeds 3] [--iterations 5]

Builds the run's trainer from the config exactly as ``python -m twosome_jax.guided_train`` does
(16 envs x 256 steps per seed, MLP 512-512; with ``--config configs/crafter_random_subgoals.yaml``
the instruction branch too, fed a random table of the real table's shape: the embedding's values
do not change the work), compiles one iteration, then times ``--iterations`` more (each one
rollout of 4096 env steps per seed, GAE, 4 epochs of 32 minibatches). Prints one JSON object:
compile seconds, seconds per iteration, env steps per second (per seed and all seeds together),
the wall-clock estimate per 1M env steps of every seed, and the date, commit and machine
(``report.provenance``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from report import provenance  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/crafter_ppo.yaml")
    parser.add_argument("--num-seeds", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations after the compiling one")
    args = parser.parse_args()

    import envs_jax
    from twosome_jax.guided_config import load_guided_config
    from twosome_jax.guided_trainer import GuidedTrainer, init, iteration

    cfg = load_guided_config(args.config).replace(num_seeds=args.num_seeds)
    env, params = envs_jax.make(cfg.task, **cfg.env_kwargs)
    rows = 1 if cfg.instruction == "none" else math.comb(len(env.subgoals), cfg.subgoals_per_instruction)
    dim = 0 if cfg.instruction == "none" else 384
    table = jax.numpy.asarray(np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32))
    trainer = GuidedTrainer.from_config(cfg, env, params, instruction_dim=dim)
    start = provenance()
    t = time.perf_counter()
    state = init(trainer, jax.random.PRNGKey(cfg.seed))
    state, metrics, _ = iteration(trainer, table, state)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(args.iterations):
        t = time.perf_counter()
        state, metrics, _ = iteration(trainer, table, state)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    per_iteration = float(np.median(times))
    per_seed = cfg.batch_size / per_iteration
    out = {"config": args.config, "num_seeds": cfg.num_seeds, "num_envs": cfg.num_envs, "num_steps": cfg.num_steps,
           "hidden": list(cfg.hidden), "instruction": cfg.instruction,
           "compile_and_first_iteration_s": round(compile_s, 2), "iteration_s": [round(x, 3) for x in times],
           "median_iteration_s": round(per_iteration, 3), "env_steps_per_s_per_seed": round(per_seed, 1),
           "env_steps_per_s_all_seeds": round(per_seed * cfg.num_seeds, 1),
           "minutes_per_1M_env_steps_of_every_seed": round(1e6 / per_seed / 60, 1),
           **start, "loadavg_after": list(os.getloadavg())}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
