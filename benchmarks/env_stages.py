"""Compaction stages of ``Overcooked.step_batch`` compared side by side (8192 environments).

    python benchmarks/env_stages.py [--rounds 5] [--block-size 1024] [--json FILE]

``game.macro_step_batch`` runs a macro's primitive steps in stages ``(d, n)``: up to ``N // d``
still-running macros are gathered into a buffer and advanced at most ``n`` steps; a last
vmapped loop over all ``N`` lanes finishes whatever did not fit. Which stages pay depends on how
long the macros run (random actions: 39-43% of the macros still run after 2 primitive steps,
20-23% after 5, 6-7% after 7, benchmarks/results/env_stages_2026-11-22_6aa8268.json; the
script prints these survival rates too). Every variant
computes the same states and rewards (checked here, bit for bit); the table gives each one's
macro steps/s under ``map_blocks`` (1024 environments at a time, as ``test_env.py``'s
``-batch-blocked`` case; ``--block-size`` changes the block) and its ratio to the default, rounds
interleaved so that load drifts hit all variants alike. ``--json`` also records the date, commit
and machine (``report.provenance``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

import envs_jax
from envs_jax.overcooked import constants as C
from envs_jax.overcooked import game
from envs_jax.vector import BLOCK_SIZE

sys.path.insert(0, os.path.dirname(__file__))
from report import provenance  # noqa: E402

M = C.MAX_MACRO_PRIMS
VARIANTS = {
    "default": game.BATCH_STAGES,
    "three-stage": ((1, 2), (2, 3), (4, M)),  # the default before ea281b8
    "short-first": ((1, 1), (2, 1), (2, 3), (4, 3), (16, M)),
    "last-sixth": ((1, 2), (2, 3), (3, 2), (6, M)),
}
TASKS = ("tomato_salad", "lettuce_tomato_salad")
NUM_ENVS, STEPS = 8192, 64


def rollout_fn(env, params, stages, block_size=BLOCK_SIZE):
    batched = envs_jax.map_blocks(lambda k, s, a, p: env.step_batch(k, s, a, p, stages=stages), in_axes=(0, 0, 0, None),
                                  block_size=block_size)

    @jax.jit
    def rollout(key, state):
        def body(carry, _):
            key, state = carry
            key, ka, ks = jax.random.split(key, 3)
            actions = jax.random.randint(ka, (NUM_ENVS,), 0, env.num_actions)
            _, state, reward, _, _, info = batched(jax.random.split(ks, NUM_ENVS), state, actions, params)
            return (key, state), (reward.sum(), info["macro_action_steps"])
        (_, state), out = jax.lax.scan(body, (key, state), None, length=STEPS)
        return state, out

    return rollout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block-size", type=int, default=BLOCK_SIZE, help="environments per map_blocks block")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    results = {"jax": jax.__version__, **provenance(), "num_envs": NUM_ENVS, "steps_per_call": STEPS,
               "block_size": args.block_size, "stages": {k: list(v) for k, v in VARIANTS.items()}, "rows": []}
    print("| task | stages | macro steps/s (best) | (mean) | x default |")
    print("|---|---|---:|---:|---:|")
    for task in TASKS:
        env, params = envs_jax.make(task)
        _, state0 = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), NUM_ENVS), params)
        fns = {name: rollout_fn(env, params, stages, args.block_size) for name, stages in VARIANTS.items()}
        outs = {name: jax.block_until_ready(f(jax.random.key(1), state0)) for name, f in fns.items()}
        for name, out in outs.items():
            same = all(bool((a == b).all()) for a, b in zip(jax.tree.leaves(outs["default"]), jax.tree.leaves(out)))
            if not same:
                raise SystemExit(f"stages {name!r} changed the results on {task}")
        macro_steps = np.asarray(outs["default"][1][1]).ravel()
        survival = [round(float((macro_steps > k).mean()), 3) for k in range(M + 1)]
        times = {name: [] for name in fns}
        for r in range(args.rounds):
            for name, f in fns.items():
                t = time.perf_counter()
                jax.block_until_ready(f(jax.random.key(2 + r), state0))
                times[name].append(time.perf_counter() - t)
        base = min(times["default"])
        for name in fns:
            best, mean = min(times[name]), float(np.mean(times[name]))
            row = dict(task=task, stages=name, best_s=round(best, 4), macro_steps_per_s=round(NUM_ENVS * STEPS / best),
                       macro_steps_per_s_mean=round(NUM_ENVS * STEPS / mean), x_default=round(base / best, 3),
                       loadavg_1m=round(os.getloadavg()[0], 2))
            results["rows"].append(row)
            print(f"| {task} | {name} `{VARIANTS[name]}` | {row['macro_steps_per_s']:,} | "
                  f"{row['macro_steps_per_s_mean']:,} | {row['x_default']:.2f} |")
        results[f"survival_{task}"] = survival
        print(f"<!-- {task}: share of random macros still running after k = 0..{M} primitive steps: {survival} -->")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
