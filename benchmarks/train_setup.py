"""Training-iteration setups shared by ``test_train.py`` and ``profile_iteration.py``.

Variants of one SmolLM2 tomato-salad iteration at the reference batch (4 envs x 32 steps):

* ``default``: exactly what ``python -m twosome_jax.train`` builds (since e2413a5/e940b13):
  critic-feature cache, tight ``packed`` scoring (the agent's ``action_tokens_max``, 22), and
  a rollout that scores the 22 reachable observations once and looks the logits up at each of
  the 32 steps (``Trainer.policy_table_size``).
* ``no-dedupe``: ``default`` with each policy-update group (8 minibatches of 4) scored at its
  full 32 rows instead of once per distinct observation (``Trainer.distinct_sizes``).
* ``no-memo``: ``default`` with the rollout scoring 4 observations at each step where no table
  applies, instead of only the observations it has not met yet (``Trainer.policy_memo_sizes``;
  tomato salad has a table, so there it equals ``default``).
* ``no-table``: ``default`` with the rollout scoring 4 observations at each step.
* ``padded``: ``no-table`` with ``action_tokens_max=None``: under jit the action region is the
  padded A*L = 40 slots (the command before e2413a5).
* ``padded-nocache``: ``padded`` with the critic feature computed by the LLM in the rollout.

The results recorded in README.md before e2413a5 carry the earlier names of the same
configurations: ``default`` (then) = ``padded`` (now), ``tight`` = ``no-table``,
``tight-table`` = ``default``, ``nocache`` = ``padded-nocache``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from twosome_jax.trainer import Trainer

VARIANTS = ("default", "no-dedupe", "no-memo", "no-table", "padded", "padded-nocache")


@dataclasses.dataclass(frozen=True, eq=False)
class NoTableTrainer(Trainer):
    """The rollout scores step by step (no table of logits of the reachable observations)."""

    def policy_table_size(self, frozen) -> int:
        return 0

    def policy_memo_sizes(self, frozen) -> tuple[int, ...]:
        return ()


@dataclasses.dataclass(frozen=True, eq=False)
class NoMemoTrainer(Trainer):
    """Where no table applies, the rollout scores every observation at every step."""

    def policy_memo_sizes(self, frozen) -> tuple[int, ...]:
        return ()


@dataclasses.dataclass(frozen=True, eq=False)
class NoDedupeTrainer(Trainer):
    """The policy update scores every row of a group, repeated observations included."""

    def distinct_sizes(self, frozen) -> tuple[int, ...]:
        return (self.policy_group_size,)


def make_setup(model: str = "smollm2-135m-instruct", num_envs: int = 4, num_steps: int = 32,
               task: str = "tomato_salad", **overrides):
    from twosome_jax import run as runlib
    from twosome_jax.config import TrainConfig

    cfg = TrainConfig(model=model, task=task, num_envs=num_envs, num_steps=num_steps,
                      total_timesteps=num_envs * num_steps * 100, **overrides)
    setup = runlib.build(cfg)
    reach = np.asarray(setup.env.reachable_observations())
    return cfg, setup, reach, setup.agent.action_tokens_max


def variant(cfg, setup, reach, S, name: str):
    """(trainer, frozen) for one variant; the trainer's ``iteration`` / ``rollout`` are pure."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; accepted: {', '.join(VARIANTS)}")
    agent, frozen = setup.agent, dict(setup.frozen)
    if name.startswith("padded"):
        agent = dataclasses.replace(agent, action_tokens_max=None)
    else:
        agent = dataclasses.replace(agent, action_tokens_max=S)
    if name == "padded-nocache":
        frozen = {"base": frozen["base"]}
    cls = {"default": Trainer, "no-dedupe": NoDedupeTrainer, "no-memo": NoMemoTrainer}.get(name, NoTableTrainer)
    return cls.from_config(cfg, agent, setup.env, setup.env_params), frozen
