"""Overcooked throughput under jit + vmap: macro steps per second.

``test_env[tomato_salad-N{1,64,1024,8192}-vmap]``: random uniform macro actions, ``env.step`` with
auto-reset, ``lax.scan`` over a fixed number of steps inside one jitted call. ``-batch`` uses
``env.step_batch`` (the macro loop on a shrinking buffer of running macros); ``-blocked`` and
``-batch-blocked`` do the same 1024 environments at a time (``envs_jax.vmap_blocked`` /
``map_blocks``; identical to the unblocked call at N <= 1024, so only run at 8192). All four
compute the same thing (tests/test_overcooked_env.py).
``extra_info["macro_steps_per_s"]`` uses the best round.
"""

from __future__ import annotations

import os

import jax
import pytest

import envs_jax

SIZES = (1, 64, 1024, 8192)
TASKS = ("tomato_salad", "lettuce_tomato_salad")


def _steps(n):
    return 256 if n <= 64 else 64


BATCHING = {
    "vmap": lambda env: jax.vmap(env.step, in_axes=(0, 0, 0, None)),
    "blocked": lambda env: envs_jax.vmap_blocked(env.step, in_axes=(0, 0, 0, None)),
    "batch": lambda env: env.step_batch,
    "batch-blocked": lambda env: envs_jax.map_blocks(env.step_batch, in_axes=(0, 0, 0, None)),
}
CASES = [(n, b) for n in SIZES for b in ("vmap", "batch")] + [(8192, "blocked"), (8192, "batch-blocked")]


@pytest.mark.parametrize("num_envs,batching", CASES, ids=[f"N{n}-{b}" for n, b in CASES])
@pytest.mark.parametrize("task", TASKS)
def test_env(benchmark, task, num_envs, batching):
    env, params = envs_jax.make(task)
    na, steps = env.num_actions, _steps(num_envs)
    batched = BATCHING[batching](env)

    @jax.jit
    def rollout(key, state):
        def body(carry, _):
            key, state = carry
            key, ka, ks = jax.random.split(key, 3)
            actions = jax.random.randint(ka, (num_envs,), 0, na)
            obs, state, r, term, trunc, info = batched(
                jax.random.split(ks, num_envs), state, actions, params)
            return (key, state), r.sum()
        (key, state), rs = jax.lax.scan(body, (key, state), None, length=steps)
        return key, state, rs

    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), num_envs), params)
    carry = {"key": jax.random.key(1), "state": state}

    def run():
        carry["key"], carry["state"], rs = rollout(carry["key"], carry["state"])
        jax.block_until_ready(rs)

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(
        loadavg_1m_after=round(os.getloadavg()[0], 2), num_envs=num_envs, batching=batching, steps_per_call=steps,
        macro_steps=num_envs * steps, macro_steps_per_s=round(num_envs * steps / best),
        macro_steps_per_s_mean=round(num_envs * steps / benchmark.stats.stats.mean))
