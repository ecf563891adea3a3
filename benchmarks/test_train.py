"""One full training iteration (rollout + GAE + PPO update), jitted whole, in env steps/s.

``test_train[{tiny,smollm2}-{variant}]`` (tomato salad, 4 envs x 32 steps) for the variants of ``train_setup.py``;
``test_train[tiny-...]`` is the same loop with the tiny random model (the non-LLM overhead).
``test_train_tasks[TASK-{default,no-memo}]``: the default trainer with SmolLM2 on both Overcooked salads
and both VirtualHome tasks, and the same with the rollout memo off.
``extra_info["env_steps_per_s"]`` uses the best round; the first (warm-up) call compiles.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jax
import pytest

from train_setup import VARIANTS, make_setup, variant

MODELS = {"tiny": "tiny-random", "smollm2": "smollm2-135m-instruct"}
REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def _setup(model):
    return make_setup(MODELS[model])


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_train(benchmark, model, name):
    cfg, setup, reach, S = _setup(model)
    _measure(benchmark, model, *variant(cfg, setup, reach, S, name))


@pytest.mark.parametrize("name", ["default", "no-trie", "no-memo"])
@pytest.mark.parametrize("task", ["tomato_salad", "lettuce_tomato_salad", "food_preparation", "entertainment"])
def test_train_tasks(benchmark, task, name):
    """One SmolLM2 iteration of the default trainer per task, side by side with the rollout
    memo off (``no-memo``; the same for tomato salad and food preparation, which have a rollout
    table): VirtualHome (20 and 213 distinct observations) gets the critic-feature cache, the
    rollout table or memo too, with its own reference settings (configs/TASK.yaml)."""
    from twosome_jax.config import load_config

    cfg = load_config(REPO / "configs" / f"{task}.yaml")
    setup = make_setup(MODELS["smollm2"], task=task, gamma=cfg.gamma)
    _measure(benchmark, "smollm2", *variant(*setup, name))


def _measure(benchmark, model, trainer, frozen):
    state0 = jax.jit(trainer.init)(jax.random.key(0))
    it = jax.jit(trainer.iteration)

    def run():  # always from the same state: every round does the same work
        state, metrics = it(frozen, state0)
        jax.block_until_ready((state, metrics))
        return metrics

    rounds = 5 if model == "tiny" else 1
    metrics = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    steps = trainer.num_envs * trainer.num_steps
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(
        loadavg_1m_after=round(os.getloadavg()[0], 2),
        env_steps=steps, env_steps_per_s=round(steps / best, 3), seconds_per_env_step=round(best / steps, 3),
        action_tokens_max=getattr(trainer.agent, "action_tokens_max", None),
        policy_table_size=int(trainer.policy_table_size(frozen)),
        policy_memo_sizes=list(trainer.policy_memo_sizes(frozen)),
        policy_steps=float(metrics["policy_steps"]), early_stopped=bool(metrics["early_stopped"]))
