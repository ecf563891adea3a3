"""Throughput of the JAX Overcooked env: macro steps per second under jit + vmap.

Usage: python benchmarks/measure_env.py [--task tomato_salad] [--sizes 1 64 1024 8192]
Random uniform macro actions, auto-reset (``env.step``), ``lax.scan`` over --steps steps.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import envs_jax


def measure(task: str, num_envs: int, steps: int, repeats: int = 3, nav: str = "table") -> float:
    env, params = envs_jax.make(task, nav=nav)
    na = env.num_actions

    @jax.jit
    def rollout(key, state):
        def body(carry, _):
            key, state = carry
            key, ka, ks = jax.random.split(key, 3)
            actions = jax.random.randint(ka, (num_envs,), 0, na)
            keys = jax.random.split(ks, num_envs)
            obs, state, r, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                keys, state, actions, params)
            return (key, state), r.sum()
        (key, state), rs = jax.lax.scan(body, (key, state), None, length=steps)
        return key, state, rs

    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    key = jax.random.PRNGKey(1)
    key, state, rs = rollout(key, state)  # compile + warm up
    jax.block_until_ready(rs)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        key, state, rs = rollout(key, state)
        jax.block_until_ready(rs)
        best = min(best, time.perf_counter() - t)
    return num_envs * steps / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="tomato_salad")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 8192])
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--nav", default="table", choices=["table", "astar"],
                    help="navigation: A* lookup table (default) or the literal in-graph heap A*")
    args = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; task {args.task}; nav {args.nav}")
    for n in args.sizes:
        steps = max(8, min(args.steps, 1024 * args.steps // n)) if n < 1024 else args.steps // 4
        sps = measure(args.task, n, steps, nav=args.nav)
        print(f"num_envs={n:6d}  {sps:12,.0f} macro steps/s")


if __name__ == "__main__":
    main()
